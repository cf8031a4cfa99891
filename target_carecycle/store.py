"""The sync store: what careCycle acknowledged, so unchanged leads are not sent again.

For each lead careCycle accepted it keeps, per account and externalId, a digest of the exact
payload sent and when. It also keeps each account's shared request budget, so
runs on one key (on one machine with a SQLite file, or on many with PostgreSQL) share the
per-minute limit instead of each spending all of it.

The truth rule (docs/sync-store.md): the store holds a digest for a lead only when a run knew
careCycle applied exactly that version last; in every case of doubt it holds nothing, so the
next run sends the lead. Runs enforce it with claims: before a batch is sent its leads are
claimed by the run (`claim`, which also drops their old digests, durably), and a run writes a
digest only where its own claim of that batch is still the current one, no other run claimed
the lead meanwhile and no doubt about it is in force (`settle`). A doubt marks a lead some
request of unknown fate may still change (a timeout, a run that died): while it lasts no run
records the lead.

Nothing personal and no secret is stored: the account is the API URL plus a SHA-256 fingerprint
of the key; externalIds and payloads are stored as HMAC-SHA-256 digests keyed with a secret
derived from the API key, which is never stored. A copy of the store without the key cannot be
used to test guesses of externalIds or lead values.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import logging
import os
import re
import sqlite3
import stat
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote, quote_plus, unquote

import msgspec
from sqlalchemy import (
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    create_engine,
    event,
    func,
    select,
    text,
)
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.pool import QueuePool

from target_carecycle.client import CareCycleError, UploadInterrupted
from target_carecycle.history_tables import add_history_tables
from target_carecycle.printable import printable
from target_carecycle.private_files import make_private_folders

if TYPE_CHECKING:
    from hashlib import _Hash  # typeshed's name for what hashlib.sha256() returns

_T = TypeVar("_T")
logger = logging.getLogger("target-carecycle.store")

SETTING = "sync_store"
STORE_OFF = "off"
# 2: carecycle_sync_claims; 3: the run history's tables (history_tables.py). An older store
# is upgraded in place by the first run that writes to it.
SCHEMA_VERSION = 3
DEFAULT_TIMEOUT = 30.0
DEFAULT_FILE_NAME = "sync.sqlite"
APP_DIR = "target-carecycle"
_SECRET_LABEL = b"target-carecycle sync store v1"
# No 429 wait is longer (careCycle's retryAfter is capped at 600 s), and no more slots are
# reserved ahead than this (8 upload threads in each of a dozen runs): a next slot further
# away comes from a clock that was set back, and is ignored.
MAX_WAIT_AHEAD = 900.0
MAX_SLOTS_AHEAD = 100
# At rates above 5 a second, one transaction reserves the slots of this many seconds.
RESERVE_WINDOW = 0.2
# PostgreSQL advisory lock held while the tables are checked or created.
SCHEMA_LOCK_ID = 7426150812
DIGEST_BYTES = 16  # HMAC-SHA-256 truncated to 128 bits: no collision in any realistic store
RUN_ID_BYTES = 16  # a random token per run
NO_RUN = bytes(RUN_ID_BYTES)  # the run of a claims row that is only a doubt
# One attempt waits at most this long for a lock (SQLite's busy handler, PostgreSQL's
# lock_timeout); attempts repeat until the URL's timeout, checking the run's stop event in
# between, so a stop signal acts within a fraction of a second however long another process
# holds the store.
LOCK_SLICE = 0.1
# After a stop signal, the last acknowledgements get this long to be written.
PATIENCE_AFTER_STOP = 1.0
# SQLite page cache of a writing connection (KiB, a bound: it fills only as pages are read;
# 64 MiB measured no faster at 1M leads and cost 40 MiB more):
# the B-tree pages a run touches stay in memory instead of being read back from the OS.
SQLITE_CACHE_KIB = 16384
# Pages of write-ahead log between checkpoints (SQLite's default is 1,000): each checkpoint
# copies every page changed since the last one into the database file, so a first run of
# random keys would copy most of the table again every few batches.
SQLITE_CHECKPOINT_PAGES = 10000

metadata = MetaData()
meta_table = Table(
    "carecycle_sync_meta",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", String(255), nullable=False),
)
accounts_table = Table(
    "carecycle_sync_accounts",
    metadata,
    Column("account", LargeBinary(DIGEST_BYTES), primary_key=True),
    Column("api_url", String(2048), nullable=False),
    Column("key_fingerprint", String(16), nullable=False),
    Column("first_seen", DateTime(timezone=True), nullable=False),
)
leads_table = Table(
    "carecycle_sync_leads",
    metadata,
    # lead_key leads the primary key: a batch's lookup (lead_key IN ...) is an index range
    # scan whatever the planner's statistics say.
    Column("lead_key", LargeBinary(DIGEST_BYTES), primary_key=True),
    Column("account", LargeBinary(DIGEST_BYTES), primary_key=True),
    Column("payload_hash", LargeBinary(DIGEST_BYTES), nullable=False),
    Column("carecycle_id", String(255)),
    Column("synced_at", DateTime(timezone=True), nullable=False),
    sqlite_with_rowid=False,  # the primary key is the table: no second copy as an index
)
claims_table = Table(
    "carecycle_sync_claims",
    metadata,
    # A lead some run is sending (or sent with an unknown fate): at most one claim per lead.
    Column("lead_key", LargeBinary(DIGEST_BYTES), primary_key=True),
    Column("account", LargeBinary(DIGEST_BYTES), primary_key=True),
    Column("run", LargeBinary(RUN_ID_BYTES), nullable=False),
    Column("batch", Integer, nullable=False),  # which of the run's batches holds the claim
    # 1: another run held a claim on the lead when this one was taken, or a doubt about it
    # was still in force: careCycle may apply another version last, so no digest is written.
    Column("contended", Integer, nullable=False),
    Column("claimed_at", Float, nullable=False),  # epoch seconds on the store's clock
    # Until when (epoch seconds) a request of unknown fate may still land: a run that gave up
    # on a request, or found another run's claim, sets it; runs claiming the lead before
    # then record nothing. A row whose run is NO_RUN is such a doubt and nothing else.
    Column("doubt_until", Float),
    # The digest of the version this claim sends: written as the lead's digest when the
    # batch is acknowledged and the claim still stands.
    Column("payload_hash", LargeBinary(DIGEST_BYTES)),
    # A run finds its own claims here; a batch's claims are adjacent (cheap to insert).
    Index("carecycle_sync_claims_run", "run", "batch"),
    sqlite_with_rowid=False,
)
budget_table = Table(
    "carecycle_sync_budget",
    metadata,
    Column("account", LargeBinary(DIGEST_BYTES), primary_key=True),
    # Epoch seconds (the store's clock) at which the next request of this account may start.
    Column("next_start", Float, nullable=False),
)

add_history_tables(metadata)  # the run history (history.py): created and checked with the rest

_LOOKUP_SQL = f"SELECT lead_key, payload_hash FROM {leads_table.name} WHERE account = ?"
# A claim upserted over what the lead's row held: the same run's earlier claim (kept as it
# was), another run's claim (contended; a doubt for the time that run's request may still
# land) or a doubt left behind (contended while in force).
_CLAIM_UPSERT = (
    "ON CONFLICT (lead_key, account) DO UPDATE SET "
    "contended = CASE WHEN {t}.run = excluded.run THEN {t}.contended "
    "WHEN {t}.run <> {no_run} THEN 1 "
    "WHEN {t}.doubt_until > excluded.claimed_at THEN 1 ELSE 0 END, "
    "doubt_until = CASE WHEN {t}.run = excluded.run OR {t}.run = {no_run} THEN {t}.doubt_until "
    "ELSE {greatest}(coalesce({t}.doubt_until, 0), excluded.claimed_at + {doubt}) END, "
    "run = excluded.run, batch = excluded.batch, claimed_at = excluded.claimed_at, "
    "payload_hash = excluded.payload_hash"
)
_CLAIM_COLUMNS = "(lead_key, account, run, batch, contended, claimed_at, payload_hash)"
_CLAIM_SQL = (
    f"INSERT INTO {claims_table.name} {_CLAIM_COLUMNS} "
    "SELECT column1, ?, ?, ?, 0, ?, column2 FROM (VALUES {rows}) WHERE true "
    + _CLAIM_UPSERT.format(
        t=claims_table.name, no_run=f"X'{NO_RUN.hex()}'", greatest="max", doubt="?"
    )
)
_PG_CLAIM_SQL = (
    f"INSERT INTO {claims_table.name} {_CLAIM_COLUMNS} "
    "SELECT k, %s, %s, %s, 0, extract(epoch FROM clock_timestamp()), h "
    "FROM unnest(%s::bytea[], %s::bytea[]) AS t(k, h) "
    + _CLAIM_UPSERT.format(
        t=claims_table.name,
        no_run=f"'\\x{NO_RUN.hex()}'::bytea",
        greatest="greatest",
        doubt="%s",
    )
)
# Settling, for a run's batches: {batches} and the like are filled in per statement.
_SETTLE_DOUBT_SQL = (
    f"UPDATE {claims_table.name} SET run = {{no_run}}, batch = 0, "
    "doubt_until = {greatest}(coalesce(doubt_until, 0), {until}) "
    "WHERE account = {p} AND run = {p} AND lead_key IN ({doubtful})"
)
_SETTLE_RECORD_SQL = (
    f"INSERT INTO {leads_table.name} (lead_key, account, payload_hash, carecycle_id, synced_at) "
    "SELECT lead_key, account, payload_hash, NULL, {synced_at} "
    f"FROM {claims_table.name} "
    "WHERE run = {p} AND account = {p} AND batch IN ({batches}) AND contended = 0 "
    "AND (doubt_until IS NULL OR doubt_until <= {p}) AND {not_excluded} "
    "ORDER BY lead_key "
    "ON CONFLICT (lead_key, account) DO UPDATE SET payload_hash = excluded.payload_hash, "
    "carecycle_id = NULL, synced_at = excluded.synced_at"
)
_SETTLE_KEEP_DOUBTS_SQL = (
    f"UPDATE {claims_table.name} SET run = {{no_run}}, batch = 0 "
    "WHERE run = {p} AND account = {p} AND batch IN ({batches}) AND doubt_until > {p}"
)
_SETTLE_UNCLAIM_SQL = (
    f"DELETE FROM {claims_table.name} "
    "WHERE run = {p} AND account = {p} AND batch IN ({batches}) AND lead_key NOT IN ({kept})"
)
# SQLAlchemy's text format for a SQLite DateTime column (what version 1 wrote).
_SQLITE_TIME_FORMAT = "%Y-%m-%d %H:%M:%S.%f"


class SyncStoreError(CareCycleError):
    """The sync store cannot be used; the message names `sync_store`, never a password."""


class StoreInterrupted(UploadInterrupted):
    """The run was asked to stop while waiting for the store's lock (not a store failure)."""


class _Busy(Exception):
    """One attempt found the store locked (by another process, or another thread here)."""

    def __init__(self, cause: BaseException | None = None) -> None:
        super().__init__("busy")
        self.cause = cause


@dataclass(frozen=True)
class SettledBatch:
    """A run's batch that is finished: what `settle` records and unclaims.

    `acknowledged`: careCycle answered it (its leads' digests may be recorded); False when it
    was not delivered. `excluded`: its leads never to record now (refused, not confirmed, or
    with a request of unknown fate in the run).
    """

    batch: int
    acknowledged: bool
    excluded: tuple[bytes, ...] = ()


# The lead as sent (serialization.dumps_json), with every object's keys sorted.
_canonical_json = msgspec.json.Encoder(enc_hook=str, decimal_format="number", order="sorted")


@dataclass(frozen=True)
class Account:
    """One careCycle account: API URL plus key fingerprint. The key itself is never kept."""

    api_url: str
    key_fingerprint: str
    _secret: bytes = field(repr=False)
    _inner: _Hash = field(init=False, repr=False, compare=False)
    _outer: _Hash = field(init=False, repr=False, compare=False)

    @classmethod
    def for_key(cls, api_url: str, api_key: str) -> Account:
        """Derive the account (and the digest secret) from the URL and the key."""
        key = api_key.encode("utf-8")
        return cls(
            api_url=api_url.rstrip("/"),
            key_fingerprint=hashlib.sha256(key).hexdigest(),
            _secret=hmac.new(key, _SECRET_LABEL, hashlib.sha256).digest(),
        )

    @property
    def account_id(self) -> bytes:
        """The store's key for this account (128 bits of SHA-256 over URL and fingerprint)."""
        both = f"{self.api_url}\n{self.key_fingerprint}".encode()
        return hashlib.sha256(both).digest()[:DIGEST_BYTES]

    def __post_init__(self) -> None:
        # HMAC-SHA-256 with its two keyed states computed once: a digest is then two C-level
        # hash copies, a third of the cost of hmac.new() per lead (RFC 2104; equality with
        # hmac.new is tested).
        block = self._secret.ljust(hashlib.sha256().block_size, b"\0")
        object.__setattr__(self, "_inner", hashlib.sha256(bytes(b ^ 0x36 for b in block)))
        object.__setattr__(self, "_outer", hashlib.sha256(bytes(b ^ 0x5C for b in block)))

    def _mac(self, message: bytes) -> bytes:
        inner = self._inner.copy()
        inner.update(message)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()[:DIGEST_BYTES]

    def lead_key(self, external_id: str) -> bytes:
        """An externalId as stored: HMAC-SHA-256 under the account's secret (128 bits)."""
        return self._mac(external_id.encode("utf-8"))

    def payload_hash(self, lead: Mapping[str, Any]) -> bytes:
        """Digest of the exact payload sent: canonical JSON (keys sorted at every level)."""
        return self._mac(_canonical_json.encode(lead))


def default_location() -> Path:
    """$XDG_STATE_HOME/target-carecycle/sync.sqlite, else ~/.local/state/target-carecycle/."""
    base = os.environ.get("XDG_STATE_HOME", "")
    if not os.path.isabs(base):  # the XDG spec: a relative path is invalid, ignore it
        base = os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / APP_DIR / DEFAULT_FILE_NAME


def location_problem(location: str) -> str | None:
    """Why `location` cannot name a store (without connecting), or None. Never echoes it."""
    if not location.strip():
        return f"{SETTING}: must not be empty (a file path, an SQLAlchemy URL, or `off`)"
    if location.strip().lower() == STORE_OFF:
        return None
    try:
        _parse(location)
    except SyncStoreError as exc:
        return str(exc)
    return None


@dataclass(frozen=True)
class _Location:
    url: URL
    timeout: float
    sqlite_path: str | None  # None for PostgreSQL
    read_only: bool = False  # `?mode=ro` on a SQLite URL: only a dry run may use it
    # SQLite's `immutable=1`: the report's fallback for a store in a folder it cannot write
    # (SQLite then takes no lock and reads the file as it is, -wal ignored).
    immutable: bool = False
    # Text from the location that may be secret (password, query values, user info as typed):
    # removed from any driver message before it is printed.
    secrets: tuple[str, ...] = field(default=(), repr=False)

    @property
    def is_sqlite(self) -> bool:
        return self.url.get_backend_name() == "sqlite"

    def describe(self) -> str:
        """Kind, host, port, database and user: never a password, a query or user info."""
        if self.is_sqlite:
            mode = " (read-only, mode=ro)" if self.read_only else ""
            mode = " (read as it is, immutable)" if self.immutable else mode
            return f"SQLite file {printable(self.sqlite_path or '')}{mode}"
        query = dict(self.url.query)
        host = self.url.host or _first(query.get("host")) or "the local socket"
        port = self.url.port or _first(query.get("port")) or 5432
        database = self.url.database or _first(query.get("dbname")) or "(default database)"
        user = self.url.username or _first(query.get("user"))
        where = f"PostgreSQL database {printable(database)} on {printable(host)}:{printable(port)}"
        return where + (f" as user {printable(user)}" if user else "")

    def scrub(self, message: str) -> str:
        """`message` without any text of the location that may be secret."""
        for secret in sorted(self.secrets, key=len, reverse=True):
            message = message.replace(secret, "***")
        return message


def _first(value: Any) -> str | None:
    """A query parameter's value (SQLAlchemy gives a tuple when it is repeated)."""
    if isinstance(value, tuple):
        value = value[0] if value else None
    return None if value is None else str(value)


# libpq's key=value connection strings ("host=db password=..."): not a file path, and not
# something to print.
_LIBPQ_DSN = re.compile(
    r"(?:^|\s)(?:host|hostaddr|port|dbname|user|password|passfile|sslmode|service|options|"
    r"application_name|connect_timeout|target_session_attrs)\s*=",
    re.IGNORECASE,
)
_SQLITE_QUERY = frozenset({"timeout", "mode", "uri"})
# libpq's connection keywords: any other query parameter is most likely a piece of a password
# with an unencoded & in it (and is never named in the refusal).
# fmt: off
_LIBPQ_KEYWORDS = frozenset({
    "host", "hostaddr", "port", "dbname", "user", "password", "passfile", "require_auth",
    "channel_binding", "connect_timeout", "client_encoding", "options", "application_name",
    "fallback_application_name", "keepalives", "keepalives_idle", "keepalives_interval",
    "keepalives_count", "tcp_user_timeout", "replication", "gssencmode", "sslmode", "requiressl",
    "sslcompression", "sslcert", "sslkey", "sslpassword", "sslcertmode", "sslrootcert", "sslcrl",
    "sslcrldir", "sslsni", "sslnegotiation", "requirepeer", "ssl_min_protocol_version",
    "ssl_max_protocol_version", "krbsrvname", "gsslib", "gssdelegation", "service",
    "target_session_attrs", "load_balance_hosts",
})
# fmt: on
_SQLITE_MODES = frozenset({"ro", "rw", "rwc"})
_PUBLIC_PARAMETERS = _LIBPQ_KEYWORDS | {"timeout"}  # names, not secrets (their values may be)


def _parse(location: str) -> _Location:
    if "://" not in location:
        if _LIBPQ_DSN.search(location):
            raise SyncStoreError(
                f"{SETTING}: looks like a libpq connection string (key=value); give a "
                "postgresql+psycopg://USER:PASSWORD@HOST/DB URL (password percent-encoded)"
            )
        path = os.path.abspath(os.path.expanduser(location))
        return _Location(URL.create("sqlite", database=path), DEFAULT_TIMEOUT, path)
    try:
        url = make_url(location)
    except (ArgumentError, ValueError):
        raise SyncStoreError(f"{SETTING}: not a valid SQLAlchemy URL") from None
    secrets = _secrets_of(location, url)
    query = dict(url.query)
    raw_timeout = query.pop("timeout", None)
    try:
        timeout = DEFAULT_TIMEOUT if raw_timeout is None else float(str(raw_timeout))
    except ValueError:
        raise SyncStoreError(f"{SETTING}: the URL's timeout must be a number of seconds") from None
    if not 0 < timeout <= 3600:
        raise SyncStoreError(f"{SETTING}: the URL's timeout must be between 0 and 3600 seconds")
    url = url.set(query=query)
    backend = url.get_backend_name()
    if backend == "sqlite" and url.get_driver_name() == "pysqlite":
        return _sqlite_location(url, timeout, secrets)
    if backend == "postgresql" and url.drivername in ("postgresql", "postgresql+psycopg"):
        if location.count("@") > 1:  # parsers disagree on where such a password ends
            raise SyncStoreError(
                f"{SETTING}: the URL has more than one @: percent-encode @ in the password "
                "as %40 (and : / ? # & % likewise)"
            )
        if not _libpq_query(location):
            raise SyncStoreError(
                f"{SETTING}: the URL has a parameter that is not a libpq connection keyword "
                "(percent-encode & = + in a password given as ?password=)"
            )
        # plain postgresql:// would mean psycopg2 to SQLAlchemy; psycopg 3 is what is installed
        url = url.set(drivername="postgresql+psycopg")
        return _Location(url, timeout, None, secrets=secrets)
    raise SyncStoreError(
        f"{SETTING}: must be a file path, sqlite:///PATH or postgresql+psycopg://... "
        "(other databases are not supported)"
    )


def _sqlite_location(url: URL, timeout: float, secrets: tuple[str, ...]) -> _Location:
    """A SQLite URL naming a file: in-memory databases and unknown parameters refused."""
    query = {name: _first(value) or "" for name, value in url.query.items()}
    if set(query) - _SQLITE_QUERY:
        raise SyncStoreError(
            f"{SETTING}: a SQLite URL takes only the parameters timeout, mode and uri"
        )
    mode = query.get("mode", "").lower()
    database = url.database or ""
    if query.get("uri", "").lower() in ("true", "1", "yes", "on") or database.startswith("file:"):
        database = database.removeprefix("file:").split("?", 1)[0]
    if database in ("", ":memory:") or mode == "memory":
        raise SyncStoreError(
            f"{SETTING}: an in-memory SQLite database keeps nothing between runs: give a file "
            "path (sqlite:///PATH), or `off` for no store"
        )
    if mode and mode not in _SQLITE_MODES:
        raise SyncStoreError(f"{SETTING}: the URL's mode must be ro, rw or rwc")
    path = os.path.abspath(os.path.expanduser(database))
    return _Location(url, timeout, path, read_only=mode == "ro", secrets=secrets)


def _libpq_query(location: str) -> bool:
    """True when every `&`-separated piece of the URL's query is `libpq_keyword=value`.

    Read from the text as typed: a parser drops a piece without `=`, which is what the rest
    of a password with an unencoded `&` looks like.
    """
    query = location.partition("?")[2]
    if not query:
        return True
    pieces = [piece.partition("=") for piece in query.split("&")]
    return all(sep and unquote(key) in _PUBLIC_PARAMETERS for key, sep, _ in pieces)


def _secrets_of(location: str, url: URL) -> tuple[str, ...]:
    """Every piece of `location` that may be secret.

    The password as typed and decoded, the user info as typed, every query key and value.
    """
    found = {str(url.password)} if url.password else set()
    head = location.split("://", 1)[1]
    if "@" in head:
        userinfo = head.rsplit("@", 1)[0]
        found |= {userinfo, userinfo.partition(":")[2]}
    for value in url.query.values():
        found |= {str(v) for v in (value if isinstance(value, tuple) else (value,))}
    query = head.partition("?")[2]
    for pair in query.split("&"):  # the query as typed, undecoded too
        key, _, value = pair.partition("=")
        found |= {value} if key in _PUBLIC_PARAMETERS else {key, value}
    # A value typed with an unencoded & runs on to the end of the query.
    found |= {query[at + 1 :] for at, char in enumerate(query) if char == "="}
    found |= {quote(item, safe="") for item in found} | {quote_plus(item) for item in found}
    return tuple(item for item in found if len(item) >= 3)


class SyncStore:
    """An open sync store for one account. Thread-safe; every write is one transaction.

    `stop`: the run's stop event. While another process holds the store's lock, every wait
    is cut into LOCK_SLICE attempts, and a set event ends it (StoreInterrupted).
    """

    def __init__(
        self,
        engine: Engine | None,
        location: _Location,
        account: Account,
        stop: threading.Event | None = None,
    ) -> None:
        self._engine = engine
        self._location = location
        self.account = account
        self._account_id = account.account_id
        self._stop = stop
        self._budget_lock = threading.Lock()
        self._slots: deque[float] = deque()  # reserved request starts, time.monotonic()
        # SQLite: this process's threads queue here for the file's write lock instead of in
        # SQLite's busy handler, which sleeps in steps of up to 100 ms.
        self._write_lock = threading.Lock() if location.is_sqlite else None
        # SQLite: one connection, taken from the pool for the store's life, for claims and
        # settling: plain sqlite3 calls, and its page cache stays warm between batches.
        self._sqlite_writer: Any = None
        self._expect_digests = True  # the last batch's lookup found some (see claim)
        self._folder_synced = False

    @classmethod
    def open(
        cls,
        location: str | None,
        account: Account,
        *,
        writable: bool = True,
        stop: threading.Event | None = None,
    ) -> SyncStore:
        """Open (creating it when `writable`) and check the store; raise SyncStoreError.

        A read-only open (a dry run) never creates or changes anything: a store that does
        not exist yet reads as empty. A set `stop` event ends a wait for a lock
        (StoreInterrupted).
        """
        where = _parse(location) if location else _parse(str(default_location()))
        if where.read_only and writable:
            raise SyncStoreError(
                f"{SETTING}: {where.describe()} is opened read-only, but a run that sends "
                "must record what careCycle acknowledged: remove mode=ro, or set dry_run"
            )
        try:
            if where.sqlite_path is not None:
                _check_store_file(where, create=writable)
            missing = where.sqlite_path is not None and not os.path.exists(where.sqlite_path)
            if missing and not writable:
                return cls(None, where, account, stop)
            engine = _engine(where, writable=writable)
        except SyncStoreError:
            raise
        except (OSError, SQLAlchemyError, sqlite3.Error, ImportError) as exc:
            raise _store_error(exc, where) from None
        try:
            return cls._checked(engine, where, account, stop, writable=writable)
        except SyncStoreError:
            if writable or not _in_unwritable_folder(where):
                raise
        # A read-only open of a store in a folder this user cannot write to (a read-only
        # mount, a backup): SQLite cannot make the WAL's -shm file there. Read the file as
        # it is (docs/history.md: a run writing at that moment may be missed).
        where = replace(where, immutable=True)
        try:
            engine = _engine(where, writable=False)
        except (OSError, SQLAlchemyError, sqlite3.Error) as exc:
            raise _store_error(exc, where) from None
        return cls._checked(engine, where, account, stop, writable=False)

    @classmethod
    def _checked(
        cls,
        engine: Engine,
        where: _Location,
        account: Account,
        stop: threading.Event | None,
        *,
        writable: bool,
    ) -> SyncStore:
        store = cls(engine, where, account, stop)
        try:
            store._check_schema(writable=writable)
        except (SyncStoreError, StoreInterrupted):
            engine.dispose()
            raise
        except (SQLAlchemyError, sqlite3.Error, OSError) as exc:
            engine.dispose()
            raise _store_error(exc, where) from None
        return store

    @property
    def sqlite_path(self) -> str | None:
        """The SQLite file's absolute path (None for PostgreSQL)."""
        return self._location.sqlite_path

    @property
    def immutable(self) -> bool:
        """True when a read-only open fell back to reading the file as it is (immutable=1)."""
        return self._location.immutable

    def describe(self) -> str:
        """Where the store is, for logs (no password)."""
        return self._location.describe()

    @property
    def exists(self) -> bool:
        """False for a dry run's store that has not been created yet (it reads as empty)."""
        return self._engine is not None

    def close(self) -> None:
        """Close every connection."""
        writer, self._sqlite_writer = self._sqlite_writer, None
        if writer is not None:
            writer.close()  # back to the pool, which the engine then closes
        if self._engine is not None:
            self._engine.dispose()

    def _forget_engine(self) -> None:
        engine, self._engine = self._engine, None
        if engine is not None:
            engine.dispose()

    # Leads

    def unchanged_ids(self, payload_hashes: Mapping[str, bytes]) -> set[str]:
        """The externalIds whose stored payload digest equals the given one (one query)."""
        by_key = {self.account.lead_key(ext_id): ext_id for ext_id in payload_hashes}
        same = self.compare({key: payload_hashes[ext_id] for key, ext_id in by_key.items()})
        return {by_key[key] for key in same}

    def compare(self, payload_hashes: Mapping[bytes, bytes]) -> set[bytes]:
        """The lead keys whose stored digest equals the given one (one read-only query).

        What a dry run uses; a run that sends uses `claim`, which looks up and claims at once.
        """
        if self._engine is None or not payload_hashes:
            return set()
        keys = list(payload_hashes)
        if self._location.is_sqlite:
            marks = ",".join("?" * len(keys))
            lookup = f"{_LOOKUP_SQL} AND lead_key IN ({marks})"
            rows: Sequence[Any] = self._run_sqlite(
                lambda cursor: cursor.execute(lookup, (self._account_id, *keys)).fetchall(),
                write=False,
            )
        else:
            rows = self._run(lambda conn: self._lookup(conn, keys), write=False, one_query=True)
        return {key for key, stored in rows if hmac.compare_digest(stored, payload_hashes[key])}

    def _lookup(self, conn: Connection, lead_keys: Sequence[bytes]) -> Sequence[Any]:
        """(lead_key, payload_hash) of the stored keys among `lead_keys`, in one query.

        Plain SQL through the driver: compiling a 200-item IN list took longer than the
        database's own work (measured in benchmarks/bench_sync_store.py).
        """
        if self._location.is_sqlite:
            marks = ",".join("?" * len(lead_keys))
            sql = f"{_LOOKUP_SQL} AND lead_key IN ({marks})"
            return conn.exec_driver_sql(sql, (self._account_id, *lead_keys)).all()
        sql = f"{_LOOKUP_SQL.replace('?', '%s')} AND lead_key = ANY(%s)"
        return conn.exec_driver_sql(sql, (self._account_id, list(lead_keys))).all()

    def claim(
        self,
        run: bytes,
        batch: int,
        leads: Sequence[tuple[bytes, bytes]],
        *,
        skip_unchanged: bool = True,
        doubt_seconds: float = 0.0,
    ) -> set[bytes]:
        """Before a batch is sent: find its unchanged leads, claim the others for (run, batch).

        `leads` are (lead_key, payload_hash). Returns the keys whose stored digest equals
        the payload (when `skip_unchanged`): those are not claimed and must not be sent.
        Every other lead is claimed, and its stored digest is dropped. A claim another run
        holds on the lead becomes this run's, marked contended, and a doubt for
        `doubt_seconds` (that run's request may still land); a doubt still in force marks it
        contended too. When a digest was dropped, the drop is durable (on disk, or committed
        by PostgreSQL) before this returns: whatever then happens to the request, a later
        run never skips a version careCycle may not hold. Claims of leads with no digest
        only need to be visible to other runs.
        """
        if self._engine is None or not leads:
            return set()
        if self._location.is_sqlite:
            known: set[bytes] = set()
            if skip_unchanged and self._expect_digests:
                # A read first (no write lock): a re-run of unchanged leads writes nothing.
                known = self.compare(dict(leads))
                leads = [pair for pair in leads if pair[0] not in known]
                if not leads:
                    return known
            same, found = self._run_sqlite(
                lambda cursor: self._claim_sqlite(
                    cursor, run, batch, leads, skip_unchanged, doubt_seconds
                )
            )
            self._expect_digests = bool(known or found)  # a first run looks up once a batch
            if found - same:
                self._sync_sqlite_log()  # the drops are on disk before anything is sent
            return known | same
        return self._claim_postgresql(run, batch, leads, skip_unchanged, doubt_seconds)

    def _claim_sqlite(
        self,
        cursor: sqlite3.Cursor,
        run: bytes,
        batch: int,
        leads: Sequence[tuple[bytes, bytes]],
        skip_unchanged: bool,
        doubt_seconds: float,
    ) -> tuple[set[bytes], set[bytes]]:
        """Look up, claim and drop in one transaction under the file's write lock.

        Returns (keys unchanged, keys that had a digest).

        The lookup runs under the write lock, so no other run records a digest between it
        and the claims: only the digests it found need dropping.
        """
        marks = ",".join("?" * len(leads))
        lookup = f"{_LOOKUP_SQL} AND lead_key IN ({marks})"
        found = dict(cursor.execute(lookup, (self._account_id, *(k for k, _ in leads))))
        same = {
            key
            for key, digest in leads
            if skip_unchanged and key in found and hmac.compare_digest(found[key], digest)
        }
        claimed = [item for pair in leads if pair[0] not in same for item in pair]
        if claimed:
            # One statement for the batch: executemany steps (and lets go of the GIL) per row.
            rows = ",".join(["(?, ?)"] * (len(claimed) // 2))
            cursor.execute(
                _CLAIM_SQL.format(rows=rows),
                (self._account_id, run, batch, time.time(), *claimed, doubt_seconds),
            )
        drop = [key for key, _ in leads if key in found and key not in same]
        if drop:
            marks = ",".join("?" * len(drop))
            cursor.execute(
                f"DELETE FROM {leads_table.name} WHERE account = ? AND lead_key IN ({marks})",
                (self._account_id, *drop),
            )
        return same, set(found)

    def _claim_postgresql(
        self,
        run: bytes,
        batch: int,
        leads: Sequence[tuple[bytes, bytes]],
        skip_unchanged: bool,
        doubt_seconds: float,
    ) -> set[bytes]:
        """Look up (one autocommit query), then claim and drop in one transaction.

        Another run may record a digest between the lookup and the claims, so the drop
        covers every lead claimed, not only those the lookup found. When it dropped
        nothing, the commit need not wait for the disk (synchronous_commit off).
        """
        same = self.compare(dict(leads)) if skip_unchanged else set()
        keys = [key for key, _ in leads if key not in same]
        if not keys:
            return same
        digests = [digest for key, digest in leads if key not in same]
        account = self._account_id

        def claim_and_drop(conn: Connection) -> None:
            conn.exec_driver_sql(_PG_CLAIM_SQL, (account, run, batch, keys, digests, doubt_seconds))
            dropped = conn.exec_driver_sql(
                f"DELETE FROM {leads_table.name} WHERE account = %s AND lead_key = ANY(%s)",
                (account, keys),
            ).rowcount
            if not dropped:
                conn.exec_driver_sql("SET LOCAL synchronous_commit TO OFF")

        self._run(claim_and_drop, write=True)
        return same

    def settle(
        self,
        run: bytes,
        batches: Sequence[SettledBatch],
        doubtful: Sequence[bytes] = (),
        *,
        doubt_seconds: float = 0.0,
        after_stop: bool = False,
    ) -> int:
        """Record what careCycle acknowledged, where the run's claim still stands; unclaim.

        One transaction for any number of finished batches, a few statements whatever their
        size. First the run's claims of `doubtful` leads (a request of unknown fate) become
        doubts for `doubt_seconds`, owned by no run: runs that claim them meanwhile record
        nothing. Then, of the acknowledged batches, a lead's digest (the one its claim
        carries) is written only where the batch's claim is still this run's current claim
        of the lead, not contended and under no doubt in force, and the lead is not
        excluded. Last, the batches' claims are removed, or kept as doubts while one is in
        force. Losing this transaction (a crash, a power cut) only means a resend, so it is
        not forced to disk. Returns the number of digests written.
        """
        if self._engine is None or not (batches or doubtful):
            return 0
        if self._location.is_sqlite:
            return self._run_sqlite(
                lambda cursor: self._settle_sqlite(cursor, run, batches, doubtful, doubt_seconds),
                after_stop=after_stop,
            )
        return self._run(
            lambda conn: self._settle_postgresql(conn, run, batches, doubtful, doubt_seconds),
            write=True,
            after_stop=after_stop,
        )

    def _settle_sqlite(
        self,
        cursor: sqlite3.Cursor,
        run: bytes,
        batches: Sequence[SettledBatch],
        doubtful: Sequence[bytes],
        doubt_seconds: float,
    ) -> int:
        account, now = self._account_id, time.time()
        no_run = f"X'{NO_RUN.hex()}'"
        if doubtful:
            cursor.execute(
                _SETTLE_DOUBT_SQL.format(
                    no_run=no_run, greatest="max", until="?", p="?", doubtful=_marks(doubtful)
                ),
                (now + doubt_seconds, account, run, *doubtful),
            )
        written = 0
        acknowledged = [b.batch for b in batches if b.acknowledged]
        if acknowledged:
            excluded = [(b.batch, key) for b in batches for key in b.excluded]
            pairs = ",".join(["(?, ?)"] * len(excluded))
            not_excluded = f"(batch, lead_key) NOT IN (VALUES {pairs})" if excluded else "1"
            synced_at = datetime.now(timezone.utc).strftime(_SQLITE_TIME_FORMAT)
            cursor.execute(
                _SETTLE_RECORD_SQL.format(
                    synced_at="?", p="?", batches=_marks(acknowledged), not_excluded=not_excluded
                ),
                (synced_at, run, account, *acknowledged, now, *itertools.chain(*excluded)),
            )
            written = cursor.rowcount
        finished = [b.batch for b in batches]
        if finished:
            marks = _marks(finished)
            cursor.execute(
                _SETTLE_KEEP_DOUBTS_SQL.format(no_run=no_run, p="?", batches=marks),
                (run, account, *finished, now),
            )
            cursor.execute(
                _SETTLE_UNCLAIM_SQL.format(p="?", batches=marks, kept=_marks(doubtful)),
                (run, account, *finished, *doubtful),
            )
        return max(written, 0)

    def _settle_postgresql(
        self,
        conn: Connection,
        run: bytes,
        batches: Sequence[SettledBatch],
        doubtful: Sequence[bytes],
        doubt_seconds: float,
    ) -> int:
        account = self._account_id
        finished = [b.batch for b in batches]
        doubtful = list(doubtful)
        # FOR UPDATE: a run claiming one of these leads now waits for this transaction (and
        # then drops the digest written here), or this one waits for it (and then finds the
        # claim is no longer its own).
        conn.exec_driver_sql(
            f"SELECT 1 FROM {claims_table.name} WHERE run = %s AND account = %s "
            "AND (batch = ANY(%s) OR lead_key = ANY(%s)) FOR UPDATE",
            (run, account, finished, doubtful),
        )
        clock = "SELECT extract(epoch FROM clock_timestamp())"
        now = float(conn.exec_driver_sql(clock).scalar_one())
        conn.exec_driver_sql("SET LOCAL synchronous_commit TO OFF")
        no_run = f"'\\x{NO_RUN.hex()}'::bytea"
        if doubtful:
            conn.exec_driver_sql(
                _SETTLE_DOUBT_SQL.format(
                    no_run=no_run, greatest="greatest", until="%s", p="%s", doubtful="%s"
                ).replace("lead_key IN (%s)", "lead_key = ANY(%s)"),
                (now + doubt_seconds, account, run, doubtful),
            )
        written = 0
        acknowledged = [b.batch for b in batches if b.acknowledged]
        if acknowledged:
            excluded = [(b.batch, key) for b in batches for key in b.excluded]
            not_excluded = "(batch, lead_key) NOT IN (SELECT * FROM unnest(%s::int[], %s::bytea[]))"
            sql = _SETTLE_RECORD_SQL.format(
                synced_at="now()", p="%s", batches="%s", not_excluded=not_excluded
            ).replace("batch IN (%s)", "batch = ANY(%s)")
            parameters = (
                run,
                account,
                acknowledged,
                now,
                [batch for batch, _ in excluded],
                [key for _, key in excluded],
            )
            written = conn.exec_driver_sql(sql, parameters).rowcount
        if finished:
            keep = _SETTLE_KEEP_DOUBTS_SQL.format(no_run=no_run, p="%s", batches="%s")
            conn.exec_driver_sql(
                keep.replace("batch IN (%s)", "batch = ANY(%s)"), (run, account, finished, now)
            )
            unclaim = _SETTLE_UNCLAIM_SQL.format(p="%s", batches="%s", kept="%s")
            unclaim = unclaim.replace("batch IN (%s)", "batch = ANY(%s)").replace(
                "lead_key NOT IN (%s)", "NOT (lead_key = ANY(%s))"
            )
            conn.exec_driver_sql(unclaim, (run, account, finished, doubtful))
        return max(written, 0)

    def _sync_sqlite_log(self) -> None:
        """Force the SQLite write-ahead log to disk (what synchronous=FULL does at a commit).

        Every other commit runs with synchronous=NORMAL: on disk at the next checkpoint.
        The first time, the folder too, so a log file created in this run is found after a
        power cut.
        """
        path = self._location.sqlite_path
        if path is None:
            return
        try:
            fd = os.open(path + "-wal", os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            if not self._folder_synced:
                folder = os.open(os.path.dirname(path) or ".", os.O_RDONLY)
                try:
                    os.fsync(folder)
                finally:
                    os.close(folder)
                self._folder_synced = True
        except FileNotFoundError:
            return  # no log: the commit went to the database file, which SQLite synced
        except OSError as exc:
            raise _store_error(exc, self._location) from None

    def count(self) -> int:
        """Entries kept for this account."""
        if self._engine is None:
            return 0
        query = select(func.count()).where(leads_table.c.account == self._account_id)
        return int(self._run(lambda conn: conn.execute(query).scalar_one(), write=False))

    def claims(self) -> int:
        """Claims held on this account's leads (in flight, or left by runs in doubt)."""
        if self._engine is None:
            return 0
        query = select(func.count()).where(claims_table.c.account == self._account_id)
        return int(self._run(lambda conn: conn.execute(query).scalar_one(), write=False))

    # The shared request budget

    def reserve_request(self, interval: float) -> float:
        """Reserve the account's next request slot; return the seconds to wait for it.

        Slots are `interval` apart across every run sharing the store (a row lock in
        PostgreSQL, the write lock of the SQLite file), timed by the store's clock.
        """
        with self._budget_lock:
            if not self._slots:
                self._reserve_slots(interval)
            slot = self._slots.popleft()
        return max(0.0, slot - time.monotonic())

    def _reserve_slots(self, interval: float) -> None:
        """Take the account's next slot, or at high rates the slots of RESERVE_WINDOW.

        One transaction per request would cap the rate at what the store can commit (about
        100 a second); at careCycle's 60 a minute every request still takes its own slot.
        """
        count = min(max(1, int(RESERVE_WINDOW / interval)), MAX_SLOTS_AHEAD)

        def reserve(conn: Connection) -> tuple[float, float, float]:
            next_start = self._locked_next_start(conn)
            now = self._now(conn)  # read under the lock: waiting for it takes no slot time
            read_at = time.monotonic()
            if next_start > now + MAX_WAIT_AHEAD + MAX_SLOTS_AHEAD * interval:
                next_start = now  # a clock that jumped back, not a real reservation
            start = max(now, next_start)
            self._set_next_start(conn, start + count * interval)
            return start, now, read_at

        start, now, read_at = self._run(reserve, write=True)
        # On this process's clock; the commit's own time counts against the wait.
        first = read_at + (start - now)
        self._slots.extend(first + n * interval for n in range(count))

    def hold_off(self, seconds: float) -> None:
        """careCycle answered 429: no run of this account starts a request for `seconds`."""

        def push_back(conn: Connection) -> None:
            next_start = self._locked_next_start(conn)
            now = self._now(conn)
            self._set_next_start(conn, max(next_start, now + seconds))

        with self._budget_lock:
            self._slots.clear()  # slots taken before the 429 are too early now
            self._run(push_back, write=True)

    def _locked_next_start(self, conn: Connection) -> float:
        """The account's next free slot, its row locked until the transaction ends."""
        query = select(budget_table.c.next_start).where(budget_table.c.account == self._account_id)
        if not self._location.is_sqlite:
            query = query.with_for_update()
        found = conn.execute(query).scalar_one_or_none()
        if found is not None:
            return float(found)
        insert = self._insert(budget_table).on_conflict_do_nothing()
        conn.execute(insert, {"account": self._account_id, "next_start": 0.0})
        return float(conn.execute(query).scalar_one())

    def _set_next_start(self, conn: Connection, value: float) -> None:
        conn.execute(
            budget_table.update()
            .where(budget_table.c.account == self._account_id)
            .values(next_start=value)
        )

    def _now(self, conn: Connection) -> float:
        """Epoch seconds on the store's clock: PostgreSQL's for runners on many machines."""
        if self._location.is_sqlite:
            return time.time()
        clock = text("SELECT extract(epoch FROM clock_timestamp())")
        return float(conn.execute(clock).scalar_one())

    def transaction(
        self, work: Callable[[Connection], _T], *, write: bool = True, after_stop: bool = False
    ) -> _T:
        """`work(conn)` in one store transaction, for the run history (history.py).

        Waits for a locked store and turns database problems into SyncStoreError, as every
        other write does (see _run). A store that does not exist yet (a read-only open) has
        no connection: the caller checks `exists` first.
        """
        return self._run(work, write=write, after_stop=after_stop)

    # Plumbing

    def _insert(self, table: Table) -> Any:
        dialect = sqlite_dialect if self._location.is_sqlite else pg_dialect
        return dialect.insert(table)

    def _run(
        self,
        work: Callable[[Connection], _T],
        *,
        write: bool,
        one_query: bool = False,
        after_stop: bool = False,
    ) -> _T:
        """`work` in one transaction; database problems become SyncStoreError naming the setting.

        A lock held elsewhere (another process, another thread of this one) is waited for in
        attempts of LOCK_SLICE each, up to the URL's timeout; between attempts a stop of the
        run ends the wait (StoreInterrupted), and the main thread's signal handler runs.
        `after_stop`: the run is stopping already; wait at most PATIENCE_AFTER_STOP.
        `one_query`: a single SELECT, which PostgreSQL runs without BEGIN and COMMIT (one
        round trip instead of three).
        """
        return self._retrying(
            lambda: self._attempt(work, write=write, one_query=one_query), after_stop
        )

    def _run_sqlite(
        self,
        work: Callable[[sqlite3.Cursor], _T],
        *,
        write: bool = True,
        after_stop: bool = False,
    ) -> _T:
        """`work` on the store's one SQLite connection (see _run).

        A write transaction, or (not `write`) a single read.
        """
        return self._retrying(lambda: self._attempt_sqlite(work, write), after_stop)

    def _retrying(self, attempt: Callable[[], _T], after_stop: bool) -> _T:
        """Repeat `attempt` while the store is locked elsewhere (see _run)."""
        patience = self._location.timeout
        if after_stop:
            patience = min(patience, PATIENCE_AFTER_STOP)
        started = time.monotonic()
        said = False
        while True:
            try:
                return attempt()
            except _Busy as busy:
                if not after_stop and self._stop is not None and self._stop.is_set():
                    raise StoreInterrupted("stopped while waiting for the sync store") from None
                waited = time.monotonic() - started
                if waited >= patience:
                    raise _locked_error(busy.cause, self._location, patience) from None
                if waited >= 1.0 and not said:
                    said = True
                    logger.info(
                        "Sync store %s is locked by another process: waiting up to %g s",
                        self._location.describe(),
                        patience,
                    )

    def _attempt(self, work: Callable[[Connection], _T], *, write: bool, one_query: bool) -> _T:
        assert self._engine is not None
        lock = self._write_lock if write else None
        if lock is not None and not lock.acquire(timeout=LOCK_SLICE):
            raise _Busy()
        # Callers on the main thread hold the run's signal guard, so no signal handler
        # raises between the acquire above and this try.
        try:
            with self._engine.connect() as conn:
                conn.execution_options(carecycle_write=write)
                if one_query and not write and not self._location.is_sqlite:
                    conn.execution_options(isolation_level="AUTOCOMMIT")
                with conn.begin():
                    return work(conn)
        except (SyncStoreError, StoreInterrupted):
            raise
        except (SQLAlchemyError, sqlite3.Error, OSError) as exc:
            if _is_busy(exc):
                raise _Busy(exc) from None
            raise _store_error(exc, self._location) from None
        finally:
            if lock is not None:
                lock.release()

    def _attempt_sqlite(self, work: Callable[[sqlite3.Cursor], _T], write: bool) -> _T:
        assert self._engine is not None and self._write_lock is not None
        if not self._write_lock.acquire(timeout=LOCK_SLICE):
            raise _Busy()
        # Callers on the main thread hold the run's signal guard, so no signal handler
        # raises between the acquire above and this try.
        try:
            if self._sqlite_writer is None:
                self._sqlite_writer = self._engine.raw_connection()
            connection: sqlite3.Connection = self._sqlite_writer.dbapi_connection
            cursor = connection.cursor()
            if not write:
                return work(cursor)  # one statement: its own read transaction
            cursor.execute("BEGIN IMMEDIATE")
            try:
                result = work(cursor)
                cursor.execute("COMMIT")
            finally:
                if connection.in_transaction:
                    connection.rollback()
            return result
        except (SyncStoreError, StoreInterrupted):
            raise
        except (SQLAlchemyError, sqlite3.Error, OSError) as exc:
            if _is_busy(exc):
                raise _Busy(exc) from None
            raise _store_error(exc, self._location) from None
        finally:
            self._write_lock.release()

    def _check_schema(self, *, writable: bool) -> None:
        """Create the tables on first use; refuse a store written by a newer version."""
        if not self._tables_checked(writable=writable):
            self._forget_engine()  # nothing stored yet: reads as empty (after the connection
            # went back to the pool, so disposing the engine closes it)

    def _tables_checked(self, *, writable: bool) -> bool:
        """Check (and when writable, create) the tables; False when a read-only store has none."""
        return self._run(lambda conn: self._check_tables(conn, writable=writable), write=writable)

    def _check_tables(self, conn: Connection, *, writable: bool) -> bool:
        if self._location.is_sqlite:
            # Every page is read once (about 0.1 s per 100,000 leads), so a damaged file
            # stops the run here, not after some batches were sent.
            verdict = conn.exec_driver_sql("PRAGMA quick_check(1)").scalar()
            if verdict != "ok":
                raise SyncStoreError(
                    f"{SETTING}: {self._location.describe()} is not a usable SQLite "
                    "database (corrupt?): move it away to start a new store"
                )
        if not self._location.is_sqlite and writable:
            _check_writable_session(conn, self._location)
            # Two runs creating the tables at once would collide: one waits for the other.
            conn.execute(text(f"SELECT pg_advisory_xact_lock({SCHEMA_LOCK_ID})"))
        _check_no_other_tables(conn, self._location)
        if writable:
            metadata.create_all(conn, checkfirst=True)
        elif not conn.dialect.has_table(conn, meta_table.name):
            return False
        version = conn.execute(
            select(meta_table.c.value).where(meta_table.c.name == "schema_version")
        ).scalar_one_or_none()
        if version is None and writable:
            conn.execute(
                self._insert(meta_table).on_conflict_do_nothing(),
                {"name": "schema_version", "value": str(SCHEMA_VERSION)},
            )
            version = str(SCHEMA_VERSION)
        _check_version(version)
        assert version is not None  # _check_version refused None
        if writable and int(version) < SCHEMA_VERSION:  # 1, 2: create_all made the new tables
            conn.execute(
                meta_table.update()
                .where(meta_table.c.name == "schema_version")
                .values(value=str(SCHEMA_VERSION))
            )
        if writable:
            conn.execute(
                self._insert(accounts_table).on_conflict_do_nothing(),
                {
                    "account": self._account_id,
                    "api_url": self.account.api_url,
                    "key_fingerprint": self.account.key_fingerprint[:16],
                    "first_seen": datetime.now(timezone.utc),
                },
            )
        return True


def _check_no_other_tables(conn: Connection, where: _Location) -> None:
    """Refuse a database (SQLite file, PostgreSQL schema) that holds other applications' tables.

    The store's tables are created (and later read) where it points: another application's
    database would silently gain four tables. In PostgreSQL the store's schema is the first
    of the connection's search_path (`public` unless the URL sets one: docs/sync-store.md).
    """
    if where.is_sqlite:
        listing = (
            "SELECT name FROM sqlite_master WHERE type IN ('table', 'view') "
            "AND name NOT LIKE 'sqlite_%'"
        )
    else:
        schema = conn.execute(text("SELECT current_schema()")).scalar()
        if schema is None:
            raise SyncStoreError(
                f"{SETTING}: {where.describe()}: no schema of the URL's search_path exists; "
                "create it first (CREATE SCHEMA ...)"
            )
        listing = (
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
        )
    others = {str(name) for name in conn.exec_driver_sql(listing).scalars()} - set(metadata.tables)
    if others:
        room = "a file" if where.is_sqlite else "a database, or a schema (docs/sync-store.md),"
        raise SyncStoreError(
            f"{SETTING}: {where.describe()} holds {len(others)} other table(s): the sync "
            f"store needs {room} of its own"
        )


def _check_writable_session(conn: Connection, where: _Location) -> None:
    """A read-only PostgreSQL session (a standby, default_transaction_read_only) cannot record."""
    if conn.execute(text("SHOW transaction_read_only")).scalar() == "on":
        raise SyncStoreError(
            f"{SETTING}: {where.describe()} is read-only, but a run that sends must record "
            "what careCycle acknowledged: use a writable database, or set dry_run"
        )


def _check_version(version: str | None) -> None:
    if version is None:
        raise SyncStoreError(f"{SETTING}: the store has no schema version: not a sync store?")
    try:
        number = int(version)
    except ValueError:
        raise SyncStoreError(f"{SETTING}: the store's schema version is unreadable") from None
    if number > SCHEMA_VERSION:
        raise SyncStoreError(
            f"{SETTING}: the store has schema version {number}, written by a newer "
            f"target-carecycle (this one reads version {SCHEMA_VERSION}): upgrade the target "
            "or point sync_store elsewhere"
        )


def _in_unwritable_folder(where: _Location) -> bool:
    """True for an existing SQLite store whose folder this user cannot write to."""
    path = where.sqlite_path
    if path is None or not os.path.isfile(path):
        return False
    return not os.access(os.path.dirname(path) or ".", os.W_OK)


def _check_store_file(where: _Location, *, create: bool) -> None:
    """Refuse a symbolic link (even a dangling one) or a non-file at the store's path.

    `create`: make the file 0600, in folders created 0700 (both only when new). SQLite opens
    the path itself (and its -wal, -shm and -journal companions), following links, so every
    one of them must not be a link. Only the last part of the path is checked: keep the store
    in a folder other users cannot write to.
    """
    path = where.sqlite_path or ""
    for candidate in (path, *(path + suffix for suffix in ("-wal", "-shm", "-journal"))):
        if os.path.islink(candidate):
            raise SyncStoreError(
                f"{SETTING}: {printable(candidate)} is a symbolic link; give the path of a "
                "regular file (a link could put the store anywhere)"
            )
    if os.path.lexists(path) and not stat.S_ISREG(os.lstat(path).st_mode):
        raise SyncStoreError(f"{SETTING}: {where.describe()} is not a regular file")
    if not create:
        return
    make_private_folders(os.path.dirname(path))
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        return
    try:
        os.fchmod(fd, 0o600)  # whatever the umask
    finally:
        os.close(fd)


def _engine(where: _Location, *, writable: bool) -> Engine:
    if where.is_sqlite:
        return _sqlite_engine(where, writable=writable)
    try:
        import psycopg  # noqa: F401
    except ImportError:
        raise SyncStoreError(
            f"{SETTING}: a PostgreSQL store needs psycopg 3: "
            "pip install 'target-carecycle[postgres]'"
        ) from None
    try:
        engine = create_engine(
            where.url,
            connect_args={"connect_timeout": max(1, round(where.timeout))},
        )
    except NoSuchModuleError:
        raise SyncStoreError(f"{SETTING}: unsupported database driver") from None
    # One attempt waits this long for a lock; SyncStore._run repeats attempts up to the timeout.
    lock_ms = int(min(where.timeout, LOCK_SLICE) * 1000)

    @event.listens_for(engine, "connect")
    def _set_timeouts(dbapi_connection: Any, _record: Any) -> None:
        with dbapi_connection.cursor() as cursor:
            cursor.execute(f"SET lock_timeout = {lock_ms}")
        dbapi_connection.commit()

    return engine


def _sqlite_engine(where: _Location, *, writable: bool) -> Engine:
    """SQLite with explicit transactions: BEGIN IMMEDIATE for writes takes the file's lock."""
    database = where.sqlite_path or ":memory:"

    if where.immutable and where.sqlite_path:  # read as it is, no lock, no -shm
        database, uri = f"file:{quote(where.sqlite_path)}?mode=ro&immutable=1", True
    elif where.read_only and where.sqlite_path:  # `?mode=ro`: SQLite itself refuses writes
        database, uri = f"file:{quote(where.sqlite_path)}?mode=ro", True
    else:
        uri = False

    def connect() -> sqlite3.Connection:
        # A short busy timeout: SyncStore._run repeats attempts up to where.timeout.
        conn = sqlite3.connect(
            database,
            timeout=min(where.timeout, LOCK_SLICE),
            isolation_level=None,
            check_same_thread=False,
            uri=uri,
        )
        if writable and where.sqlite_path:
            # WAL: readers (lookups, a dry run) never wait for a writer.
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
            conn.execute(f"PRAGMA wal_autocheckpoint={SQLITE_CHECKPOINT_PAGES}")
        # NORMAL: a commit reaches the disk at the next checkpoint, except the drops of
        # digests before a send, which SyncStore.claim forces to disk itself.
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    engine = create_engine(
        "sqlite://", creator=connect, poolclass=QueuePool, pool_size=4, pool_use_lifo=True
    )

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        write = conn.get_execution_options().get("carecycle_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine


def _marks(values: Sequence[Any]) -> str:
    """`?` placeholders for an IN list.

    An empty list is an empty blob, which no key or batch number equals (NULL would make
    NOT IN match nothing).
    """
    return ",".join("?" * len(values)) or "X''"


def _is_busy(exc: BaseException) -> bool:
    """A lock held elsewhere: SQLite's BUSY or LOCKED, PostgreSQL's lock timeout."""
    original = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    if isinstance(original, sqlite3.OperationalError):
        code = getattr(original, "sqlite_errorcode", None)
        if code is not None:
            return code & 0xFF in (5, 6)  # SQLITE_BUSY, SQLITE_LOCKED
        return "locked" in str(original).lower()
    # 55P03 lock_not_available (lock_timeout), 40P01 deadlock_detected
    return getattr(original, "sqlstate", None) in ("55P03", "40P01")


def _locked_error(cause: BaseException | None, where: _Location, waited: float) -> SyncStoreError:
    del cause  # the driver's text says no more than this
    return SyncStoreError(
        f"{SETTING}: {where.describe()} stayed locked by another process for more than {waited:g} s"
    )


def _store_error(exc: BaseException, where: _Location) -> SyncStoreError:
    """A one-line reason naming the setting and where the store is (never a password)."""
    original = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    raw = str(original).strip().splitlines()[0] if str(original).strip() else ""
    lowered = raw.lower()  # classified as the driver said it; printed scrubbed
    message = printable(where.scrub(raw), backslash=False)
    place = where.describe()
    if "locked" in lowered or "lock timeout" in lowered or "busy" in lowered:
        return SyncStoreError(
            f"{SETTING}: {place} stayed locked by another process for more than {where.timeout:g} s"
        )
    if "not a database" in lowered or "malformed" in lowered or "corrupt" in lowered:
        return SyncStoreError(
            f"{SETTING}: {place} is not a usable SQLite database (corrupt?): move it away "
            "to start a new store"
        )
    if isinstance(original, OSError):
        reason = original.strerror or type(original).__name__
        return SyncStoreError(f"{SETTING}: cannot use {place}: {reason}")
    if not where.is_sqlite and ("connect" in lowered or "timeout" in lowered):
        return SyncStoreError(f"{SETTING}: cannot reach {place}: {message[:200]}")
    return SyncStoreError(f"{SETTING}: cannot use {place}: {message[:200]}")


__all__ = [
    "STORE_OFF",
    "Account",
    "SettledBatch",
    "StoreInterrupted",
    "SyncStore",
    "SyncStoreError",
    "default_location",
    "location_problem",
]
