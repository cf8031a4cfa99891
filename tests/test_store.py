"""SyncStore on SQLite: lookups, acknowledged entries, privacy, failure cases, the shared budget."""

from __future__ import annotations

import os
import sqlite3
import stat
import threading
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from store_runs import LockHolder

from target_carecycle.client import BatchResult
from target_carecycle.store import (
    SCHEMA_VERSION,
    Account,
    SettledBatch,
    StoreInterrupted,
    SyncStore,
    SyncStoreError,
    default_location,
    location_problem,
)
from target_carecycle.sync_run import SyncRun

KEY = "cc_store_test_secret_key_0123456789"
ACCOUNT = Account.for_key("http://127.0.0.1:8765/", KEY)


@pytest.fixture(autouse=True)
def stores_closed_after_each_test(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Close every store a test opened, so no connection is left for the garbage collector
    (an unclosed one warns, and warnings are errors, in whichever later test it surfaces)."""
    opened: list[SyncStore] = []
    open_store = SyncStore.open.__func__  # type: ignore[attr-defined]

    def tracked(cls: type[SyncStore], *args: Any, **kwargs: Any) -> SyncStore:
        store: SyncStore = open_store(cls, *args, **kwargs)
        opened.append(store)
        return store

    monkeypatch.setattr(SyncStore, "open", classmethod(tracked))
    yield
    for store in opened:
        store.close()


def lead(index: int, **changes: object) -> dict[str, Any]:
    base: dict[str, Any] = {
        "externalId": f"E-{index}",
        "phoneNumber": f"+1312847{index:04d}",
        "firstName": f"Qname{index:04d}x",
        "postalCode": "60614",
    }
    base.update(changes)
    return base


def hashes(leads: list[dict[str, Any]], account: Account = ACCOUNT) -> dict[str, bytes]:
    return {item["externalId"]: account.payload_hash(item) for item in leads}


def acknowledge(store: SyncStore, leads: list[dict[str, Any]]) -> bytes:
    """What a run does for leads careCycle acknowledged: claim, then settle. Returns the run."""
    run = os.urandom(16)
    pairs = [
        (store.account.lead_key(item["externalId"]), store.account.payload_hash(item))
        for item in leads
    ]
    store.claim(run, 1, pairs, skip_unchanged=False)
    store.settle(run, [SettledBatch(1, acknowledged=True)])
    return run


def store_bytes(path: Path) -> bytes:
    return b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))


def test_only_leads_equal_to_the_acknowledged_version_are_unchanged(tmp_path):
    store = SyncStore.open(str(tmp_path / "s.sqlite"), ACCOUNT)
    leads = [lead(i) for i in range(5)]
    assert store.unchanged_ids(hashes(leads)) == set()
    acknowledge(store, leads[:4])
    changed = [*leads[:3], lead(3, firstName="Other"), leads[4]]
    assert store.unchanged_ids(hashes(changed)) == {"E-0", "E-1", "E-2"}
    # The newer version replaces the older one.
    acknowledge(store, [changed[3]])
    assert store.unchanged_ids(hashes(changed)) == {"E-0", "E-1", "E-2", "E-3"}
    assert store.unchanged_ids(hashes(leads)) == {"E-0", "E-1", "E-2"}
    assert store.count() == 4
    store.close()


def test_an_entry_is_the_digest_of_the_version_claimed_and_no_careCycle_id(tmp_path):
    path = tmp_path / "s.sqlite"
    store = SyncStore.open(str(path), ACCOUNT)
    acknowledge(store, [lead(1), lead(2)])
    store.close()
    with closing(sqlite3.connect(path)) as conn, conn:
        rows = conn.execute(
            "SELECT payload_hash, carecycle_id FROM carecycle_sync_leads"
        ).fetchall()
    assert sorted(rows) == sorted(
        [(ACCOUNT.payload_hash(lead(1)), None), (ACCOUNT.payload_hash(lead(2)), None)]
    )


def test_accounts_do_not_share_entries(tmp_path):
    leads = [lead(i) for i in range(3)]
    location = str(tmp_path / "s.sqlite")
    first = SyncStore.open(location, ACCOUNT)
    acknowledge(first, leads)
    other_key = SyncStore.open(location, Account.for_key("http://127.0.0.1:8765", KEY + "x"))
    other_url = SyncStore.open(location, Account.for_key("http://127.0.0.1:9999", KEY))
    same = SyncStore.open(location, Account.for_key("http://127.0.0.1:8765", KEY))
    for store in (other_key, other_url):
        assert store.unchanged_ids(hashes(leads, store.account)) == set()
    assert same.unchanged_ids(hashes(leads)) == {"E-0", "E-1", "E-2"}


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.text(min_size=1, max_size=8),
        st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=12)),
        min_size=1,
        max_size=8,
    ),
    st.randoms(use_true_random=False),
)
def test_payload_hash_ignores_key_order_and_sees_every_value(payload, rnd):
    items = list(payload.items())
    rnd.shuffle(items)
    assert ACCOUNT.payload_hash(dict(items)) == ACCOUNT.payload_hash(payload)
    name = rnd.choice(sorted(payload))
    changed = {**payload, name: ["changed", payload[name]]}
    assert ACCOUNT.payload_hash(changed) != ACCOUNT.payload_hash(payload)
    assert ACCOUNT.payload_hash({k: v for k, v in payload.items() if k != name} | {}) != (
        ACCOUNT.payload_hash(payload)
    )


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=40), st.text(min_size=1, max_size=40))
def test_digests_are_hmac_sha256_under_a_secret_from_the_key(external_id, key):
    import hashlib
    import hmac

    from target_carecycle.serialization import dumps_json

    account = Account.for_key("https://api.carecycle.ai", key)
    secret = hmac.new(key.encode(), b"target-carecycle sync store v1", hashlib.sha256).digest()
    expected = hmac.new(secret, external_id.encode(), hashlib.sha256).digest()[:16]
    assert account.lead_key(external_id) == expected
    payload = {"z": 1, "externalId": external_id, "a": [{"y": 2, "b": None}]}
    canonical = dumps_json({"a": [{"b": None, "y": 2}], "externalId": external_id, "z": 1})
    assert (
        account.payload_hash(payload) == (hmac.new(secret, canonical, hashlib.sha256).digest()[:16])
    )


def test_the_store_holds_no_key_no_external_id_and_no_personal_value(tmp_path):
    path = tmp_path / "s.sqlite"
    store = SyncStore.open(str(path), ACCOUNT)
    leads = [lead(i) for i in range(50)]
    acknowledge(store, leads)
    store.close()
    raw = store_bytes(path)
    assert KEY.encode() not in raw
    for item in leads:
        for value in (item["externalId"], item["phoneNumber"], item["firstName"]):
            assert value.encode() not in raw
    # The stored externalId is keyed by a secret from the API key, not a plain digest.
    import hashlib

    assert hashlib.sha256(b"E-1").digest()[:16] not in raw
    assert ACCOUNT.lead_key("E-1") in raw
    assert "cc_" not in repr(ACCOUNT)


def test_default_location_is_private_under_xdg_state_home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    assert default_location() == tmp_path / "state" / "target-carecycle" / "sync.sqlite"
    store = SyncStore.open(None, ACCOUNT)
    acknowledge(store, [lead(1)])
    store.close()
    folder = tmp_path / "state" / "target-carecycle"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for path in folder.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path.name
    monkeypatch.delenv("XDG_STATE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_location() == (
        tmp_path / "home" / ".local" / "state" / "target-carecycle" / "sync.sqlite"
    )


def test_a_read_only_open_creates_nothing_and_changes_nothing(tmp_path):
    path = tmp_path / "new" / "s.sqlite"
    reader = SyncStore.open(str(path), ACCOUNT, writable=False)
    assert not reader.exists
    assert reader.unchanged_ids(hashes([lead(1)])) == set()
    assert not path.parent.exists()

    writer = SyncStore.open(str(path), ACCOUNT)
    acknowledge(writer, [lead(1)])
    writer.close()
    before = path.read_bytes()
    reader = SyncStore.open(str(path), ACCOUNT, writable=False)
    assert reader.unchanged_ids(hashes([lead(1), lead(2)])) == {"E-1"}
    reader.close()
    assert path.read_bytes() == before


def test_sqlite_url_and_file_path_name_the_same_store(tmp_path):
    path = tmp_path / "s.sqlite"
    acknowledge(SyncStore.open(str(path), ACCOUNT), [lead(1)])
    by_url = SyncStore.open(f"sqlite:///{path}?timeout=5", ACCOUNT)
    assert by_url.unchanged_ids(hashes([lead(1)])) == {"E-1"}


# Stores that cannot be used


def test_a_corrupt_file_is_refused(tmp_path):
    path = tmp_path / "s.sqlite"
    path.write_bytes(b"this is not a database, it is a shopping list\n" * 100)
    with pytest.raises(SyncStoreError) as caught:
        SyncStore.open(str(path), ACCOUNT)
    assert str(caught.value).startswith("sync_store: ")
    assert "not a usable SQLite database" in str(caught.value)
    with pytest.raises(SyncStoreError):
        SyncStore.open(str(path), ACCOUNT, writable=False)


def test_a_file_damaged_past_its_header_is_refused_at_open(tmp_path):
    """Damage in the pages of entries (not the header) is found before anything is sent."""
    path = tmp_path / "s.sqlite"
    store = SyncStore.open(str(path), ACCOUNT)
    for batch in range(20):
        acknowledge(store, [lead(batch * 200 + i) for i in range(200)])
    store.close()
    data = bytearray(path.read_bytes())
    for offset in range(4 * 4096, len(data), 4096):
        data[offset + 64 : offset + 512] = bytes(range(256)) + bytes(range(192))
    path.write_bytes(bytes(data))
    with pytest.raises(SyncStoreError, match="not a usable SQLite database"):
        SyncStore.open(str(path), ACCOUNT)


def test_a_store_of_a_newer_schema_version_is_refused(tmp_path):
    path = tmp_path / "s.sqlite"
    SyncStore.open(str(path), ACCOUNT).close()
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute(
            "UPDATE carecycle_sync_meta SET value = ? WHERE name = 'schema_version'",
            (str(SCHEMA_VERSION + 1),),
        )
    for writable in (True, False):
        with pytest.raises(SyncStoreError, match=r"^sync_store: .*newer"):
            SyncStore.open(str(path), ACCOUNT, writable=writable)


def test_a_store_locked_past_the_timeout_is_refused(tmp_path):
    path = tmp_path / "s.sqlite"
    SyncStore.open(str(path), ACCOUNT).close()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(SyncStoreError, match=r"^sync_store: .*locked .* 0\.5 s"):
            SyncStore.open(f"sqlite:///{path}?timeout=0.5", ACCOUNT)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    SyncStore.open(f"sqlite:///{path}?timeout=0.5", ACCOUNT).close()


def test_an_unreachable_postgresql_store_is_refused_without_its_password():
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"postgresql+psycopg://carecycle:Sekr3tPassw0rd@127.0.0.1:{port}/sync?timeout=2"
    with pytest.raises(SyncStoreError) as caught:
        SyncStore.open(url, ACCOUNT)
    message = str(caught.value)
    assert message.startswith(
        f"sync_store: cannot reach PostgreSQL database sync on 127.0.0.1:{port} as user carecycle"
    )
    assert "Sekr3tPassw0rd" not in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("location", "expected"),
    [
        ("", "must not be empty"),
        ("mysql://user:Sekr3t@host/db", "must be a file path"),
        ("sqlite:///x.db?timeout=soon", "timeout must be a number"),
        ("sqlite:///x.db?timeout=0", "between 0 and 3600"),
        ("postgresql+asyncpg://u:Sekr3t@h/db", "must be a file path"),
    ],
)
def test_location_problems_name_the_setting_never_the_value(location, expected):
    problem = location_problem(location)
    assert problem is not None
    assert problem.startswith("sync_store: ")
    assert expected in problem
    assert "Sekr3t" not in problem


@pytest.mark.parametrize(
    "location",
    [
        "off",
        "leads.sqlite",
        "sqlite:///leads.sqlite",
        "postgresql://u:p@h/db",
        "postgresql+psycopg://h/db",
    ],
)
def test_usable_locations(location):
    assert location_problem(location) is None


# The shared request budget


def test_runs_sharing_a_store_take_request_slots_one_interval_apart(tmp_path):
    """Two stores (two runs) reserving at once: every slot is a distinct multiple of the interval.

    The waits are computed by the store from its own clock, so with a 100 s interval the k-th
    slot waits between k*100 s minus the time all reservations took, and k*100 s.
    """
    location = str(tmp_path / "s.sqlite")
    runs = [SyncStore.open(location, ACCOUNT), SyncStore.open(location, ACCOUNT)]
    interval = 100.0
    waits: list[float] = []
    lock = threading.Lock()

    def reserve(store: SyncStore) -> None:
        for _ in range(10):
            wait = store.reserve_request(interval)
            with lock:
                waits.append(wait)

    threads = [threading.Thread(target=reserve, args=(run,)) for run in runs for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(waits) == 60
    slots = sorted(round(wait / interval) for wait in waits)
    assert slots == list(range(60))
    for wait in waits:
        assert abs(wait - round(wait / interval) * interval) < 20


def test_a_429_holds_back_every_run_sharing_the_store(tmp_path):
    location = str(tmp_path / "s.sqlite")
    first, second = SyncStore.open(location, ACCOUNT), SyncStore.open(location, ACCOUNT)
    first.hold_off(500)
    assert 480 < second.reserve_request(1.0) <= 500
    other_account = SyncStore.open(location, Account.for_key("http://127.0.0.1:1", KEY))
    assert other_account.reserve_request(1.0) == 0


def test_at_high_rates_one_transaction_reserves_a_window_of_slots(tmp_path):
    """At 6,000 a minute a slot per transaction would cap the rate: 20 slots are taken at once.

    The stored next slot moves past all of them, so another run sharing the store starts
    after them; a 429 drops the slots taken before it.
    """
    path = tmp_path / "s.sqlite"
    store = SyncStore.open(str(path), ACCOUNT)
    before = time.time()
    store.reserve_request(0.01)
    with closing(sqlite3.connect(path)) as conn, conn:
        (next_start,) = conn.execute("SELECT next_start FROM carecycle_sync_budget").fetchone()
    assert len(store._slots) == 19
    assert next_start >= before + 20 * 0.01
    store.hold_off(1.0)
    assert len(store._slots) == 0
    assert store.reserve_request(60.0) > 0.5  # after the hold-off, one slot at a time
    assert len(store._slots) == 0


def test_a_slot_from_a_clock_set_back_is_ignored(tmp_path):
    store = SyncStore.open(str(tmp_path / "s.sqlite"), ACCOUNT)
    store.reserve_request(1.0)
    with closing(sqlite3.connect(tmp_path / "s.sqlite")) as conn, conn:
        conn.execute("UPDATE carecycle_sync_budget SET next_start = next_start + 86400")
    assert store.reserve_request(1.0) == 0


def test_concurrent_writers_never_lose_an_entry(tmp_path):
    location = str(tmp_path / "s.sqlite")
    stores = [SyncStore.open(location, ACCOUNT) for _ in range(3)]

    def write(store: SyncStore, offset: int) -> None:
        for batch in range(20):
            acknowledge(store, [lead(offset + batch * 10 + i) for i in range(10)])

    threads = [
        threading.Thread(target=write, args=(store, n * 1000)) for n, store in enumerate(stores)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert stores[0].count() == 600


def test_store_files_are_not_world_readable_even_with_a_loose_umask(tmp_path):
    old = os.umask(0)
    try:
        path = tmp_path / "deep" / "s.sqlite"
        acknowledge(SyncStore.open(str(path), ACCOUNT), [lead(1)])
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    for file in path.parent.iterdir():
        assert stat.S_IMODE(file.stat().st_mode) == 0o600, file.name


# Claims: the store holds a digest only when the run knew careCycle applied that version last


def pairs_of(store: SyncStore, leads: list[dict[str, Any]]) -> list[tuple[bytes, bytes]]:
    return [(store.account.lead_key(i["externalId"]), store.account.payload_hash(i)) for i in leads]


def settle_all(store: SyncStore, run: bytes, batch: int, leads: list[dict[str, Any]]) -> int:
    """careCycle acknowledged the whole batch (the digests come from its claims)."""
    del leads
    return store.settle(run, [SettledBatch(batch, acknowledged=True)])


def claims_rows(path: Path) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(path)) as conn:
        return conn.execute("SELECT run, batch, contended FROM carecycle_sync_claims").fetchall()


def test_claim_skips_unchanged_leads_and_drops_the_digests_of_the_others(tmp_path):
    store = SyncStore.open(str(tmp_path / "s.sqlite"), ACCOUNT)
    leads = [lead(i) for i in range(4)]
    acknowledge(store, leads)
    changed = [*leads[:2], lead(2, firstName="New"), lead(9)]
    run = os.urandom(16)
    same = store.claim(run, 1, pairs_of(store, changed))
    assert same == {ACCOUNT.lead_key("E-0"), ACCOUNT.lead_key("E-1")}
    # E-2's old digest is gone before it is sent; E-3 (not in the batch) keeps its own.
    assert store.unchanged_ids(hashes(leads)) == {"E-0", "E-1", "E-3"}
    assert store.claims() == 2  # E-2 and E-9: the unchanged ones are not claimed
    assert settle_all(store, run, 1, changed[2:]) == 2
    assert store.unchanged_ids(hashes(changed)) == {"E-0", "E-1", "E-2", "E-9"}
    assert store.claims() == 0


def test_two_runs_sending_one_lead_record_nothing_whoever_answers_last(tmp_path):
    location = str(tmp_path / "s.sqlite")
    first, second = SyncStore.open(location, ACCOUNT), SyncStore.open(location, ACCOUNT)
    a, b = lead(1, firstName="A"), lead(1, firstName="B")
    run_a, run_b = os.urandom(16), os.urandom(16)
    first.claim(run_a, 1, pairs_of(first, [a]))
    second.claim(run_b, 1, pairs_of(second, [b]))  # A's claim stands: contended
    assert settle_all(first, run_a, 1, [a]) == 0  # its claim was taken over
    assert settle_all(second, run_b, 1, [b]) == 0  # contended
    assert first.count() == 0 and first.claims() == 0
    # The next run is clean.
    run_c = os.urandom(16)
    first.claim(run_c, 1, pairs_of(first, [b]))
    assert settle_all(first, run_c, 1, [b]) == 1


def test_a_late_settle_after_another_run_claimed_the_lead_writes_nothing(tmp_path):
    """Run A was answered first but writes last; run B claimed the lead in between."""
    location = str(tmp_path / "s.sqlite")
    store = SyncStore.open(location, ACCOUNT)
    a, b = lead(1, firstName="A"), lead(1, firstName="B")
    run_a, run_b = os.urandom(16), os.urandom(16)
    store.claim(run_a, 1, pairs_of(store, [a]))
    store.claim(run_b, 1, pairs_of(store, [b]))
    assert settle_all(store, run_b, 1, [b]) == 0
    assert settle_all(store, run_a, 1, [a]) == 0
    assert store.count() == 0


def test_a_settle_before_another_claim_is_dropped_by_that_claim(tmp_path):
    store = SyncStore.open(str(tmp_path / "s.sqlite"), ACCOUNT)
    a, b = lead(1, firstName="A"), lead(1, firstName="B")
    run_a, run_b = os.urandom(16), os.urandom(16)
    store.claim(run_a, 1, pairs_of(store, [a]))
    assert settle_all(store, run_a, 1, [a]) == 1
    store.claim(run_b, 1, pairs_of(store, [b]))
    assert store.count() == 0  # B's version is on its way: A's digest would be a lie now
    assert settle_all(store, run_b, 1, [b]) == 1
    assert store.unchanged_ids(hashes([b])) == {"E-1"}


def test_a_later_batch_of_the_same_run_fences_the_earlier_one(tmp_path):
    store = SyncStore.open(str(tmp_path / "s.sqlite"), ACCOUNT)
    a, b = lead(1, firstName="A"), lead(1, firstName="B")
    run = os.urandom(16)
    store.claim(run, 1, pairs_of(store, [a]))
    store.claim(run, 2, pairs_of(store, [b]))  # the same run: not contended
    assert settle_all(store, run, 1, [a]) == 0  # batch 1's acknowledgement comes too late
    assert settle_all(store, run, 2, [b]) == 1
    assert store.unchanged_ids(hashes([b])) == {"E-1"}


def test_a_claim_left_behind_makes_the_next_run_record_nothing_and_the_one_after_clean(tmp_path):
    path = tmp_path / "s.sqlite"
    store = SyncStore.open(str(path), ACCOUNT)
    a = lead(1)
    store.claim(os.urandom(16), 1, pairs_of(store, [a]))  # then killed: no settle
    run = os.urandom(16)
    store.claim(run, 1, pairs_of(store, [a]))
    assert [row[2] for row in claims_rows(path)] == [1]  # contended
    assert settle_all(store, run, 1, [a]) == 0
    assert store.claims() == 0  # it clears its own claim
    run = os.urandom(16)
    store.claim(run, 1, pairs_of(store, [a]))
    assert settle_all(store, run, 1, [a]) == 1


def test_answered_leads_without_acknowledgement_are_unclaimed_and_not_recorded(tmp_path):
    store = SyncStore.open(str(tmp_path / "s.sqlite"), ACCOUNT)
    leads = [lead(1), lead(2)]
    run = os.urandom(16)
    _, (k2, _) = pairs_of(store, leads)
    store.claim(run, 1, pairs_of(store, leads))
    assert store.settle(run, [SettledBatch(1, acknowledged=True, excluded=(k2,))]) == 1
    assert store.claims() == 0 and store.unchanged_ids(hashes(leads)) == {"E-1"}


def test_a_version_1_store_is_upgraded_and_its_entries_still_count(tmp_path):
    path = tmp_path / "s.sqlite"
    store = SyncStore.open(str(path), ACCOUNT)
    acknowledge(store, [lead(1)])
    store.close()
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("DROP TABLE carecycle_sync_claims")
        conn.execute("UPDATE carecycle_sync_meta SET value = '1'")
    reader = SyncStore.open(str(path), ACCOUNT, writable=False)  # a dry run reads it as is
    assert reader.unchanged_ids(hashes([lead(1)])) == {"E-1"}
    reader.close()
    store = SyncStore.open(str(path), ACCOUNT)
    assert store.unchanged_ids(hashes([lead(1)])) == {"E-1"} and store.claims() == 0
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("SELECT value FROM carecycle_sync_meta").fetchall() == [
            (str(SCHEMA_VERSION),)
        ]


# A stop of the run ends a wait for a store another process holds


def test_a_stop_ends_a_wait_for_a_locked_store(tmp_path):
    path = tmp_path / "s.sqlite"
    stop = threading.Event()
    store = SyncStore.open(f"sqlite:///{path}?timeout=3600", ACCOUNT, stop=stop)
    holder = LockHolder(path)  # a second process
    outcome: list[BaseException] = []

    def claim() -> None:
        try:
            store.claim(os.urandom(16), 1, pairs_of(store, [lead(1)]))
        except BaseException as exc:  # collected, asserted below
            outcome.append(exc)

    worker = threading.Thread(target=claim)
    worker.start()
    stop.set()
    worker.join(timeout=60)  # a bound, not a measurement: the holder keeps the lock longer
    assert holder.holding
    holder.release()
    assert [type(exc) for exc in outcome] == [StoreInterrupted]


def test_after_a_stop_the_last_settle_waits_only_briefly_and_fails_loudly(tmp_path):
    path = tmp_path / "s.sqlite"
    stop = threading.Event()
    store = SyncStore.open(f"sqlite:///{path}?timeout=3600", ACCOUNT, stop=stop)
    stop.set()
    with LockHolder(path), pytest.raises(SyncStoreError, match=r"^sync_store: .*locked .* 1 s"):
        store.settle(os.urandom(16), [], [b"k" * 16], after_stop=True)


# One run's side: taint, acknowledgements from the answers


def test_a_lead_with_a_request_of_unknown_fate_is_never_recorded_in_that_run(tmp_path):
    store = SyncStore.open(str(tmp_path / "s.sqlite"), ACCOUNT)
    run = SyncRun(store, skip_unchanged=True)
    try:
        first, second = lead(1, firstName="A"), lead(1, firstName="B")
        keys, digests = zip(*pairs_of(store, [first]), strict=True)
        _, claimed = run.claim(keys, digests)
        assert claimed is not None
        run.answered(claimed, BatchResult(ids={0: "cc-1"}), maybe_applied=True)  # retried
        keys, digests = zip(*pairs_of(store, [second]), strict=True)
        _, claimed = run.claim(keys, digests)
        assert claimed is not None
        run.answered(claimed, BatchResult(ids={0: "cc-1"}), maybe_applied=False)
        run.settle_now()
        assert store.count() == 0  # the first request may still land after the second
        assert store.claims() == 1  # and the next run to send it records nothing either
        assert run.tainted == 1
    finally:
        run.close()


def test_a_version_acknowledged_earlier_in_the_run_is_unchanged_before_it_is_written(tmp_path):
    store = SyncStore.open(str(tmp_path / "s.sqlite"), ACCOUNT)
    run = SyncRun(store, skip_unchanged=True)
    try:
        keys, digests = zip(*pairs_of(store, [lead(1), lead(2)]), strict=True)
        unchanged, claimed = run.claim(keys, digests)
        assert unchanged == set() and claimed is not None
        run.answered(claimed, BatchResult(ids={0: None, 1: None}, failures={1: "no"}), False)
        unchanged, again = run.claim(keys, digests)
        assert unchanged == {0} and again is not None and again.lead_keys == (keys[1],)
        run.answered(again, BatchResult(ids={0: None}), False)
        run.settle_now()
        assert store.count() == 2 and store.claims() == 0
    finally:
        run.close()


def test_a_failure_of_the_writer_thread_is_raised_on_the_main_thread(tmp_path):
    path = tmp_path / "s.sqlite"
    store = SyncStore.open(f"sqlite:///{path}?timeout=0.5", ACCOUNT)
    run = SyncRun(store, skip_unchanged=True)
    try:
        keys, digests = zip(*pairs_of(store, [lead(1)]), strict=True)
        _, claimed = run.claim(keys, digests)
        assert claimed is not None
        with LockHolder(path):
            run.answered(claimed, BatchResult(ids={0: None}), False)
            with pytest.raises(SyncStoreError, match="locked"):
                run.settle_now()
        assert run.failed
        with pytest.raises(SyncStoreError):
            run.check()
    finally:
        run.close()


def test_a_doubt_in_force_makes_every_run_record_nothing_until_it_is_over(tmp_path):
    path = tmp_path / "s.sqlite"
    store = SyncStore.open(str(path), ACCOUNT)
    a = lead(1)
    store.claim(os.urandom(16), 1, pairs_of(store, [a]))  # a run that died while sending
    for _ in range(3):  # every run meeting the doubt while it lasts
        run = os.urandom(16)
        store.claim(run, 1, pairs_of(store, [a]), doubt_seconds=3600)
        assert settle_all(store, run, 1, [a]) == 0
        assert store.claims() == 1  # the doubt stays, owned by no run
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("UPDATE carecycle_sync_claims SET doubt_until = 1")  # an hour later
    run = os.urandom(16)
    store.claim(run, 1, pairs_of(store, [a]), doubt_seconds=3600)
    assert settle_all(store, run, 1, [a]) == 1
    assert store.claims() == 0


def test_a_request_of_unknown_fate_leaves_a_doubt_for_ten_request_timeouts(tmp_path):
    store = SyncStore.open(str(tmp_path / "s.sqlite"), ACCOUNT)
    run = SyncRun(store, skip_unchanged=True, doubt_seconds=300)
    try:
        keys, digests = zip(*pairs_of(store, [lead(1)]), strict=True)
        _, claimed = run.claim(keys, digests)
        assert claimed is not None
        before = time.time()
        run.answered(claimed, None, maybe_applied=True)  # timed out, retries used up
        run.settle_now()
    finally:
        run.close()
    rows = claims_rows(tmp_path / "s.sqlite")
    assert [(bytes(r), b) for r, b, _ in rows] == [(bytes(16), 0)]  # owned by no run
    with closing(sqlite3.connect(tmp_path / "s.sqlite")) as conn:
        (until,) = conn.execute("SELECT doubt_until FROM carecycle_sync_claims").fetchone()
    assert before + 300 <= until <= time.time() + 300
