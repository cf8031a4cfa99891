"""One run's use of the sync store: claims before sending, acknowledgements from the answers.

The store's truth rule (docs/sync-store.md): it holds a digest for a lead only when a run
knew careCycle applied exactly that version last. This module is the run's half of it:

- `claim` (main thread, before a batch is handed to the dispatcher): leads equal to what
  careCycle last acknowledged are left out; the others are claimed for this batch in the
  store, their old digests dropped, durably, before any request leaves.
- `answered` (upload thread, the moment a batch is finished): the batch goes into a buffer
  of batches to settle. Leads of a request whose fate is unknown (no answer, a connection
  lost after sending, a 5xx) are tainted: never recorded in this run, and their claims become
  doubts in the store for `doubt_seconds`, so no run records them while the request may
  still land.
- A writer thread settles the buffer in one transaction about once a second (or sooner when
  it is large): a digest is written only where the batch's claim still stands (`SyncStore.
  settle`). So the time of writing never matters to the truth of the store: a late write
  finds the claim taken over and writes nothing. It only matters to how often leads are
  resent, so acknowledgements are written promptly, from the answer, not when the main
  thread next looks.
"""

from __future__ import annotations

import hmac
import itertools
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from target_carecycle.client import BatchResult
from target_carecycle.store import (
    RUN_ID_BYTES,
    SettledBatch,
    StoreInterrupted,
    SyncStore,
    SyncStoreError,
)

# Acknowledgements are written at least this often while a run has some...
SETTLE_EVERY_SECONDS = 1.0
# ...and at once when this many leads are waiting (25 full batches): it bounds memory, the
# resends a kill -9 costs at unlimited rates (at careCycle's 60 requests a minute a second is
# 200 leads) and the size of the claims table, whose random inserts cost more the larger it
# is (benchmarks/bench_sync_store.py).
SETTLE_AT_LEADS = 5_000


@dataclass(frozen=True, slots=True)
class ClaimedBatch:
    """A batch claimed in the store, in the order its leads are sent."""

    batch: int
    lead_keys: tuple[bytes, ...]
    payload_hashes: tuple[bytes, ...]


class SyncRun:
    """A run that sends: its run id, claims, tainted leads and buffered acknowledgements.

    Thread-safe. Store failures in the writer thread are kept and raised on the main thread
    by `check` (or the next `settle_now`).
    """

    def __init__(
        self, store: SyncStore, *, skip_unchanged: bool, doubt_seconds: float = 0.0
    ) -> None:
        self.store = store
        self.doubt_seconds = doubt_seconds
        self.run_id = os.urandom(RUN_ID_BYTES)
        self._skip_unchanged = skip_unchanged
        self._batches = itertools.count(1)
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._settling = threading.Lock()  # one settle transaction at a time
        self._finished: list[SettledBatch] = []  # batches answered, to settle
        self._waiting_leads = 0  # leads in them
        # lead_key -> payload digest careCycle acknowledged in this run, not yet settled
        self._acknowledged: dict[bytes, bytes] = {}
        self._doubtful: set[bytes] = set()  # leads with a request of unknown fate, to write
        self._since: float | None = None  # when the oldest waiting entry arrived
        self._tainted: set[bytes] = set()
        self._error: SyncStoreError | None = None
        self._error_raised = False
        self._closing = False
        self.recorded = 0
        self._writer = threading.Thread(
            target=self._write_loop, name="carecycle-sync-store", daemon=True
        )
        self._writer.start()

    # Main thread

    def claim(
        self, lead_keys: Sequence[bytes], payload_hashes: Sequence[bytes]
    ) -> tuple[set[int], ClaimedBatch | None]:
        """(positions unchanged, the claim of the others) for a batch about to be sent.

        Unchanged: equal to what careCycle acknowledged last, in this run (still waiting to
        be written) or in the store. Raises SyncStoreError (nothing is sent; the leads stay
        where they are) or StoreInterrupted.
        """
        self.check()
        unchanged: set[int] = set()
        with self._lock:
            if self._skip_unchanged:
                for position, (key, digest) in enumerate(
                    zip(lead_keys, payload_hashes, strict=True)
                ):
                    waiting = self._acknowledged.get(key)
                    if waiting is not None and hmac.compare_digest(waiting, digest):
                        unchanged.add(position)
            for position, key in enumerate(lead_keys):
                if position not in unchanged:  # sent again: the claim fences the older one
                    self._acknowledged.pop(key, None)
        candidates = [p for p in range(len(lead_keys)) if p not in unchanged]
        if not candidates:
            return unchanged, None
        batch = next(self._batches)
        try:
            same = self.store.claim(
                self.run_id,
                batch,
                [(lead_keys[p], payload_hashes[p]) for p in candidates],
                skip_unchanged=self._skip_unchanged,
                doubt_seconds=self.doubt_seconds,
            )
        except SyncStoreError as exc:  # the run stops: nothing more is written
            self._error, self._error_raised = exc, True
            raise
        unchanged.update(p for p in candidates if lead_keys[p] in same)
        sent = [p for p in candidates if lead_keys[p] not in same]
        if not sent:
            return unchanged, None
        claimed = ClaimedBatch(
            batch,
            tuple(lead_keys[p] for p in sent),
            tuple(payload_hashes[p] for p in sent),
        )
        return unchanged, claimed

    def check(self) -> None:
        """Raise the writer thread's store failure, if it had one."""
        if self._error is not None:
            self._error_raised = True
            raise self._error

    @property
    def failed(self) -> bool:
        """True once a store failure was raised to the main thread (it stops the run)."""
        return self._error_raised

    def settle_now(self, *, after_stop: bool = False) -> None:
        """Write every waiting acknowledgement now (end of input, before a STATE, a stop).

        `after_stop`: the run is stopping; wait at most a second for a locked store.
        """
        self.check()
        with self._settling:
            taken = self._take()
            self._settle(*taken, after_stop=after_stop)
        self.check()

    def close(self) -> None:
        """Stop the writer thread (what is still waiting is not written)."""
        with self._lock:
            self._closing = True
            self._wake.notify()
        self._writer.join(timeout=60)

    @property
    def tainted(self) -> int:
        """Leads with a request of unknown fate in this run (never recorded in it)."""
        with self._lock:
            return len(self._tainted)

    # Upload threads

    def answered(
        self, claimed: ClaimedBatch, result: BatchResult | None, maybe_applied: bool
    ) -> None:
        """A batch is finished (result None: not delivered). Never raises."""
        with self._lock:
            keys = claimed.lead_keys
            if maybe_applied:
                self._tainted.update(keys)
                self._doubtful.update(keys)
            elif result is None:
                self._finished.append(SettledBatch(claimed.batch, acknowledged=False))
            else:
                not_confirmed = result.failures.keys() | result.unconfirmed
                excluded = {keys[index] for index in not_confirmed}
                excluded.update(key for key in keys if key in self._tainted)
                self._finished.append(SettledBatch(claimed.batch, True, tuple(excluded)))
                acknowledged = self._acknowledged
                for key, digest in zip(keys, claimed.payload_hashes, strict=True):
                    if key not in excluded:
                        acknowledged[key] = digest
            self._waiting_leads += len(keys)
            self._wake_writer()

    def _wake_writer(self) -> None:
        """(Holding the lock) wake the writer when something starts waiting, or a lot does."""
        if self._since is None and self._waiting():
            self._since = time.monotonic()
            self._wake.notify()  # the writer sleeps until something waits
        elif self._waiting() >= SETTLE_AT_LEADS:
            self._wake.notify()

    def _waiting(self) -> int:
        return self._waiting_leads

    # The writer thread

    def _write_loop(self) -> None:
        while True:
            with self._lock:
                while not self._closing and not self._due():
                    waited = self._since
                    timeout = (
                        None
                        if waited is None
                        else max(0.0, waited + SETTLE_EVERY_SECONDS - time.monotonic())
                    )
                    self._wake.wait(timeout)
                if self._closing or self._error is not None:
                    return
            with self._settling:
                taken = self._take()
                try:
                    self._settle(*taken, after_stop=False)
                except StoreInterrupted:
                    self._put_back(*taken)  # for the last settle_now
                    return
                except SyncStoreError:
                    return  # kept in self._error for the main thread

    def _due(self) -> bool:
        if self._since is None:
            return False
        return (
            self._waiting() >= SETTLE_AT_LEADS
            or time.monotonic() - self._since >= SETTLE_EVERY_SECONDS
        )

    # Both

    def _take(self) -> tuple[list[SettledBatch], list[bytes], dict[bytes, bytes]]:
        """What is waiting (taken out: the in-run lookup no longer sees it meanwhile)."""
        with self._lock:
            taken = self._finished, sorted(self._doubtful), self._acknowledged
            self._finished, self._doubtful, self._acknowledged = [], set(), {}
            self._waiting_leads, self._since = 0, None
        return taken

    def _put_back(
        self,
        finished: list[SettledBatch],
        doubtful: list[bytes],
        acknowledged: dict[bytes, bytes],
    ) -> None:
        with self._lock:
            self._finished[:0] = finished
            self._doubtful.update(doubtful)
            for key, digest in acknowledged.items():
                self._acknowledged.setdefault(key, digest)
            self._waiting_leads += sum(1 for _ in acknowledged) + len(doubtful)
            if self._since is None and (self._finished or self._doubtful):
                self._since = time.monotonic()

    def _settle(
        self,
        finished: list[SettledBatch],
        doubtful: list[bytes],
        acknowledged: dict[bytes, bytes],
        *,
        after_stop: bool,
    ) -> None:
        del acknowledged  # settled from the claims, which carry each lead's digest
        if self._error is not None or not (finished or doubtful):
            return
        try:
            self.recorded += self.store.settle(
                self.run_id,
                finished,
                doubtful,
                doubt_seconds=self.doubt_seconds,
                after_stop=after_stop,
            )
        except SyncStoreError as exc:
            self._error = exc
            self._error_raised = threading.current_thread() is threading.main_thread()
            raise


__all__ = ["SETTLE_AT_LEADS", "SETTLE_EVERY_SECONDS", "ClaimedBatch", "SyncRun"]
