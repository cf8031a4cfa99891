"""Shared fixtures: an in-process sandbox on a free loopback port."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from target_carecycle.sandbox import RunningSandbox, SandboxConfig, running_sandbox


@pytest.fixture
def sandbox() -> Iterator[RunningSandbox]:
    """A fresh sandbox on a free loopback port, rate limit off."""
    with running_sandbox(SandboxConfig(rate_limit=0)) as running:
        yield running
