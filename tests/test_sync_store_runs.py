"""The sync store end to end: the real executable, the sandbox over HTTP, a SQLite store.

Every assertion is on counts the sandbox and the store keep (requests, leads received, entries),
never on durations.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import threading
import time
from contextlib import closing
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from target_runner import (
    TARGET_EXE,
    TargetRun,
    all_answered,
    run_target,
    start_target,
    target_config,
    wait_for_stats,
)

from target_carecycle.sandbox import RunningSandbox, SandboxConfig, running_sandbox
from target_carecycle.sandbox.samples import api_leads, singer_lines
from target_carecycle.store import SCHEMA_VERSION, Account, SyncStore

SECRET_KEY = "cc_sync_store_test_secret_0123456789"
STATE = {"bookmarks": {"leads": {"replication_key_value": 1}}}


def distinctive_leads(count: int, start: int = 0) -> list[dict[str, Any]]:
    leads = api_leads(count, start=start)
    for lead in leads:
        lead["firstName"] = f"Qsync{lead['externalId']}x"
    return leads


def lines(leads: list[dict[str, Any]]) -> list[str]:
    return list(singer_lines("leads", leads, state=STATE))


def counts(run: TargetRun) -> dict[str, int]:
    assert run.returncode == 0, run.stderr[-3000:]
    tally: dict[str, int] = run.states[-1]["target_carecycle"]["leads"]
    return tally


def dry_counts(run: TargetRun) -> dict[str, int]:
    """A dry run's counts: from its structured summary (a dry run emits no STATE)."""
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.states == []
    tally: dict[str, int] = run.summary["streams"]["leads"]
    assert "succeeded" not in tally
    return tally


def assert_accounted(tally: dict[str, int]) -> None:
    assert tally["received"] == sum(v for k, v in tally.items() if k != "received")


def store_rows(path: Path) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(path)) as conn, conn:
        return sorted(conn.execute("SELECT * FROM carecycle_sync_leads").fetchall())


def store_entries(sandbox: RunningSandbox, path: Path) -> int:
    store = SyncStore.open(str(path), Account.for_key(sandbox.url, sandbox.api_key))
    try:
        return store.count()
    finally:
        store.close()


@pytest.fixture
def secret_sandbox():
    with running_sandbox(SandboxConfig(api_keys=(SECRET_KEY,), rate_limit=0)) as sandbox:
        yield sandbox


def test_an_unchanged_rerun_sends_nothing_and_a_changed_lead_is_sent_alone(
    secret_sandbox, tmp_path
):
    sandbox = secret_sandbox
    store = tmp_path / "store" / "sync.sqlite"
    config = target_config(sandbox, sync_store=str(store))
    leads = distinctive_leads(450)

    first = run_target(tmp_path, config, lines(leads))
    assert counts(first)["succeeded"] == 450
    assert store_entries(sandbox, store) == 450
    requests_after_first = sandbox.stats()["upload_requests"]

    second = run_target(tmp_path, config, lines(leads))
    tally = counts(second)
    assert (tally["succeeded"], tally["unchanged"]) == (0, 450)
    assert_accounted(tally)
    assert sandbox.stats()["upload_requests"] == requests_after_first
    assert "unchanged 450" in second.stderr
    assert "0 upload requests" in second.stderr
    assert second.states[-1]["bookmarks"] == STATE["bookmarks"]

    leads[7]["lastName"] = "Changed"
    leads[300]["postalCode"] = "10001"
    third = run_target(tmp_path, config, lines(leads))
    tally = counts(third)
    assert (tally["succeeded"], tally["unchanged"]) == (2, 448)
    assert sandbox.stats()["leads_received"] == 452
    stored = {c["externalId"]: c for c in sandbox.customers()}
    assert stored["leads-7"]["lastName"] == "Changed"
    assert stored["leads-300"]["postalCode"] == "10001"

    # Nothing in the store or in what the target wrote gives the key or a lead away.
    raw = b"".join(p.read_bytes() for p in store.parent.iterdir())
    written = first.stderr + second.stderr + third.stderr + first.stdout
    assert SECRET_KEY.encode() not in raw and SECRET_KEY not in written
    for lead in leads[::37]:
        for name in ("externalId", "phoneNumber", "firstName", "email"):
            assert lead[name].encode() not in raw


def test_a_lead_careCycle_refused_is_sent_again_next_time(secret_sandbox, tmp_path):
    sandbox = secret_sandbox
    config = target_config(sandbox, sync_store=str(tmp_path / "s.sqlite"))
    leads = distinctive_leads(20)
    leads[4]["sourceId"] = "no-such-source"
    first = counts(run_target(tmp_path, config, lines(leads)))
    assert (first["succeeded"], first["failed"]) == (19, 1)
    received = sandbox.stats()["leads_received"]

    second = counts(run_target(tmp_path, config, lines(leads)))
    assert (second["unchanged"], second["failed"]) == (19, 1)
    assert sandbox.stats()["leads_received"] == received + 1

    leads[4].pop("sourceId")
    third = counts(run_target(tmp_path, config, lines(leads)))
    assert (third["unchanged"], third["succeeded"]) == (19, 1)
    fourth = counts(run_target(tmp_path, config, lines(leads)))
    assert fourth["unchanged"] == 20


def test_a_change_of_mapping_sends_the_affected_leads_again(secret_sandbox, tmp_path):
    sandbox = secret_sandbox
    config = target_config(sandbox, sync_store=str(tmp_path / "s.sqlite"))
    leads = distinctive_leads(30)
    assert counts(run_target(tmp_path, config, lines(leads)))["succeeded"] == 30
    # A mapping that fills firstName from another column changes every payload.
    config["streams"] = {"leads": {"fields": {"firstName": "lastName"}}}
    changed = run_target(tmp_path, config, lines(leads))
    tally = counts(changed)
    assert (tally["succeeded"], tally["unchanged"]) == (30, 0)
    assert counts(run_target(tmp_path, config, lines(leads)))["unchanged"] == 30


def test_skip_unchanged_false_sends_everything_and_still_records(secret_sandbox, tmp_path):
    sandbox = secret_sandbox
    store = tmp_path / "s.sqlite"
    config = target_config(sandbox, sync_store=str(store), skip_unchanged=False)
    leads = distinctive_leads(50)
    for _ in range(2):
        tally = counts(run_target(tmp_path, config, lines(leads)))
        assert (tally["succeeded"], tally["unchanged"]) == (50, 0)
    assert sandbox.stats()["leads_received"] == 100
    config["skip_unchanged"] = True
    assert counts(run_target(tmp_path, config, lines(leads)))["unchanged"] == 50


def test_a_dry_run_reads_the_store_but_never_writes_it(secret_sandbox, tmp_path):
    sandbox = secret_sandbox
    store = tmp_path / "state" / "s.sqlite"
    config = target_config(sandbox, sync_store=str(store))
    leads = distinctive_leads(40)

    before_any = run_target(tmp_path, {**config, "dry_run": True}, lines(leads))
    assert dry_counts(before_any)["would_send"] == 40
    assert not store.exists() and not store.parent.exists()

    counts(run_target(tmp_path, config, lines(leads)))
    rows = store_rows(store)
    received = sandbox.stats()["leads_received"]
    leads[0]["lastName"] = "Dryrun"
    leads[1]["lastName"] = "Dryrun"
    leads.extend(distinctive_leads(3, start=1000))
    dry = run_target(tmp_path, {**config, "dry_run": True}, lines(leads))
    tally = dry_counts(dry)
    assert (tally["would_send"], tally["unchanged"]) == (5, 38)
    assert "would send 5" in dry.stderr and "unchanged 38" in dry.stderr
    assert store_rows(store) == rows
    assert sandbox.stats()["leads_received"] == received


def test_a_dry_run_without_a_key_does_not_consult_the_store(tmp_path, monkeypatch):
    state = tmp_path / "xdg"
    monkeypatch.setenv("XDG_STATE_HOME", str(state))
    config = {"dry_run": True}
    run = run_target(tmp_path, config, lines(distinctive_leads(5)))
    tally = dry_counts(run)
    assert (tally["would_send"], tally["unchanged"]) == (5, 0)
    assert "sync store is not consulted" in run.stderr
    assert not state.exists()


def test_the_newest_version_always_lands_last(tmp_path):
    """Versions of one externalId in consecutive batches: the store is never compared stale.

    The store holds X for E; the input is A, X (the older, stored version), B, A. Every
    batch but the first differs from what careCycle then holds, so careCycle must end with A.
    """
    with running_sandbox(SandboxConfig(rate_limit=0, latency=0.2)) as sandbox:
        config = target_config(sandbox, sync_store=str(tmp_path / "s.sqlite"), batch_size_rows=2)
        base = distinctive_leads(1)[0]
        x = {**base, "lastName": "Xversion"}
        a = {**base, "lastName": "Aversion"}
        b = {**base, "lastName": "Bversion"}
        filler = distinctive_leads(7, start=10)
        counts(run_target(tmp_path, config, lines([x])))
        # batch size 2: each version of E shares a batch with one filler lead
        records = [a, filler[0], x, filler[1], b, filler[2], a, filler[3]]
        tally = counts(run_target(tmp_path, config, lines(records)))
        assert tally["succeeded"] == 8
        stored = {c["externalId"]: c for c in sandbox.customers()}
        assert stored[base["externalId"]]["lastName"] == "Aversion"

        # And the same input again: the first batch's A equals the stored A.
        tally = counts(run_target(tmp_path, config, lines(records)))
        stored = {c["externalId"]: c for c in sandbox.customers()}
        assert stored[base["externalId"]]["lastName"] == "Aversion"
        assert tally["unchanged"] >= 1


def table_keys(path: Path, table: str) -> set[bytes]:
    """The lead keys in one of the store's tables, read without opening it as a store."""
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
        return {bytes(row[0]) for row in conn.execute(f"SELECT lead_key FROM {table}")}


def wait_until(ready: Any, limit: float = 120) -> None:
    """Poll `ready()` until true (no assertion: the test checks what it needs)."""
    deadline = time.monotonic() + limit
    while not ready() and time.monotonic() < deadline:
        time.sleep(0.05)


@pytest.mark.slow
def test_kill_9_then_rerun_resends_only_what_the_store_does_not_vouch_for(tmp_path):
    """After kill -9 the store vouches only for leads careCycle holds, and every lead careCycle
    holds is either vouched for or still claimed (in flight, or acknowledged in the last
    second and not yet written); the re-run sends exactly the ones not vouched for."""
    total, batch, in_flight = 6000, 100, 2
    leads = distinctive_leads(total)
    store = tmp_path / "s.sqlite"
    with running_sandbox(SandboxConfig(rate_limit=0, latency=0.15)) as sandbox:
        config = target_config(
            sandbox,
            sync_store=str(store),
            batch_size_rows=batch,
            max_concurrent_requests=in_flight,
        )
        # stdin stays open without the final STATE: the run cannot finish on its own
        proc = start_target(tmp_path, config, lines(leads)[:-1], quiet=True)
        wait_until(lambda: store.exists() and len(table_keys(store, "carecycle_sync_leads")) > 0)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        assert proc.stdin is not None
        proc.stdin.close()
        wait_for_stats(sandbox, all_answered)  # requests already on the wire land

        account = Account.for_key(sandbox.url, sandbox.api_key)
        delivered = {account.lead_key(c["externalId"]) for c in sandbox.customers()}
        recorded = table_keys(store, "carecycle_sync_leads")
        claimed = table_keys(store, "carecycle_sync_claims")
        assert len(recorded) >= batch  # written while the run went on, not at its end
        assert recorded <= delivered  # never a lead careCycle does not hold
        assert delivered <= recorded | claimed  # the rest: claimed, so not vouched for
        assert len(delivered - recorded) < total // 2

        before = sandbox.stats()["leads_received"]
        tally = counts(run_target(tmp_path, config, lines(leads)))
        assert tally["unchanged"] == len(recorded)
        assert tally["succeeded"] == total - len(recorded)
        assert sandbox.stats()["leads_received"] - before == total - len(recorded)
        assert {c["externalId"] for c in sandbox.customers()} == {
            lead["externalId"] for lead in leads
        }


@pytest.mark.slow
def test_two_concurrent_runs_share_the_key_budget(tmp_path):
    """Against a strict limit (2 a second, no burst) two runs sharing a store stay within it.

    Each run alone paces to the whole limit; without the shared budget together they would
    send at twice the limit and about half their requests would be answered 429.
    """
    per_run, batch = 1000, 100
    sandbox_config = SandboxConfig(api_keys=(SECRET_KEY,), rate_limit=120, rate_burst=1)
    with running_sandbox(sandbox_config) as sandbox:
        store = tmp_path / "shared.sqlite"
        procs = []
        for n in range(2):
            config = target_config(
                sandbox,
                sync_store=str(store),
                max_requests_per_minute=120,
                batch_size_rows=batch,
            )
            config_path = tmp_path / f"run{n}.json"
            config_path.write_text(json.dumps(config))
            leads = distinctive_leads(per_run, start=n * per_run)
            input_path = tmp_path / f"run{n}.singer"
            input_path.write_text("\n".join(lines(leads)) + "\n")
            with input_path.open() as stdin:
                procs.append(
                    subprocess.Popen(
                        [TARGET_EXE, "--config", str(config_path)],
                        stdin=stdin,
                        stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE,
                        text=True,
                    )
                )
        outputs = [proc.communicate(timeout=300) for proc in procs]
        for proc, (_, stderr) in zip(procs, outputs, strict=True):
            assert proc.returncode == 0, stderr[-3000:]
        stats = sandbox.stats()
        assert stats["customers"] == 2 * per_run
        assert store_entries(sandbox, store) == 2 * per_run
        assert stats["requests"].get("200", 0) == 2 * per_run // batch
        # A request delayed on a busy machine by more than the 3% pacing margin can still
        # meet a 429 now and then; without the shared budget about half of them would.
        assert stats["requests"].get("429", 0) <= 3, stats["requests"]


# A store that cannot be used stops the run before anything is sent


def failing_run(tmp_path: Path, sandbox: RunningSandbox, sync_store: str, **extra) -> TargetRun:
    config = target_config(sandbox, sync_store=sync_store, **extra)
    run = run_target(tmp_path, config, lines(distinctive_leads(10)))
    assert run.returncode == 1
    assert sandbox.stats()["upload_requests"] == 0
    assert run.states == []
    assert "Traceback" not in run.stderr
    mentions = [
        line
        for line in run.stderr.splitlines()
        if "sync_store" in line and "Settings from" not in line  # not the settings line
    ]
    assert len(mentions) == 1, run.stderr
    assert SECRET_KEY not in run.stderr
    return run


def test_a_corrupt_store_stops_the_run(secret_sandbox, tmp_path):
    path = tmp_path / "s.sqlite"
    path.write_bytes(os.urandom(8192))
    run = failing_run(tmp_path, secret_sandbox, str(path))
    assert "not a usable SQLite database" in run.stderr


def test_a_store_of_a_newer_version_stops_the_run(secret_sandbox, tmp_path):
    path = tmp_path / "s.sqlite"
    SyncStore.open(str(path), Account.for_key("http://x", "k")).close()
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("UPDATE carecycle_sync_meta SET value = ?", (str(SCHEMA_VERSION + 5),))
    run = failing_run(tmp_path, secret_sandbox, str(path))
    assert "newer target-carecycle" in run.stderr
    run = failing_run(tmp_path, secret_sandbox, str(path), dry_run=True)
    assert "newer target-carecycle" in run.stderr


def test_a_store_locked_past_its_timeout_stops_the_run(secret_sandbox, tmp_path):
    path = tmp_path / "s.sqlite"
    SyncStore.open(str(path), Account.for_key("http://x", "k")).close()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        run = failing_run(tmp_path, secret_sandbox, f"sqlite:///{path}?timeout=1")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert "locked by another process for more than 1 s" in run.stderr


def test_an_unreachable_store_stops_the_run_without_showing_its_password(secret_sandbox, tmp_path):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"postgresql+psycopg://sync:Pg-Passw0rd-Sekr3t@127.0.0.1:{port}/sync?timeout=2"
    run = failing_run(tmp_path, secret_sandbox, url)
    assert f"cannot reach PostgreSQL database sync on 127.0.0.1:{port} as user sync" in run.stderr
    assert "Pg-Passw0rd-Sekr3t" not in run.stderr + run.stdout


def test_an_unsupported_store_url_is_a_config_error(secret_sandbox, tmp_path):
    run = failing_run(tmp_path, secret_sandbox, "mysql://u:My-Sekr3t@db/x")
    assert "invalid config" in run.stderr
    assert "My-Sekr3t" not in run.stderr


def test_an_unwritable_folder_stops_the_run(secret_sandbox, tmp_path):
    if os.geteuid() == 0:
        target = "/proc/target-carecycle/s.sqlite"  # root may write anywhere else
    else:
        locked = tmp_path / "ro"
        locked.mkdir(mode=0o500)
        target = str(locked / "sub" / "s.sqlite")
    run = failing_run(tmp_path, secret_sandbox, target)
    assert "cannot use SQLite file" in run.stderr


# Where the store lives by default, and turning it off


def test_the_default_store_lives_under_xdg_state_home(secret_sandbox, tmp_path, monkeypatch):
    state = tmp_path / "xdg"
    monkeypatch.setenv("XDG_STATE_HOME", str(state))
    config = target_config(secret_sandbox)
    leads = distinctive_leads(10)
    assert counts(run_target(tmp_path, config, lines(leads)))["succeeded"] == 10
    folder = state / "target-carecycle"
    assert (folder / "sync.sqlite").exists()
    assert oct(folder.stat().st_mode & 0o777) == "0o700"
    assert oct((folder / "sync.sqlite").stat().st_mode & 0o777) == "0o600"
    assert counts(run_target(tmp_path, config, lines(leads)))["unchanged"] == 10


def test_sync_store_off_sends_every_time_and_keeps_nothing(secret_sandbox, tmp_path, monkeypatch):
    state = tmp_path / "xdg"
    monkeypatch.setenv("XDG_STATE_HOME", str(state))
    config = target_config(secret_sandbox, sync_store="Off")
    leads = distinctive_leads(10)
    for _ in range(2):
        tally = counts(run_target(tmp_path, config, lines(leads)))
        assert (tally["succeeded"], tally["unchanged"]) == (10, 0)
    assert not state.exists()


def test_settings_come_from_the_environment(secret_sandbox, tmp_path):
    config = target_config(secret_sandbox)
    store = tmp_path / "env-store.sqlite"
    leads = distinctive_leads(5)
    env = {"TARGET_CARECYCLE_SYNC_STORE": str(store)}
    config_path = tmp_path / "env.json"
    config_path.write_text(json.dumps(config))
    done = subprocess.run(
        [TARGET_EXE, "--config", str(config_path), "--config", "ENV"],
        input="\n".join(lines(leads)) + "\n",
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert store.exists()


def test_a_lead_whose_delivery_is_uncertain_is_sent_again_next_time(tmp_path):
    """A' times out (careCycle stores it later); a later run reading A again must send it:
    the store dropped A's entry before A' went out, so it never claims careCycle holds A."""
    store = tmp_path / "store.sqlite"
    lead_a = distinctive_leads(1)[0]
    lead_a2 = {**lead_a, "firstName": "Qchanged"}
    stalls = SandboxConfig(rate_limit=0, fault="stall", fault_every=2, stall_seconds=3)
    with running_sandbox(stalls) as sandbox:
        config = target_config(sandbox, sync_store=str(store), max_retries=0)
        assert counts(run_target(tmp_path, config, lines([lead_a])))["succeeded"] == 1
        timing_out = run_target(tmp_path, {**config, "request_timeout": 1}, lines([lead_a2]))
        assert timing_out.returncode == 1 and timing_out.states == []
        deadline = time.monotonic() + 60  # the stalled request lands in careCycle later
        while sandbox.customers()[0]["firstName"] != "Qchanged" and time.monotonic() < deadline:
            time.sleep(0.1)
        third = run_target(tmp_path, config, lines([lead_a]))
        assert counts(third)["succeeded"] == 1 and counts(third)["unchanged"] == 0
        assert sandbox.customers()[0]["firstName"] == lead_a["firstName"]


class _UnmatchedErrorsHandler(BaseHTTPRequestHandler):
    """careCycle answering 200 with one error that names no externalId, and no results."""

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        records = json.loads(self.rfile.read(length))["records"]
        self.server.requests += 1  # type: ignore[attr-defined]
        body = {
            "succeeded": len(records) - 1,
            "failed": 1,
            "results": [],
            "errors": [{"id": None, "externalId": None, "error": "Source not found"}],
        }
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        del args


def test_leads_careCycle_did_not_confirm_are_not_remembered(tmp_path):
    """An error matching no externalId: nobody knows which lead failed, so none is skipped."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _UnmatchedErrorsHandler)
    server.requests = 0  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        config = {"api_url": url, "api_key": SECRET_KEY, "sync_store": str(tmp_path / "s.db")}
        leads = distinctive_leads(3)
        first = run_target(tmp_path, config, lines(leads))
        second = run_target(tmp_path, config, lines(leads))
    finally:
        server.shutdown()
        server.server_close()
    assert counts(first)["succeeded"] == 3
    assert counts(second)["unchanged"] == 0
    assert server.requests == 2  # type: ignore[attr-defined]
    assert "match no externalId sent" in first.stderr
