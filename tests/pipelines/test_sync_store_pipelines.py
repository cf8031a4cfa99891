"""The sync store in real pipelines: Meltano with --full-refresh, and a PostgreSQL store shared
by runners in different folders and homes (as on different machines)."""

from __future__ import annotations

import json
import os
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest
from pipeline_helpers import (
    MeltanoProject,
    PostgresServer,
    clean_env,
    stream_counts,
    target_executable,
    write_csv,
)

from target_carecycle.sandbox import RunningSandbox, SandboxConfig, running_sandbox
from target_carecycle.sandbox.samples import api_leads, singer_lines
from target_carecycle.store import (
    SCHEMA_LOCK_ID,
    SCHEMA_VERSION,
    Account,
    SettledBatch,
    SyncStore,
    SyncStoreError,
)

HEADER = ["External ID", "First Name", "Last Name", "Phone", "Zip Code"]
SECRET_KEY = "cc_pipeline_sync_secret_0123456789"


def crm_rows(count: int) -> list[list[str]]:
    leads = api_leads(count, stream="crm")
    return [
        [lead["externalId"], f"Qcsv{n}x", lead["lastName"], lead["phoneNumber"], lead["postalCode"]]
        for n, lead in enumerate(leads)
    ]


def test_full_refresh_twice_sends_nothing_the_second_time(
    meltano_project: MeltanoProject,
    sandbox: RunningSandbox,
    target_env: dict[str, str],
    data_dir: Path,
) -> None:
    """A nightly full export re-read with `meltano run --full-refresh` costs no request."""
    rows = crm_rows(250)
    write_csv(data_dir / "leads.csv", HEADER, rows)
    env = {**target_env, "PIPELINE_DATA_DIR": str(data_dir), "TARGET_CARECYCLE_STREAMS": "{}"}

    first = meltano_project.run("tap-csv-test", "target-carecycle", env=env)
    assert stream_counts(first.target_summary(), "crm_csv")["succeeded"] == 250, first.tail()
    requests = sandbox.stats()["upload_requests"]
    assert requests == 2

    second = meltano_project.run("tap-csv-test", "target-carecycle", env=env)
    counts = stream_counts(second.target_summary(), "crm_csv")
    assert (counts["received"], counts["succeeded"], counts["unchanged"]) == (250, 0, 250)
    assert sandbox.stats()["upload_requests"] == requests
    state = meltano_project.state("dev:tap-csv-test-to-target-carecycle")
    assert state["singer_state"]["target_carecycle"]["crm_csv"]["unchanged"] == 250

    rows[10][2] = "Edited"
    write_csv(data_dir / "leads.csv", HEADER, rows)
    third = meltano_project.run("tap-csv-test", "target-carecycle", env=env)
    counts = stream_counts(third.target_summary(), "crm_csv")
    assert (counts["succeeded"], counts["unchanged"]) == (1, 249)
    assert sandbox.stats()["leads_received"] == 251


# A PostgreSQL store


def run_in_home(
    home: Path, config: dict[str, Any], lines: list[str]
) -> subprocess.CompletedProcess[str]:
    """The target in its own working folder and home, with no state of its own shared."""
    home.mkdir(parents=True)
    (home / "config.json").write_text(json.dumps(config))
    env = clean_env({"HOME": str(home), "XDG_STATE_HOME": str(home / ".state")})
    return subprocess.run(
        [str(target_executable()), "--config", "config.json"],
        input="\n".join(lines) + "\n",
        capture_output=True,
        text=True,
        cwd=home,
        env=env,
        timeout=180,
        check=False,
    )


def last_counts(proc: subprocess.CompletedProcess[str]) -> dict[str, int]:
    assert proc.returncode == 0, proc.stderr[-3000:]
    states = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    tally: dict[str, int] = states[-1]["target_carecycle"]["leads"]
    return tally


def test_runners_in_different_homes_share_a_postgresql_store(
    store_url: str, postgres: PostgresServer, tmp_path: Path
) -> None:
    with running_sandbox(SandboxConfig(api_keys=(SECRET_KEY,), rate_limit=0)) as sandbox:
        config = {
            "api_url": sandbox.url,
            "api_key": SECRET_KEY,
            "max_requests_per_minute": 6000,
            "sync_store": store_url,
        }
        leads = api_leads(300)
        for lead in leads:
            lead["firstName"] = f"Qpg{lead['externalId']}x"
        lines = list(singer_lines("leads", leads, state={"bookmarks": {}}))

        first = last_counts(run_in_home(tmp_path / "worker-a", config, lines))
        assert first["succeeded"] == 300
        leads[5]["lastName"] = "Moved"
        lines = list(singer_lines("leads", leads, state={"bookmarks": {}}))
        second = last_counts(run_in_home(tmp_path / "worker-b", config, lines))
        assert (second["succeeded"], second["unchanged"]) == (1, 299)
        assert sandbox.stats()["leads_received"] == 301
        # Neither runner kept a store of its own.
        for worker in ("worker-a", "worker-b"):
            assert not (tmp_path / worker / ".state").exists()

    database = store_url.rsplit("/", 1)[1]
    dump = postgres.psql(
        "SELECT * FROM carecycle_sync_leads; SELECT * FROM carecycle_sync_accounts;",
        database=database,
    )
    assert dump.count("\n") >= 301
    assert SECRET_KEY not in dump
    for lead in leads[::17]:
        for name in ("externalId", "phoneNumber", "firstName", "email"):
            assert lead[name] not in dump


def test_postgresql_budget_slots_and_concurrent_first_use(store_url: str) -> None:
    """Stores opened at once on a fresh database all succeed; slots are one interval apart."""
    account = Account.for_key("http://127.0.0.1:1", SECRET_KEY)
    stores: list[SyncStore] = []
    errors: list[Exception] = []

    def open_store() -> None:
        try:
            stores.append(SyncStore.open(store_url, account))
        except Exception as exc:  # collected, asserted below
            errors.append(exc)

    threads = [threading.Thread(target=open_store) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    interval = 100.0
    waits: list[float] = []
    lock = threading.Lock()

    def reserve(store: SyncStore) -> None:
        for _ in range(5):
            wait = store.reserve_request(interval)
            with lock:
                waits.append(wait)

    threads = [threading.Thread(target=reserve, args=(store,)) for store in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(round(w / interval) for w in waits) == list(range(20))
    assert all(abs(w - round(w / interval) * interval) < 20 for w in waits)
    for store in stores:
        store.close()
    # A 429 seen by one run holds back another run of the same account.
    other = Account.for_key("http://127.0.0.1:2", SECRET_KEY)
    first, second = SyncStore.open(store_url, other), SyncStore.open(store_url, other)
    try:
        first.hold_off(500)
        assert 400 < second.reserve_request(1.0) <= 500
    finally:
        first.close()
        second.close()


def test_a_postgresql_store_of_a_newer_version_is_refused(
    store_url: str, postgres: PostgresServer
) -> None:
    account = Account.for_key("http://127.0.0.1:1", SECRET_KEY)
    SyncStore.open(store_url, account).close()
    postgres.psql(
        f"UPDATE carecycle_sync_meta SET value = '{SCHEMA_VERSION + 1}'",
        database=store_url.rsplit("/", 1)[1],
    )
    with pytest.raises(SyncStoreError, match="newer target-carecycle") as caught:
        SyncStore.open(store_url, account)
    assert "Pg-Store-Sekr3t" not in str(caught.value)


def test_a_dry_run_on_an_empty_postgresql_database_creates_nothing(
    store_url: str, postgres: PostgresServer
) -> None:
    account = Account.for_key("http://127.0.0.1:1", SECRET_KEY)
    store = SyncStore.open(store_url, account, writable=False)
    assert store.unchanged_ids({"E-1": bytes(16)}) == set()
    store.close()
    tables = postgres.psql(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'",
        database=store_url.rsplit("/", 1)[1],
    )
    assert tables.strip() == "0"
    assert os.environ.get("TARGET_CARECYCLE_SYNC_STORE") is None


def test_a_postgresql_store_locked_past_its_timeout_is_refused(store_url: str) -> None:
    """Another session holds the lock taken while the tables are checked: one line, no wait."""
    import psycopg

    account = Account.for_key("http://127.0.0.1:1", SECRET_KEY)
    SyncStore.open(store_url, account).close()
    plain = store_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain, autocommit=True) as holder:
        holder.execute(f"SELECT pg_advisory_lock({SCHEMA_LOCK_ID})")
        with pytest.raises(SyncStoreError) as caught:
            SyncStore.open(store_url + "?timeout=1", account)
    message = str(caught.value)
    assert message.startswith("sync_store: PostgreSQL database ")
    assert "locked by another process for more than 1 s" in message
    assert "Pg-Store-Sekr3t" not in message


# A PostgreSQL store is the store's own: other tables refused, a schema of its own accepted


def test_a_postgresql_database_with_other_tables_is_refused_unless_the_store_has_a_schema(
    store_url: str, postgres: PostgresServer
) -> None:
    """Another application's database would silently gain the store's tables."""
    database = store_url.rsplit("/", 1)[1]
    postgres.psql("CREATE TABLE customers (id integer)", database=database)
    account = Account.for_key("http://127.0.0.1:1", SECRET_KEY)
    with pytest.raises(SyncStoreError, match=r"holds 1 other table\(s\)") as caught:
        SyncStore.open(store_url, account)
    assert "Pg-Store-Sekr3t" not in str(caught.value)
    in_schema = store_url + "?options=-csearch_path%3Dcarecycle_sync"
    with pytest.raises(SyncStoreError, match="no schema of the URL's search_path exists"):
        SyncStore.open(in_schema, account)
    postgres.psql("CREATE SCHEMA carecycle_sync", database=database)
    store = SyncStore.open(in_schema, account)
    run = os.urandom(16)
    store.claim(run, 1, [(account.lead_key("E-1"), bytes(16))], skip_unchanged=False)
    store.settle(run, [SettledBatch(1, acknowledged=True)])
    store.close()
    listing = postgres.psql(
        "SELECT table_schema || '.' || table_name FROM information_schema.tables "
        "WHERE table_schema IN ('public', 'carecycle_sync') ORDER BY 1",
        database=database,
    )
    assert sorted(listing.split()) == sorted(
        [
            "carecycle_sync.carecycle_sync_accounts",
            "carecycle_sync.carecycle_sync_budget",
            "carecycle_sync.carecycle_sync_claims",
            "carecycle_sync.carecycle_sync_leads",
            "carecycle_sync.carecycle_sync_log",
            "carecycle_sync.carecycle_sync_meta",
            "carecycle_sync.carecycle_sync_run_streams",
            "carecycle_sync.carecycle_sync_runs",
            "public.customers",
        ]
    )


def test_a_read_only_postgresql_session_serves_a_dry_run_only(store_url: str) -> None:
    account = Account.for_key("http://127.0.0.1:1", SECRET_KEY)
    SyncStore.open(store_url, account).close()
    read_only = store_url + "?options=-cdefault_transaction_read_only%3Don"
    with pytest.raises(SyncStoreError, match="is read-only, but a run that sends must record"):
        SyncStore.open(read_only, account)
    SyncStore.open(read_only, account, writable=False).close()


def test_a_password_given_as_a_query_parameter_is_never_printed(
    store_url: str, tmp_path: Path
) -> None:
    """`?password=` used to be printed in the line that names the store."""
    secret = "Pg-Query-Sekr3t-7"
    url = store_url.replace("postgres:Pg-Store-Sekr3t@", "postgres@") + f"?password={secret}"
    with running_sandbox(SandboxConfig(api_keys=(SECRET_KEY,), rate_limit=0)) as sandbox:
        config = {"api_url": sandbox.url, "api_key": SECRET_KEY, "sync_store": url}
        proc = run_in_home(tmp_path / "home", config, list(singer_lines("leads", api_leads(3))))
    assert proc.returncode == 0, proc.stderr[-3000:]
    database = store_url.rsplit("/", 1)[1]
    assert f"Sync store: PostgreSQL database {database} on 127.0.0.1:" in proc.stderr
    assert secret not in proc.stderr + proc.stdout
