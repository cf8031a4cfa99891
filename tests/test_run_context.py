"""What one run shares with its sinks (target_carecycle/run_context.py)."""

from __future__ import annotations

import pytest

from target_carecycle.run_context import (
    LeadsWaiting,
    RunContext,
    RunInterrupted,
    SignalGuard,
    run_context_of,
)
from target_carecycle.target import TargetCareCycle


class Holder:
    """A sink as LeadsWaiting sees it: it can withdraw a waiting lead."""

    def __init__(self) -> None:
        self.withdrawn: list[str] = []

    def withdraw(self, external_id: str) -> None:
        self.withdrawn.append(external_id)


def test_a_newer_version_in_another_sink_names_the_older_holder_once() -> None:
    waiting, first, second = LeadsWaiting(), Holder(), Holder()
    assert waiting.claim("a", first) is None
    assert waiting.claim("a", first) is None  # the same sink again: nothing to withdraw
    assert waiting.claim("a", second) is first
    assert waiting.claim("a", second) is None
    waiting.release(["a"], first)  # first no longer holds it: second's claim stays
    assert len(waiting) == 1
    waiting.release(["a"], second)
    assert len(waiting) == 0


def test_a_signal_inside_guarded_blocks_waits_for_the_outermost_to_end() -> None:
    guard = SignalGuard()
    with pytest.raises(RunInterrupted) as stopped, guard:
        with guard:
            guard.deferred_signal = 15
        assert guard.deferred_signal == 15  # still inside the outer block
    assert stopped.value.signum == 15
    assert guard.deferred_signal is None
    assert guard.depth == 0


def test_the_target_hands_its_sinks_one_run_context() -> None:
    target = TargetCareCycle(config={"dry_run": True}, validate_config=True)
    try:
        context = run_context_of(target)
        assert isinstance(context, RunContext)
        assert context.settings is target.settings
        assert context.outcomes is target.outcomes
        assert context.guarded() is target.guarded()
        assert context.dispatcher_started is None  # a dry run never makes one
        with pytest.raises(AssertionError, match="no client in a dry run"):
            _ = context.dispatcher
    finally:
        target.outcomes.close()


def test_a_sink_needs_a_target_that_provides_a_run_context() -> None:
    with pytest.raises(TypeError, match="RunContext"):
        run_context_of(object())
