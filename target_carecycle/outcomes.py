"""The account of every record: counters, metrics, the reject and results files, the summary.

Every record the target receives ends in exactly one outcome, per stream:
received = succeeded + failed + rejected + merged + skipped + unchanged + unsent (unsent only
when a run stops early; unchanged: equal to what careCycle last acknowledged, so not sent).
Each outcome is declared once, in `OUTCOME_REGISTRY`; the counters, the state metrics, the
summaries, the failure policy's sums, the settled check and the table in docs/outcomes.md
are derived from it. In a dry run `succeeded` is reported as `would_send`: nothing was sent.
Logs name a record by stream, position and externalId, never by personal data.

It also holds the failure policy (docs/failure-policy.md): which counts fail a run, and
whether a STATE may leave the target yet.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import stat
import sys
import time
import uuid
from collections import Counter
from collections.abc import Collection, Iterable, Mapping
from dataclasses import KW_ONLY, dataclass, field
from datetime import datetime, timezone
from typing import IO, Any, Protocol

from singer_sdk import metrics

from target_carecycle.fields import PERSONAL_FIELDS
from target_carecycle.printable import printable
from target_carecycle.private_files import make_private_folders
from target_carecycle.serialization import dumps_json

PROGRESS_INTERVAL_SECONDS = 30.0
# `max_error_rate` is judged on a stream once this many of its records have an outcome that
# says something about the data (earlier, a few bad records first would stop a good run);
# a stream that ends with fewer is judged on all of them at the end.
ERROR_RATE_MIN_RECORDS = 100
# Per-record warnings (failed, rejected) logged one by one per reason; the rest are counted.
WARNINGS_PER_REASON = 5
# Reasons whose suppressed count gets its own line at the end; more are summed in one line.
MAX_SUPPRESSED_REASON_LINES = 20

logger = logging.getLogger("target-carecycle.outcomes")


@dataclass(frozen=True, slots=True)
class Outcome:
    """One way a record's story ends, declared once in `OUTCOME_REGISTRY`.

    `name` is the key in the state metrics, the summary event and the `outcome` tag of the
    `record_count` metric; `label` is its word in the summary lines, `meaning` its row in
    docs/outcomes.md. The flags say how the failure policy and the settled check count it:
    `delivered` (careCycle holds the lead after this run), `refused` (failed or rejected:
    counts against max_record_errors and max_error_rate), `judged` (says whether the data is
    usable: the error rate's base), `settled` (False: the record was never delivered, so a
    STATE must not claim it). `dry_run_name` and `dry_run_label` replace the name and label in
    a dry run (nothing was sent); `shown_when_zero` False keeps a zero out of the summary.
    """

    name: str
    label: str
    meaning: str
    _: KW_ONLY
    delivered: bool = False
    refused: bool = False
    judged: bool = False
    settled: bool = True
    shown_when_zero: bool = True
    dry_run_name: str | None = None
    dry_run_label: str | None = None


OUTCOME_REGISTRY: tuple[Outcome, ...] = (
    Outcome(
        "succeeded",
        "succeeded",
        "careCycle accepted the lead (created or updated it)",
        delivered=True,
        judged=True,
        dry_run_name="would_send",
        dry_run_label="would send",
    ),
    Outcome(
        "failed",
        "failed",
        "careCycle refused it: an `errors` item in a 200 answer (matched by `externalId`), or a "
        "record named in a `VALIDATION_ERROR` answer. In that case exactly those records are "
        "dropped, reported with careCycle's messages, and the rest of the batch is sent again.",
        refused=True,
        judged=True,
    ),
    Outcome(
        "rejected",
        "rejected",
        "refused locally, never sent: no valid phone number, or neither a valid ZIP nor a time "
        "zone (or any bad optional value with `strict: true`, or a record breaking the tap's "
        "schema with `validate_records: true`)",
        refused=True,
        judged=True,
    ),
    Outcome(
        "merged",
        "merged",
        "a later record with the same `externalId` replaced it before it was sent (in the same "
        "batch, another stream, or a sink retired by a schema change): the last version wins",
    ),
    Outcome(
        "skipped",
        "skipped",
        "the stream is disabled (`enabled: false`), or a stream map filtered the record out "
        "(`__filter__`, a stream mapped to `__NULL__`)",
    ),
    Outcome(
        "unchanged",
        "unchanged",
        "the lead equals what careCycle last acknowledged for its externalId (the "
        "[sync store](sync-store.md)): not sent again",
        delivered=True,
        judged=True,
    ),
    Outcome(
        "unsent",
        "not sent (run stopped)",
        "the run stopped (signal, fatal error, the [failure policy](failure-policy.md)) before "
        "the lead was delivered",
        settled=False,
        shown_when_zero=False,
    ),
)
"""Every outcome, in the order of the state metrics, the summary and docs/outcomes.md."""

OUTCOMES: tuple[str, ...] = tuple(outcome.name for outcome in OUTCOME_REGISTRY)
"""The outcome names in state order (other modules and branches import this)."""


def markdown_table(registry: Iterable[Outcome]) -> str:
    """The outcome table of docs/outcomes.md (written by scripts/registry_tables.py)."""
    lines = ["| outcome | meaning |", "|---|---|"]
    lines.extend(f"| `{outcome.name}` | {outcome.meaning} |" for outcome in registry)
    return "\n".join(lines) + "\n"


class RecordLog(Protocol):
    """Where each record's outcome goes by externalId (the opt-in sync log, history.py)."""

    def add(
        self,
        stream: str,
        external_id: str | None,
        outcome: str,
        *,
        reason: str | None = None,
        carecycle_id: str | None = None,
    ) -> None:
        """One record's outcome (careCycle's id when it accepted the lead)."""

    def add_many(self, stream: str, external_ids: Iterable[str], outcome: str) -> None:
        """The same outcome for several records (unchanged, unsent)."""


class TooManyRecordErrors(Exception):
    """The failure policy fails the run (docs/failure-policy.md).

    Too many records failed or were rejected, or a stream delivered nothing while its records
    failed.
    """


class UncountedRecords(metrics.Counter):
    """A `record_count` counter that never emits: the SDK's untagged count, silenced.

    Each record is counted once, by RunOutcomes, tagged with its outcome; the SDK's own
    untagged count of the same records would double every per-stream sum.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(metrics.Metric.RECORD_COUNT, {metrics.Tag.STREAM: stream})

    def increment(self, value: int = 1) -> None:
        """Count nothing."""
        del value

    def exit(self) -> None:
        """Emit nothing."""


def _flags(outcome: Outcome) -> tuple[str, ...]:
    """The sums an outcome's records add to (`unsettled`: its `settled` is false)."""
    flags = {
        "delivered": outcome.delivered,
        "refused": outcome.refused,
        "judged": outcome.judged,
        "unsettled": not outcome.settled,
    }
    return tuple(flag for flag, on in flags.items() if on)


_FLAGS = ("delivered", "refused", "judged", "unsettled")


@dataclass
class StreamTally:
    """Counts for one stream in this run: records received, and each outcome's count."""

    registry: tuple[Outcome, ...] = OUTCOME_REGISTRY
    received: int = 0
    counts: dict[str, int] = field(init=False)
    omitted: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self.counts = dict.fromkeys((outcome.name for outcome in self.registry), 0)
        # The sums the failure policy reads for every record, kept up to date by `add`:
        # each outcome adds to the sums of its flags.
        self._sums = dict.fromkeys(_FLAGS, 0)
        self._flags_of = {outcome.name: _flags(outcome) for outcome in self.registry}
        self._with_outcome = 0

    def __getitem__(self, outcome: str) -> int:
        """The count of one outcome (KeyError for a name not in the registry)."""
        return self.counts[outcome]

    def add(self, outcome: str, count: int = 1) -> None:
        """Count `count` more records with `outcome`."""
        flags = self._flags_of.get(outcome)
        if flags is None:
            raise KeyError(f"{outcome!r} is not an outcome of the registry")
        self.counts[outcome] += count
        self._with_outcome += count
        for flag in flags:
            self._sums[flag] += count

    def as_state(self) -> dict[str, int]:
        """Counts for the state message (never per-record detail): received, then each outcome."""
        return {"received": self.received, **self.counts}

    def total(self, flag: str) -> int:
        """The sum of the outcomes whose `flag` is true: delivered, refused, judged, unsettled."""
        return self._sums[flag]

    @property
    def judged(self) -> int:
        """Records whose outcome says whether the data is usable (the error rate's base).

        Merged and skipped records are left out: replaced by a newer version, or filtered by
        the user's own settings, they say nothing about the mapping or the data.
        """
        return self.total("judged")

    @property
    def held(self) -> int:
        """Leads careCycle holds after this run: accepted (dry run: would send) or unchanged."""
        return self.total("delivered")

    @property
    def refused(self) -> int:
        """Records that failed or were rejected: what the failure policy counts."""
        return self.total("refused")

    @property
    def pending(self) -> int:
        """Records received that have no outcome yet (in a batch or in flight)."""
        return self.received - self._with_outcome

    @property
    def unsettled(self) -> int:
        """Records whose outcome says they were never delivered (the run stopped early)."""
        return self.total("unsettled")


class OutputFileError(Exception):
    """A reject or results file cannot be written; the message names the setting."""


class _JsonlFile:
    """A JSONL file that each run appends to, private to its owner.

    It holds personal data, so: the file is 0600 (an existing one is made so), the folders
    the target creates for it are 0700, and a symbolic link or anything but a regular file
    at the path is refused (a link could point the data anywhere).
    """

    def __init__(self, setting: str, path: str) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC | os.O_NOFOLLOW
        fd = -1
        try:
            make_private_folders(os.path.dirname(os.path.abspath(path)))
            if os.path.lexists(path) and not stat.S_ISREG(os.lstat(path).st_mode):
                raise OutputFileError(_refusal(setting, path))
            fd = os.open(path, flags, 0o600)
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise OutputFileError(_refusal(setting, path))
            os.fchmod(fd, 0o600)
        except OSError as exc:
            if fd >= 0:
                os.close(fd)
            if exc.errno == errno.ELOOP:
                raise OutputFileError(_refusal(setting, path)) from None
            raise OutputFileError(f"{setting}: cannot write the file ({exc.strerror})") from None
        except OutputFileError:
            if fd >= 0:
                os.close(fd)
            raise
        self._file: IO[bytes] = os.fdopen(fd, "wb")

    def write(self, item: Mapping[str, Any]) -> None:
        self._file.write(dumps_json(item) + b"\n")

    def close(self) -> None:
        self._file.close()


class RunOutcomes:
    """Collects what happened to every record, and reports it."""

    def __init__(
        self,
        *,
        reject_file: str | None = None,
        results_file: str | None = None,
        max_record_errors: int | None = None,
        max_error_rate: float = 1.0,
        dry_run: bool = False,
        run_id: str | None = None,
        registry: tuple[Outcome, ...] = OUTCOME_REGISTRY,
    ) -> None:
        self.registry = registry
        self._outcomes = {outcome.name: outcome for outcome in registry}
        self.tallies: dict[str, StreamTally] = {}
        self.dry_run = dry_run
        self.max_record_errors = max_record_errors
        self.max_error_rate = float(max_error_rate)
        started = datetime.now(timezone.utc)
        self.run_started_at = started.isoformat(timespec="seconds")
        # Names files ({run_id}): only filename-safe characters, never a path.
        self.run_id = re.sub(r"[^A-Za-z0-9_-]", "", run_id or "")[:64] or uuid.uuid4().hex[:12]
        placeholders = {"run_id": self.run_id, "started_at": started.strftime("%Y%m%dT%H%M%SZ")}
        self.reject_path = _expand(reject_file, placeholders) if reject_file else None
        results_path = _expand(results_file, placeholders) if results_file else None
        self._rejects = _JsonlFile("reject_file", self.reject_path) if self.reject_path else None
        self._results = (
            _JsonlFile("results_file", results_path) if results_path and not dry_run else None
        )
        self._counters: dict[tuple[str, str], metrics.Counter] = {}
        self._started = time.monotonic()
        self._last_progress = self._started
        self._warned: Counter[tuple[str, str]] = Counter()
        # The outcome accepted leads are counted under in metrics and summaries: a dry run
        # never calls anything `succeeded`.
        self.sent_outcome = self.reported_name("succeeded")
        # The sync log (history.SyncLog, opt in): told each record's outcome by externalId.
        self.record_log: RecordLog | None = None

    def reported_name(self, outcome: str) -> str:
        """The outcome's name in metrics and the summary event (its dry-run name in a dry run)."""
        spec = self._outcomes[outcome]
        return (spec.dry_run_name if self.dry_run else None) or spec.name

    def reported_label(self, outcome: str) -> str:
        """The outcome's word in the summary lines (its dry-run label in a dry run)."""
        spec = self._outcomes[outcome]
        return (spec.dry_run_label if self.dry_run else None) or spec.label

    def tally(self, stream: str) -> StreamTally:
        """The counts for `stream` (created on first use)."""
        found = self.tallies.get(stream)
        if found is None:
            found = self.tallies[stream] = StreamTally(self.registry)
        return found

    def record(self, stream: str, outcome: str, count: int = 1) -> None:
        """`count` records of `stream` ended with `outcome`: counted, and in the metrics.

        The one place an outcome is counted; the named methods below add what their
        outcome needs besides (a log line, a reject or results file line).
        """
        if count:
            self.tally(stream).add(outcome, count)
            self._count(stream, self.reported_name(outcome), count)

    def received(self, stream: str) -> int:
        """A record arrived on `stream`; return its position in the stream (from 1)."""
        tally = self.tally(stream)
        tally.received += 1
        return tally.received

    def skipped(self, stream: str) -> None:
        """A record of a disabled stream was ignored."""
        self.record(stream, "skipped")

    def unchanged(self, stream: str, count: int, external_ids: Iterable[str] = ()) -> None:
        """Leads equal to what careCycle last acknowledged for their externalIds: not sent."""
        self.record(stream, "unchanged", count)
        if self.record_log is not None:
            self.record_log.add_many(stream, external_ids, "unchanged")

    def merged(self, stream: str, position: int, external_id: str) -> None:
        """An earlier lead with the same externalId in the batch was replaced by a later one."""
        self.record(stream, "merged")
        if self.record_log is not None:
            self.record_log.add(stream, external_id, "merged")
        logger.info(
            "Merged: stream=%s position=%d externalId=%s (a later record has the same externalId)",
            printable(stream),
            position,
            printable(external_id),
        )

    def omitted(self, stream: str, reasons: Mapping[str, str]) -> None:
        """Optional values that could not be normalised were left out of a lead."""
        self.tally(stream).omitted.update(f"{name} ({why})" for name, why in reasons.items())

    def rejected(
        self, stream: str, position: int, external_id: str | None, reason: str, record: Any
    ) -> None:
        """A record was refused locally and never sent."""
        self._refused("rejected", stream, position, external_id, reason, record)

    def failed(
        self, stream: str, position: int, external_id: str | None, reason: str, record: Any
    ) -> None:
        """careCycle refused a lead."""
        self._refused("failed", stream, position, external_id, reason, record)

    def succeeded(
        self,
        stream: str,
        external_id: str,
        carecycle_id: str | None,
        position: int | None = None,
    ) -> None:
        """careCycle accepted a lead (or, in a dry run, it would have been sent).

        The receipt names the record's position in its stream when known, so every record
        can be matched to exactly one outcome (results file, reject file, merged log line).
        """
        self.record(stream, "succeeded")
        if self.record_log is not None:
            self.record_log.add(stream, external_id, "succeeded", carecycle_id=carecycle_id)
        if self._results is not None:
            receipt: dict[str, Any] = {
                "run": self.run_started_at,
                "stream": stream,
                "externalId": external_id,
                "id": carecycle_id,
            }
            if position is not None:
                receipt["position"] = position
            self._results.write(receipt)

    def unsent(self, stream: str, count: int, external_ids: Iterable[str] = ()) -> None:
        """Leads that were never delivered because the run stopped early."""
        self.record(stream, "unsent", count)
        if self.record_log is not None:
            self.record_log.add_many(stream, external_ids, "unsent")

    def _refused(
        self,
        status: str,
        stream: str,
        position: int,
        external_id: str | None,
        reason: str,
        record: Any,
    ) -> None:
        self.record(stream, status)
        self.tally(stream).reasons[reason] += 1
        if self.record_log is not None:
            self.record_log.add(stream, external_id, status, reason=reason)
        self._warned[(status, reason)] += 1
        if self._warned[(status, reason)] <= WARNINGS_PER_REASON:
            logger.warning(
                "Lead %s: stream=%s position=%d externalId=%s reason=%s",
                status,
                printable(stream),
                position,
                printable(external_id),
                printable(reason),
            )
        if self._rejects is not None:
            self._rejects.write(
                {
                    "run": self.run_started_at,
                    "stream": stream,
                    "position": position,
                    "externalId": external_id,
                    "status": status,
                    "reason": reason,
                    "record": record,
                }
            )

    def check_error_limit(self, *, final: bool = False) -> None:
        """Raise TooManyRecordErrors when the failure policy fails the run.

        Mid-run (`final` false): `max_record_errors`, and `max_error_rate` once at least
        ERROR_RATE_MIN_RECORDS records are judged. At the end (`final`): the rate over the
        whole run whatever its size, and the "nothing delivered" rule.
        """
        breach = self.policy_breach(final=final)
        if breach is not None:
            raise TooManyRecordErrors(breach)

    def policy_breach(self, *, final: bool) -> str | None:
        """Why the failure policy fails the run now (one line, no record value), or None."""
        bad, judged, held, pending = self._policy_counts()
        if self.max_record_errors is not None and bad > self.max_record_errors:
            return (
                f"{bad} records failed or were rejected, more than "
                f"max_record_errors={self.max_record_errors}"
            )
        if not bad:
            return None
        if final and not held:
            verb = "would have sent" if self.dry_run else "accepted"
            return (
                f"{bad} records failed or were rejected and careCycle {verb} none of this "
                "run's leads (nothing delivered)"
            )
        # Leads still waiting for careCycle's answer count in the base (as not failed yet):
        # rejections are known at once, acceptances only when a batch comes back, so a rate
        # over settled records alone would overstate the errors of every healthy run.
        base = judged + pending
        if (final or judged >= ERROR_RATE_MIN_RECORDS) and bad / base > self.max_error_rate:
            return (
                f"{bad} of {base} records ({bad / base:.0%}) failed or were rejected, "
                f"more than max_error_rate={self.max_error_rate:g}{self._worst_stream()}"
            )
        return None

    def _worst_stream(self) -> str:
        """`; most in stream 'x' (n of m)` when the run has several streams, else ""."""
        if len(self.tallies) < 2:
            return ""
        stream, tally = max(self.tallies.items(), key=lambda kv: kv[1].refused)
        return f"; most in stream '{stream}' ({tally.refused} of {tally.judged})"

    def state_may_pass(self) -> bool:
        """False while the run has failed or rejected records and nothing careCycle holds.

        A STATE emitted then would move the tap's bookmark past records that fail the run at
        its end (the "nothing delivered" rule); it is held until a lead is accepted (or found
        unchanged), and never emitted if the run fails.
        """
        bad, _, held, _ = self._policy_counts()
        return bool(held) or not bad

    def _policy_counts(self) -> tuple[int, int, int, int]:
        """(failed + rejected, judged, held, pending) over every stream (runs per record)."""
        bad = judged = held = pending = 0
        for tally in self.tallies.values():
            bad += tally.refused
            judged += tally.judged
            held += tally.held
            pending += tally.pending
        return bad, judged, held, pending

    def _count(self, stream: str, outcome: str, value: int = 1) -> None:
        counter = self._counters.get((stream, outcome))
        if counter is None:
            counter = metrics.record_counter(stream, outcome=outcome)
            self._counters[(stream, outcome)] = counter
        counter.increment(value)

    def all_settled(self) -> bool:
        """True when every record received has an outcome and none went unsent."""
        return all(t.pending == 0 and t.unsettled == 0 for t in self.tallies.values())

    def state_metrics(self) -> dict[str, dict[str, int]]:
        """Per-stream counts for this run, for the `target_carecycle` key of each STATE."""
        return {stream: tally.as_state() for stream, tally in sorted(self.tallies.items())}

    def maybe_log_progress(self) -> None:
        """Log a progress line at most every 30 seconds."""
        now = time.monotonic()
        if now - self._last_progress < PROGRESS_INTERVAL_SECONDS:
            return
        self._last_progress = now
        totals = self.totals()
        rate = totals["succeeded"] / max(now - self._started, 1e-9)
        logger.info(
            "Progress: %d leads %s, %d unchanged, %d failed, %d rejected, %.0f leads/s",
            totals["succeeded"],
            "would be sent" if self.dry_run else "sent",
            totals["unchanged"],
            totals["failed"],
            totals["rejected"],
            rate,
        )

    def totals(self) -> StreamTally:
        """Counts summed over every stream."""
        total = StreamTally(self.registry)
        for tally in self.tallies.values():
            total.received += tally.received
            for name, count in tally.counts.items():
                total.add(name, count)
            total.omitted.update(tally.omitted)
            total.reasons.update(tally.reasons)
        return total

    def summary_lines(self, requests: int = 0, facts: str | None = None) -> list[str]:
        """The end-of-run summary: per stream counts, omitted fields and the top reasons."""
        seconds = time.monotonic() - self._started
        head = "target-carecycle summary" + (" (dry run: nothing was sent)" if self.dry_run else "")
        lines = [f"{head}, {seconds:.1f} s, {requests} upload requests"]
        # Stream names and reasons come from the input: printed escaped, one line each.
        if facts:
            lines.append(f"  {facts}")
        for stream, tally in sorted(self.tallies.items()):
            lines.append(f"  {printable(stream)}: " + self._counts_text(tally))
            if tally.omitted:
                lines.append("    optional values left out of leads that were sent:")
                lines.extend(
                    f"      {n} x {printable(what)}" for what, n in tally.omitted.most_common()
                )
            if tally.reasons:
                lines.append("    top reasons for failed and rejected records:")
                lines.extend(
                    f"      {n} x {printable(why)}" for why, n in tally.reasons.most_common(5)
                )
        if len(self.tallies) > 1:
            lines.append("  all streams: " + self._counts_text(self.totals()))
        return lines

    def print_summary(
        self, requests: int = 0, stream: IO[str] | None = None, facts: str | None = None
    ) -> None:
        """Write the summary to stderr."""
        out = stream or sys.stderr
        out.write("\n".join(self.summary_lines(requests, facts)) + "\n")
        out.flush()

    def log_suppressed_warnings(self) -> None:
        """One line per reason whose records were not all logged: how many, and where they are."""
        where = (
            f"all are in the reject file {self.reject_path}"
            if self.reject_path
            else "set reject_file to keep every one"
        )
        suppressed = [
            (count - WARNINGS_PER_REASON, status, reason)
            for (status, reason), count in self._warned.items()
            if count > WARNINGS_PER_REASON
        ]
        suppressed.sort(key=lambda item: -item[0])
        for count, status, reason in suppressed[:MAX_SUPPRESSED_REASON_LINES]:
            logger.warning(
                "Lead %s: %d more records with reason=%s were not logged one by one; %s",
                status,
                count,
                reason,
                where,
            )
        rest = suppressed[MAX_SUPPRESSED_REASON_LINES:]
        if rest:
            logger.warning(
                "%d more failed or rejected records (%d other reasons) were not logged one by "
                "one; %s",
                sum(count for count, _, _ in rest),
                len(rest),
                where,
            )

    def summary_event(self, **fields: Any) -> dict[str, Any]:
        """The run's summary as one JSON object: per stream every outcome, plus `fields`."""
        return {
            "run_id": self.run_id,
            "dry_run": self.dry_run,
            "duration_seconds": round(time.monotonic() - self._started, 3),
            **fields,
            "streams": {
                stream: self._reported_counts(tally)
                for stream, tally in sorted(self.tallies.items())
            },
            "totals": self._reported_counts(self.totals()),
        }

    def _reported_counts(self, tally: StreamTally) -> dict[str, int]:
        counts = {"received": tally.received}
        counts.update({self.reported_name(name): n for name, n in tally.counts.items()})
        return counts

    def _counts_text(self, tally: StreamTally) -> str:
        """`received 5, succeeded 2, failed 0, ...`: every outcome the registry shows."""
        parts = [f"received {tally.received}"]
        for outcome in self.registry:
            count = tally[outcome.name]
            if count or outcome.shown_when_zero:
                parts.append(f"{self.reported_label(outcome.name)} {count}")
        return ", ".join(parts)

    def close(self) -> None:
        """Flush metrics and close the files."""
        for counter in self._counters.values():
            counter.exit()
        for handle in (self._rejects, self._results):
            if handle is not None:
                handle.close()


def _expand(path: str, placeholders: Mapping[str, str]) -> str:
    """`path` with each `{name}` placeholder replaced (settings.py refuses unknown names)."""
    for name, value in placeholders.items():
        path = path.replace("{" + name + "}", value)
    return path


def _refusal(setting: str, path: str) -> str:
    kind = "a symbolic link" if os.path.islink(path) else "not a regular file"
    return f"{setting}: the path is {kind}; give the path of a regular file"


def mask_lead(
    lead: Mapping[str, Any], personal_fields: Collection[str] = PERSONAL_FIELDS
) -> dict[str, Any]:
    """A copy of `lead` safe to print: personal values keep only their shape's ends.

    A list of `{fieldKey, value}` items (customFields) keeps each `fieldKey`, which careCycle's
    settings define, and masks each `value`, which can hold anything.
    """
    return {
        name: _mask_field(value) if name in personal_fields else value
        for name, value in lead.items()
    }


def _mask_field(value: Any) -> Any:
    if not isinstance(value, list | tuple):
        return _mask(value)
    return [
        {"fieldKey": item.get("fieldKey"), "value": _mask(item.get("value"))}
        if isinstance(item, Mapping) and "value" in item
        else _mask(item)
        for item in value
    ]


def _mask(value: Any) -> str:
    text = str(value)
    if len(text) <= 4:
        return "*" * len(text)
    return text[0] + "*" * (len(text) - 3) + text[-2:]
