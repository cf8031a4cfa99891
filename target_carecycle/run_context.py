"""What one run shares between the target and its sinks, built once by target.py.

The sinks receive this context instead of the target, so `sinks.py` never imports
`target.py` (tests/test_architecture.py checks the package's imports have no circle).
Words used here with one meaning each:

- a lead *waiting*: collected in a sink's batch, not yet handed to the dispatcher
  (`LeadsWaiting`); once handed over it is *in flight* until careCycle answers;
- a record *pending* (outcomes.py): received, with no outcome yet (waiting or in flight);
- a *deferred* signal: a stop signal that arrived inside a guarded block (`SignalGuard`).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from target_carecycle.client import LeadUploadClient, UploadDispatcher
from target_carecycle.outcomes import RunOutcomes
from target_carecycle.settings import RunSettings
from target_carecycle.store import SyncStore
from target_carecycle.sync_run import SyncRun


class RunInterrupted(Exception):
    """SIGTERM or SIGINT arrived: stop reading, settle what is in flight, report."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"stopped by signal {signum}")
        self.signum = signum


class SignalGuard:
    """Re-entrant block inside which a stop signal waits until the block is left."""

    __slots__ = ("deferred_signal", "depth")

    def __init__(self) -> None:
        self.depth = 0
        self.deferred_signal: int | None = None

    def __enter__(self) -> None:
        self.depth += 1

    def __exit__(self, *exc_info: object) -> None:
        self.depth -= 1
        if self.deferred_signal is not None and self.depth == 0:
            signum, self.deferred_signal = self.deferred_signal, None
            raise RunInterrupted(signum)


class LeadHolder(Protocol):
    """A sink, as `LeadsWaiting` sees it: it can drop a waiting lead unsent."""

    def withdraw(self, external_id: str) -> None:
        """A newer version of this lead waits elsewhere: drop ours unsent (merged)."""


class LeadsWaiting:
    """Which sink holds each waiting lead (collected, not yet dispatched), by externalId.

    This keeps the last version of a lead last across sinks: the SDK retires a sink on a
    SCHEMA change and drains it only at the end of input, and two streams may carry the same
    externalId. When a newer version arrives in another sink than the one holding the older
    version, the older one is withdrawn from that sink unsent and counted `merged`, exactly as
    within one batch; an older version already dispatched is handled by the dispatcher, which
    keeps the newer batch back until the older one is finished. So an externalId waits in at
    most one sink, batches keep their full size whatever the streams interleave, and versions
    reach careCycle in input order.
    """

    def __init__(self) -> None:
        self._holder: dict[str, LeadHolder] = {}

    def claim(self, external_id: str, sink: LeadHolder) -> LeadHolder | None:
        """`sink` now holds the lead; return another sink holding an older version, if any."""
        previous = self._holder.get(external_id)
        self._holder[external_id] = sink
        return previous if previous is not None and previous is not sink else None

    def release(self, external_ids: Iterable[str], sink: LeadHolder) -> None:
        """`sink` no longer holds these leads (dispatched, counted or abandoned)."""
        holder = self._holder
        for external_id in external_ids:
            if holder.get(external_id) is sink:
                del holder[external_id]

    def __len__(self) -> int:
        return len(self._holder)


@dataclass(eq=False)
class RunContext:
    """One run's shared parts: settings, outcomes, leads waiting, the guard, store, dispatcher.

    The store and the sync run are set when target.py opens the store (before any input is
    read); the client and the dispatcher are made on the first batch sent (a dry run makes
    neither: the rate limit is per key, so one dispatcher serves every sink).
    """

    settings: RunSettings
    outcomes: RunOutcomes
    leads_waiting: LeadsWaiting = field(default_factory=LeadsWaiting)
    guard: SignalGuard = field(default_factory=SignalGuard)
    stop: threading.Event = field(default_factory=threading.Event)
    sync_store: SyncStore | None = None
    sync_run: SyncRun | None = None  # a run that sends, with a store
    client: LeadUploadClient | None = None
    _dispatcher: UploadDispatcher | None = None

    def guarded(self) -> SignalGuard:
        """Defer a stop signal until the bookkeeping inside this `with` block is complete."""
        return self.guard

    @property
    def dispatcher(self) -> UploadDispatcher:
        """The shared dispatcher, made on first use (never in a dry run)."""
        if self._dispatcher is None:
            assert self.settings.client is not None, "no client in a dry run"
            self.client = LeadUploadClient(
                self.settings.client, stop=self.stop, shared_budget=self.sync_store
            )
            self._dispatcher = UploadDispatcher(self.client, guard=self.guard)
        return self._dispatcher

    @property
    def dispatcher_started(self) -> UploadDispatcher | None:
        """The dispatcher if a batch was ever handed to it, else None (nothing to wait for)."""
        return self._dispatcher


def run_context_of(target: object) -> RunContext:
    """The run context a target hands its sinks (the SDK constructs sinks with the target).

    Raises TypeError for a target that built none: a sink cannot run without one.
    """
    context = getattr(target, "run_context", None)
    if not isinstance(context, RunContext):
        raise TypeError("a CareCycleSink needs a target that provides a RunContext")
    return context
