"""Shared fixtures: a sandbox on a free loopback port, a sync store per test, the key-leak check."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from key_leak_guard import pytest_runtest_makereport  # noqa: F401  (a hook: fails leaky tests)

from target_carecycle.sandbox import RunningSandbox, SandboxConfig, running_sandbox


@pytest.fixture(autouse=True)
def isolated_sync_store(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """Every test gets its own default sync store ($XDG_STATE_HOME/target-carecycle/).

    Tests send the same leads to fresh sandboxes again and again; a store shared between
    them would make later tests skip leads as unchanged. Child processes inherit the variable.
    """
    state_home = tmp_path_factory.mktemp("xdg-state")
    monkeypatch.setenv("XDG_STATE_HOME", str(state_home))
    monkeypatch.delenv("TARGET_CARECYCLE_SYNC_STORE", raising=False)
    monkeypatch.delenv("TARGET_CARECYCLE_SKIP_UNCHANGED", raising=False)
    return state_home


@pytest.fixture
def sandbox() -> Iterator[RunningSandbox]:
    """A fresh sandbox on a free loopback port, rate limit off."""
    with running_sandbox(SandboxConfig(rate_limit=0)) as running:
        yield running
