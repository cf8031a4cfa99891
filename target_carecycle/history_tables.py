"""The run history's tables in the sync store (schema version 3; docs/history.md).

Defined on the store's own MetaData (store.py calls `add_history_tables`), so the store
creates them with its other tables, counts them as its own, and a version-2 store gains them
in place on its first write. Only SQLAlchemy here: store.py imports this module.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    text,
)

RUNS_TABLE = "carecycle_sync_runs"
RUN_STREAMS_TABLE = "carecycle_sync_run_streams"
LOG_TABLE = "carecycle_sync_log"
TOKEN_BYTES = 16  # the run's random token (the sync store's claims use the same)
ACCOUNT_BYTES = 16


def add_history_tables(metadata: MetaData) -> None:
    """Define the run history's three tables on `metadata` (the sync store's)."""
    Table(
        RUNS_TABLE,
        metadata,
        # The run's random token: two runners that share a MELTANO_RUN_ID stay two runs.
        Column("run", LargeBinary(TOKEN_BYTES), primary_key=True),
        Column("run_id", String(64), nullable=False),  # the id the run's log lines carry
        Column("account", LargeBinary(ACCOUNT_BYTES), nullable=False),
        Column("started_at", DateTime(timezone=True), nullable=False),
        Column("ended_at", DateTime(timezone=True)),
        # running (written at the start; a run killed with -9 leaves it so), succeeded,
        # failed, interrupted
        Column("status", String(16), nullable=False),
        Column("reason", Text),  # the failure's one line: no personal value, no key
        Column("target_version", String(64), nullable=False),
        Column("sync_log", Integer, nullable=False),  # 1: the run kept row-level records
        Index("carecycle_sync_runs_account", "account", "started_at"),
    )
    Table(
        RUN_STREAMS_TABLE,
        metadata,
        Column("run", LargeBinary(TOKEN_BYTES), primary_key=True),
        Column("stream", Text, primary_key=True),
        # JSON objects: outcome -> count (the state's `target_carecycle` counts), and the
        # top reasons (reason text -> count). JSON so that a new outcome needs no new column.
        Column("counts", Text, nullable=False),
        Column("requests", Integer, nullable=False),
        Column("rate_limited", Integer, nullable=False),
        Column("retries", Integer, nullable=False),
        Column("reasons", Text, nullable=False),
    )
    Table(
        LOG_TABLE,
        metadata,
        Column(
            "id",
            BigInteger().with_variant(Integer, "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        Column("run", LargeBinary(TOKEN_BYTES), nullable=False),
        Column("account", LargeBinary(ACCOUNT_BYTES), nullable=False),
        Column("stream", Text, nullable=False),
        Column("external_id", Text),  # in clear: the sync log is opt in (docs/history.md)
        Column("outcome", String(16), nullable=False),
        Column("reason", Text),
        Column("carecycle_id", String(64)),
        Column("recorded_at", DateTime(timezone=True), nullable=False),
        # The writing run's sync_log_retention_days: each row carries its own expiry
        # (recorded_at + keep_days), so every run prunes every account's expired rows, a
        # rotated key's or an old api_url's included, without shortening another account's
        # retention. The default is settings.DEFAULT_SYNC_LOG_RETENTION_DAYS.
        Column("keep_days", Integer, nullable=False, server_default=text("30")),
        Index("carecycle_sync_log_run", "run", "outcome"),
        Index("carecycle_sync_log_age", "keep_days", "recorded_at"),
    )
