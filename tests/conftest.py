"""Shared fixtures: an in-process sandbox on a free loopback port; the key-leak check."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from key_leak_guard import pytest_runtest_makereport  # noqa: F401  (a hook: fails leaky tests)

from target_carecycle.sandbox import RunningSandbox, SandboxConfig, running_sandbox


@pytest.fixture
def sandbox() -> Iterator[RunningSandbox]:
    """A fresh sandbox on a free loopback port, rate limit off."""
    with running_sandbox(SandboxConfig(rate_limit=0)) as running:
        yield running
