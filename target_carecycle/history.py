"""The run history and the opt-in sync log, kept in the sync store (docs/history.md).

Writing (a run that sends, with a store): `RunHistory.start` writes the run's row with
status `running` before any input is read, so a run killed with -9 leaves it (the report
shows it `unfinished`); `RunHistory.finish` writes the end, the status and every stream's
counts in one transaction, so a run has its true counts or none. With `sync_log` on, each
record's outcome (by externalId) is buffered and written in batches of LOG_BATCH_ROWS rows.
Each row keeps the retention of the run that wrote it (`keep_days`); at the end of each run
every row older than its own retention is pruned, whichever account wrote it.

The history is a by-product: a store failure while writing it logs one warning line and the
run goes on (the leads, their digests and the run's exit code do not depend on it).

Reading (`read_history`): the last runs of an account as report.RunRecords, and the sync
log's refused records of those runs, for the renderers in report.py.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import re
import sqlite3
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from importlib import metadata as package_metadata
from typing import Any

from sqlalchemy import Table, and_, func, select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError

from target_carecycle.client import SendRecord
from target_carecycle.fatal import LOGGER_NAME
from target_carecycle.history_tables import LOG_TABLE, RUN_STREAMS_TABLE, RUNS_TABLE
from target_carecycle.outcomes import RunOutcomes
from target_carecycle.printable import printable
from target_carecycle.report import (
    COUNT_KEYS,
    REFUSED_OUTCOMES,
    RefusedRecord,
    RunAccount,
    RunRecord,
    StreamHistory,
)
from target_carecycle.settings import SyncLogSettings
from target_carecycle.store import (
    StoreInterrupted,
    SyncStore,
    SyncStoreError,
    accounts_table,
    metadata,
)

logger = logging.getLogger("target-carecycle.history")

LOG_BATCH_ROWS = 5_000  # sync log rows buffered before one insert (one transaction)
LOG_QUEUE_BATCHES = 4  # batches waiting for the writer thread at most
TOP_REASONS = 10  # reasons kept per stream and run
MAX_REASON_CHARS = 500
EXIT_SIGNAL_BASE = 128  # the target's exit code after a stop signal is 128 + its number
# For benchmarks/bench_history.py only: "1" turns the history off, to measure what it costs
# against the same code in the same session. Not a setting (users have no reason to).
BENCHMARK_SWITCH = "CARECYCLE_BENCHMARK_NO_HISTORY"
_IDENTIFIER = re.compile(r"[A-Za-z0-9_-]{1,64}")
_FATAL_PREFIX = f"{LOGGER_NAME}: "

runs_table: Table = metadata.tables[RUNS_TABLE]
run_streams_table: Table = metadata.tables[RUN_STREAMS_TABLE]
log_table: Table = metadata.tables[LOG_TABLE]


def target_version() -> str:
    """The installed target-carecycle's version (`unknown` from a bare source tree)."""
    try:
        return package_metadata.version("target-carecycle")[:64]
    except package_metadata.PackageNotFoundError:
        return "unknown"


def storable(text: str) -> str:
    """Text as a column can hold it: PostgreSQL refuses NUL in text."""
    return text.replace("\x00", "\ufffd")


def identifier_or_none(value: str | None) -> str | None:
    """careCycle's id when it looks like an identifier (letters, digits, - _, <= 64), else None."""
    if value is None or not _IDENTIFIER.fullmatch(value):
        return None
    return value


class _FirstError(logging.Handler):
    """Keeps the run's first ERROR line (log_fatal's one line: no value, no secret)."""

    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.first: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if self.first is not None:
            return
        try:
            message = record.getMessage()
        except Exception:  # a malformed log call is not the history's business
            return
        message = message.removeprefix(_FATAL_PREFIX)
        self.first = printable(message, MAX_REASON_CHARS)


# A buffered sync log row: (stream, externalId, outcome, reason, careCycle's id). Plain tuples
# and one driver-level executemany per batch: the log's cost per record is a few microseconds.
_LogRow = tuple[str, str | None, str, str | None, str | None]
_LOG_COLUMNS = (
    "run, account, stream, external_id, outcome, reason, carecycle_id, recorded_at, keep_days"
)
# SQLAlchemy's text format of a DateTime in SQLite (what its own reads and comparisons expect).
_SQLITE_TIME_FORMAT = "%Y-%m-%d %H:%M:%S.%f"


def _clean(text: str | None) -> str | None:
    return text if text is None or "\x00" not in text else storable(text)


def prune_sync_log(conn: Connection, now: datetime) -> None:
    """Delete every sync log row older than its own retention, whichever account wrote it.

    A row's retention is its writer's `sync_log_retention_days` (`keep_days`), so a key
    rotated away or an api_url no longer used still has its externalIds aged out by the
    next run of any account, and a short retention of one account never cuts another's.
    One index seek per distinct retention (there are few), then one range delete each.
    """
    days: int | None = -1
    while True:
        days = conn.execute(
            select(func.min(log_table.c.keep_days)).where(log_table.c.keep_days > days)
        ).scalar()
        if days is None:
            return
        cutoff = now - timedelta(days=days)
        conn.execute(
            log_table.delete().where(
                and_(log_table.c.keep_days == days, log_table.c.recorded_at < cutoff)
            )
        )


class RunHistory:
    """One run's row in the history, and (opt in) its sync log. Used on the main thread."""

    def __init__(
        self,
        store: SyncStore,
        token: bytes,
        *,
        sync_log: bool,
        retention_days: int,
        started_at: datetime,
    ) -> None:
        self.store = store
        self.token = token
        self.sync_log = sync_log
        self.retention_days = retention_days
        self.started_at = started_at
        self._rows: list[_LogRow] = []
        self._log_failed = False
        # Full batches go to a writer thread (SQLite's inserts release the GIL, so they
        # overlap with the run); a bounded queue holds the run back if the store falls behind.
        self._batches: queue.Queue[list[_LogRow] | None] = queue.Queue(maxsize=LOG_QUEUE_BATCHES)
        self._log_writer: threading.Thread | None = None
        self._warned = False
        self._errors = _FirstError()
        logging.getLogger(LOGGER_NAME).addHandler(self._errors)

    @classmethod
    def start(
        cls, store: SyncStore, token: bytes, outcomes: RunOutcomes, sync_log: SyncLogSettings
    ) -> RunHistory | None:
        """Write the run's `running` row; with `sync_log`, attach the log to `outcomes`.

        None (after one warning line) when the store cannot take the row: the run goes on
        without a history.
        """
        if os.environ.get(BENCHMARK_SWITCH) == "1":
            return None
        history = cls(
            store,
            token,
            sync_log=sync_log.enabled,
            retention_days=sync_log.retention_days,
            started_at=datetime.now(timezone.utc),
        )
        row = {
            "run": token,
            "run_id": storable(outcomes.run_id)[:64],
            "account": store.account.account_id,
            "started_at": history.started_at,
            "ended_at": None,
            "status": "running",
            "reason": None,
            "target_version": target_version(),
            "sync_log": int(sync_log.enabled),
        }
        if not history._write(lambda conn: conn.execute(runs_table.insert(), row)):
            history._detach()
            return None
        if sync_log.enabled:
            outcomes.record_log = history
        return history

    # The sync log (outcomes.RecordLog)

    def add(
        self,
        stream: str,
        external_id: str | None,
        outcome: str,
        *,
        reason: str | None = None,
        carecycle_id: str | None = None,
    ) -> None:
        """Buffer one record's outcome; a full buffer is written in one transaction."""
        self._rows.append((stream, external_id, outcome, reason, identifier_or_none(carecycle_id)))
        if len(self._rows) >= LOG_BATCH_ROWS:
            self._flush_log()

    def add_many(self, stream: str, external_ids: Iterable[str], outcome: str) -> None:
        """Buffer the same outcome (unchanged, unsent) for several records."""
        self._rows.extend((stream, eid, outcome, None, None) for eid in external_ids)
        if len(self._rows) >= LOG_BATCH_ROWS:
            self._flush_log()

    def _flush_log(self) -> None:
        """Hand the buffer to the writer thread (started on first use)."""
        rows, self._rows = self._rows, []
        if self._log_failed:
            return  # the warning said so; keep the run's memory bounded
        if self._log_writer is None:
            self._log_writer = threading.Thread(
                target=self._write_log, name="carecycle-sync-log", daemon=True
            )
            self._log_writer.start()
        self._batches.put(rows)

    def _write_log(self) -> None:
        """The writer thread: one transaction per batch, until finish() says stop."""
        while (rows := self._batches.get()) is not None:
            if not self._log_failed and not self._write(
                lambda conn, rows=rows: self._insert_log(conn, rows)
            ):
                self._log_failed = True

    def _stop_log_writer(self) -> None:
        if self._log_writer is not None:
            self._batches.put(None)
            self._log_writer.join()

    def _insert_log(self, conn: Connection, rows: Sequence[_LogRow]) -> None:
        """One executemany of `rows` (all stamped with the time of writing)."""
        now: Any = datetime.now(timezone.utc)
        if conn.dialect.paramstyle == "qmark":  # SQLite
            now, marks = now.strftime(_SQLITE_TIME_FORMAT), ", ".join("?" * 9)
        else:
            marks = ", ".join(["%s"] * 9)
        token, account, keep = self.token, self.store.account.account_id, self.retention_days
        conn.exec_driver_sql(
            f"INSERT INTO {LOG_TABLE} ({_LOG_COLUMNS}) VALUES ({marks})",
            [
                (token, account, _clean(stream), _clean(eid), outcome, _clean(why), cid, now, keep)
                for stream, eid, outcome, why, cid in rows
            ],
        )

    # The end of the run

    def finish(self, code: int, outcomes: RunOutcomes, traffic: Mapping[str, SendRecord]) -> None:
        """Write the end, the status and every stream's counts in one transaction. Never raises.

        The same transaction writes the sync log's last rows and prunes the rows whose own
        retention has passed (every account's: prune_sync_log).
        """
        self._detach()
        stopped = code >= EXIT_SIGNAL_BASE
        if code == 0:
            status, reason = "succeeded", None
        elif stopped:
            status, reason = "interrupted", f"stopped by signal {code - EXIT_SIGNAL_BASE}"
        else:
            status, reason = "failed", self._errors.first or f"exit code {code}"
        streams = []
        metrics = outcomes.state_metrics()
        for stream in sorted(set(metrics) | {name for name in traffic if name}):
            counts = metrics.get(stream, dict.fromkeys(COUNT_KEYS, 0))
            sent = traffic.get(stream, SendRecord())
            tally = outcomes.tallies.get(stream)
            reasons = dict(tally.reasons.most_common(TOP_REASONS)) if tally else {}
            streams.append(
                {
                    "run": self.token,
                    "stream": storable(stream),
                    "counts": json.dumps(counts, sort_keys=True),
                    "requests": sent.requests,
                    "rate_limited": sent.rate_limited,
                    "retries": sent.retries,
                    "reasons": json.dumps(
                        {storable(k): v for k, v in reasons.items()}, sort_keys=True
                    ),
                }
            )
        self._stop_log_writer()  # its batches first: the log stays in order
        log_rows = [] if self._log_failed else self._rows
        self._rows = []
        ended = datetime.now(timezone.utc)

        def write_end(conn: Connection) -> None:
            conn.execute(
                runs_table.update()
                .where(runs_table.c.run == self.token)
                .values(ended_at=ended, status=status, reason=reason)
            )
            if streams:
                conn.execute(run_streams_table.insert(), streams)
            if log_rows:
                self._insert_log(conn, log_rows)
            prune_sync_log(conn, ended)

        self._write(write_end, after_stop=stopped or code != 0)

    def _detach(self) -> None:
        logging.getLogger(LOGGER_NAME).removeHandler(self._errors)

    def _write(self, work: Any, *, after_stop: bool = False) -> bool:
        """`work` in one store transaction; False (one warning per run) when it failed."""
        try:
            self.store.transaction(work, after_stop=after_stop)
        except (SyncStoreError, StoreInterrupted) as exc:
            self._warn(str(exc))
            return False
        except (SQLAlchemyError, sqlite3.Error, OSError, ValueError) as exc:
            # A driver's surprise must not fail a run that delivered. Nothing broader: the
            # run's stop signal arrives as an exception and must reach the run.
            self._warn(type(exc).__name__)
            return False
        return True

    def _warn(self, why: str) -> None:
        if self._warned:
            return
        self._warned = True
        logger.warning(
            "Run history: writing to the sync store failed (%s); this run's history%s is "
            "incomplete. Leads and their delivery are not affected",
            printable(why, MAX_REASON_CHARS),
            " and sync log" if self.sync_log else "",
        )


# -- Reading ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class History:
    """What the report needs: the runs, newest first, and their refused records.

    `refused` holds the sync log's failed and rejected records of the runs that kept it.
    """

    runs: list[RunRecord]
    refused: list[RefusedRecord]

    @property
    def latest(self) -> RunRecord | None:
        """The newest run (None without runs)."""
        return self.runs[0] if self.runs else None


def _aware(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)


def _counts(text: str) -> dict[str, int]:
    found = _json_object(text)
    return {key: _whole(found.get(key)) for key in COUNT_KEYS}


def _reasons(text: str) -> dict[str, int]:
    found = _json_object(text)
    return {str(k): _whole(v) for k, v in found.items() if _whole(v) > 0}


def _json_object(text: str) -> dict[str, Any]:
    try:
        found = json.loads(text)
    except (TypeError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def _whole(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def history_tables_exist(conn: Connection) -> bool:
    """False for a store written before the history existed (schema version 2 or older)."""
    return bool(conn.dialect.has_table(conn, RUNS_TABLE))


def read_history(
    store: SyncStore, *, account: bytes | None, runs: int, refused: bool = True
) -> History:
    """The last `runs` runs (of `account`, or of every account when None), newest first.

    `refused`: also read the sync log's refused records of those runs (html, csv).

    Raises SyncStoreError. A run still marked `running` is `unfinished` (it is running, or
    it died before it could write its end: either way its counts are not known).
    """

    def read(conn: Connection) -> History:
        if not history_tables_exist(conn):
            return History([], [])
        query = (
            select(runs_table, accounts_table.c.api_url, accounts_table.c.key_fingerprint)
            .select_from(
                runs_table.outerjoin(
                    accounts_table, accounts_table.c.account == runs_table.c.account
                )
            )
            .order_by(runs_table.c.started_at.desc(), runs_table.c.run_id.desc())
            .limit(runs)
        )
        if account is not None:
            query = query.where(runs_table.c.account == account)
        rows = conn.execute(query).mappings().all()
        tokens = [row["run"] for row in rows]
        streams: dict[bytes, dict[str, StreamHistory]] = {token: {} for token in tokens}
        for chunk in _chunks(tokens, 500):
            for stream in conn.execute(
                select(run_streams_table).where(run_streams_table.c.run.in_(chunk))
            ).mappings():
                streams[stream["run"]][stream["stream"]] = StreamHistory(
                    counts=_counts(stream["counts"]),
                    requests=_whole(stream["requests"]),
                    rate_limited=_whole(stream["rate_limited"]),
                    retries=_whole(stream["retries"]),
                    reasons=_reasons(stream["reasons"]),
                )
        run_ids = _distinct_run_ids(rows)
        records = [_run_record(row, run_ids[row["run"]], streams[row["run"]]) for row in rows]
        logged = [row["run"] for row in rows if row["sync_log"]] if refused else []
        entries: list[Any] = []
        for chunk in _chunks(logged, 500):
            # No ORDER BY: with it a planner may walk the whole log in id order instead of
            # using the (run, outcome) index. Sorted here.
            entries.extend(
                conn.execute(
                    select(
                        log_table.c.id,
                        log_table.c.run,
                        log_table.c.stream,
                        log_table.c.external_id,
                        log_table.c.outcome,
                        log_table.c.reason,
                        log_table.c.recorded_at,
                    )
                    .where(log_table.c.run.in_(chunk))
                    .where(log_table.c.outcome.in_(REFUSED_OUTCOMES))
                )
            )
        entries.sort(key=lambda entry: entry.id)
        found = [
            RefusedRecord(
                run_id=run_ids[entry.run],
                stream=entry.stream,
                external_id=entry.external_id,
                outcome=entry.outcome,
                reason=entry.reason or "",
                at=_aware(entry.recorded_at) or datetime.now(timezone.utc),
            )
            for entry in entries
        ]
        return History(records, found)

    if not store.exists:
        return History([], [])
    return store.transaction(read, write=False)


def _distinct_run_ids(rows: Sequence[Any]) -> dict[bytes, str]:
    """Each run's id, made distinct where several runs share one.

    The targets of one `meltano run` share its MELTANO_RUN_ID: those become `<run id>/<the
    first 8 hex digits of the run's token>`.
    """
    seen: dict[str, int] = {}
    for row in rows:
        seen[row["run_id"]] = seen.get(row["run_id"], 0) + 1
    return {
        row["run"]: row["run_id"]
        if seen[row["run_id"]] == 1
        else f"{row['run_id']}/{row['run'].hex()[:8]}"
        for row in rows
    }


def _run_record(row: Any, run_id: str, streams: Mapping[str, StreamHistory]) -> RunRecord:
    status = row["status"]
    finished = status in ("succeeded", "failed", "interrupted") and row["ended_at"] is not None
    started = _aware(row["started_at"])
    assert started is not None  # NOT NULL
    return RunRecord(
        run_id=run_id,
        started_at=started,
        ended_at=_aware(row["ended_at"]) if finished else None,
        status=status if finished else "unfinished",
        reason=row["reason"],
        target_version=row["target_version"],
        account=RunAccount(row["api_url"] or "unknown", (row["key_fingerprint"] or "unknown")[:16]),
        # An unfinished run's counts are unknown: none are shown rather than wrong ones.
        streams=dict(streams) if finished else {},
        sync_log=bool(row["sync_log"]),
    )


def _chunks(items: Sequence[bytes], size: int) -> Iterable[Sequence[bytes]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
