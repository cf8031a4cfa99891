"""The sync store never lies (issue 19): it holds a digest for a lead only when a run knew
careCycle applied exactly that version last.

Each case that broke the rule before has a test here, with real parts: the target executable,
the sandbox over HTTP, a SQLite store, a second process holding the store's lock, a full disk,
and strace watching what reaches the disk before a request leaves. No timed assertions.
"""

from __future__ import annotations

import json
import resource
import shutil
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from store_runs import (
    CLAIMS_TABLE,
    LEADS_TABLE,
    WAITING_FOR_LOCK,
    LockHolder,
    StderrWatch,
    applied_last,
    assert_accounted,
    assert_store_tells_the_truth,
    close_pipes,
    counts,
    distinctive_leads,
    lines,
    stored_digests,
    summary_counts,
    table_keys,
    wait_until,
)
from target_runner import (
    TARGET_EXE,
    TargetRun,
    all_answered,
    run_target,
    start_target,
    stop_line,
    target_config,
    wait_for_stats,
)

from target_carecycle.sandbox import RunningSandbox, SandboxConfig, running_sandbox
from target_carecycle.store import Account, SyncStore

SECRET_KEY = "cc_sync_truth_test_secret_0123456789"


@pytest.fixture
def sandbox() -> Iterator[RunningSandbox]:
    with running_sandbox(SandboxConfig(api_keys=(SECRET_KEY,), rate_limit=0)) as running:
        yield running


def folder(tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    path.mkdir(exist_ok=True)
    return path


def doubt_until(store: Path) -> float:
    with closing(sqlite3.connect(f"file:{store}?mode=ro", uri=True)) as conn:
        found = conn.execute("SELECT max(doubt_until) FROM carecycle_sync_claims").fetchone()
    return float(found[0] or 0)


def held_by_careCycle(sandbox: RunningSandbox) -> dict[str, dict[str, Any]]:
    return {c["externalId"]: c for c in sandbox.customers()}


# 1. Two runs on one store: a late acknowledgement never overrides another run's version


@pytest.mark.slow
def test_a_late_acknowledgement_never_vouches_for_a_version_careCycle_no_longer_holds(
    sandbox, tmp_path
):
    """Run A's batch is answered while A's main thread waits for the tap's next line; run B
    then sends a newer version of the same leads. The store must not end up claiming that
    careCycle holds A's version (before: A wrote its acknowledgement when it next looked, after
    B's, and a later run with A's data skipped all 200 leads)."""
    store = tmp_path / "shared.sqlite"
    # request_timeout 1 s: a doubt (B may have met A's claim) lasts 10 s
    config = target_config(sandbox, sync_store=str(store), batch_size_rows=200, request_timeout=1)
    older = distinctive_leads(200)
    newer = [{**lead, "lastName": "Newer"} for lead in older]
    run_a = start_target(folder(tmp_path, "a"), config, lines(older)[:-1])  # no STATE yet
    wait_for_stats(sandbox, lambda stats: stats["requests"].get("200", 0) >= 1)

    run_b = run_target(folder(tmp_path, "b"), config, lines(newer))
    assert counts(run_b)["succeeded"] == 200
    assert run_a.stdin is not None
    run_a.stdin.write(lines(older)[-1] + "\n")
    _, stderr_a = run_a.communicate(timeout=120)
    assert run_a.returncode == 0, stderr_a[-2000:]
    assert {c["lastName"] for c in sandbox.customers()} == {"Newer"}

    run_c = run_target(folder(tmp_path, "c"), config, lines(older))
    tally = counts(run_c)
    assert (tally["unchanged"], tally["succeeded"]) == (0, 200)
    assert "Newer" not in {c["lastName"] for c in sandbox.customers()}
    # Once any doubt is over the store catches up: a run records what is left, the next
    # sends nothing.
    wait_until(lambda: time.time() > doubt_until(store))
    counts(run_target(folder(tmp_path, "d"), config, lines(older)))
    assert counts(run_target(folder(tmp_path, "e"), config, lines(older)))["unchanged"] == 200


# 2. A request careCycle applies after the client gave up on it


@pytest.mark.slow
def test_a_lead_whose_request_was_applied_late_is_not_recorded_in_that_run(sandbox, tmp_path):
    """A2's first request is held by careCycle past the client's timeout; the retry and then
    A3 are answered; then careCycle applies the held A2, last. The run must not record A3
    (before: it did, and the next run with A3 skipped the lead while careCycle held A2)."""
    store = tmp_path / "s.sqlite"
    config = target_config(
        sandbox,
        sync_store=str(store),
        batch_size_rows=1,
        max_concurrent_requests=1,
        request_timeout=1,
        max_retries=3,
    )
    a1 = distinctive_leads(1)[0]
    a2, a3 = {**a1, "lastName": "Second"}, {**a1, "lastName": "Third"}
    assert counts(run_target(tmp_path, config, lines([a1])))["succeeded"] == 1

    sandbox.set_faults("hold", every=1, stall_seconds=120, times=1)  # the next request only
    second = run_target(tmp_path, config, lines([a2, a3]))
    assert counts(second)["succeeded"] == 2
    assert held_by_careCycle(sandbox)[a1["externalId"]]["lastName"] == "Third"
    sandbox.release_held()
    wait_for_stats(sandbox, all_answered)
    assert held_by_careCycle(sandbox)[a1["externalId"]]["lastName"] == "Second"  # applied late

    assert table_keys(store, LEADS_TABLE) == set()  # nothing vouched for
    assert len(table_keys(store, CLAIMS_TABLE)) == 1  # a doubt: its fate was unknown
    third = counts(run_target(tmp_path, config, lines([a3])))
    assert (third["unchanged"], third["succeeded"]) == (0, 1)
    assert held_by_careCycle(sandbox)[a1["externalId"]]["lastName"] == "Third"
    assert table_keys(store, LEADS_TABLE) == set()  # the doubt lasts 10 request timeouts
    wait_until(lambda: time.time() > doubt_until(store))
    # Once the doubt is over the next run records the lead; the one after sends nothing.
    assert counts(run_target(tmp_path, config, lines([a3])))["succeeded"] == 1
    assert counts(run_target(tmp_path, config, lines([a3])))["unchanged"] == 1


# 3. A power cut: what is on disk before a request leaves


def strace_works() -> bool:
    if shutil.which("strace") is None:
        return False
    probe = subprocess.run(["strace", "-f", "-o", "/dev/null", "true"], check=False)
    return probe.returncode == 0


@pytest.mark.skipif(not strace_works(), reason="strace is not installed or may not trace here")
def test_a_dropped_digest_is_on_disk_before_the_request_leaves(sandbox, tmp_path):
    """What survives a power cut is what was synced to disk. When a changed lead is sent, the
    store's drop of its old digest is written to SQLite's log by the main thread; that write
    must be synced (fsync or fdatasync of the log) before the request goes out (before: the
    drop was committed with synchronous=NORMAL, and after a power cut 600 of 2,000 changed
    leads were skipped while careCycle held their new versions). strace sees the system calls
    of the real target."""
    store = tmp_path / "s.sqlite"
    config = target_config(sandbox, sync_store=str(store))
    leads = distinctive_leads(20)
    assert counts(run_target(tmp_path, config, lines(leads)))["succeeded"] == 20
    for lead in leads[:5]:
        lead["lastName"] = "Changed"

    trace = tmp_path / "strace.log"
    (tmp_path / "traced.json").write_text(json.dumps(config))
    traced = ["strace", "-f", "-y", "-s", "48", "-o", str(trace)]
    traced += ["-e", "trace=pwrite64,write,fsync,fdatasync,sendto"]
    done = subprocess.run(
        [*traced, TARGET_EXE, "--config", str(tmp_path / "traced.json")],
        input="\n".join(lines(leads)) + "\n",
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    events = trace.read_text().splitlines()
    main = events[0].split()[0]  # the first line is the main thread's (the exec)
    send = next(i for i, e in enumerate(events) if "sendto(" in e and "POST /v2/leads" in e)
    log_writes = [
        i
        for i, e in enumerate(events[:send])
        if e.startswith(main + " ") and "write" in e and "-wal>" in e.split(",")[0]
    ]
    assert log_writes, "the drop of the changed leads' digests never reached the log"
    synced = [
        e
        for e in events[log_writes[-1] : send]
        if ("fsync(" in e or "fdatasync(" in e) and "-wal>" in e
    ]
    assert synced, "the log holding the drop was not synced before the request left"
    assert held_by_careCycle(sandbox)[leads[0]["externalId"]]["lastName"] == "Changed"


# 4. The store fails at any step: every lead keeps exactly one outcome


def start_with_store_open(
    tmp_path: Path, config: dict[str, Any]
) -> tuple[subprocess.Popen[str], StderrWatch]:
    """Start the target on a SCHEMA line and wait until it has opened its store."""
    proc = start_target(tmp_path, config, lines([])[:1])
    assert proc.stderr is not None
    watch = StderrWatch(proc.stderr)
    wait_until(lambda: watch.saw("Sync store:") or proc.poll() is not None)
    return proc, watch


def finish(proc: subprocess.Popen[str], watch: StderrWatch, more: list[str]) -> TargetRun:
    assert proc.stdin is not None
    if not proc.stdin.closed:
        proc.stdin.write("".join(line + "\n" for line in more))
        proc.stdin.close()
    assert proc.stdout is not None
    with proc.stdout:
        stdout = proc.stdout.read()
    proc.wait(timeout=120)
    return TargetRun(proc.returncode, stdout, watch.text)


def assert_stopped_by_the_store(run: TargetRun, received: int | None = None) -> dict[str, int]:
    """Exit 1, one line naming sync_store, no STATE, no traceback, every lead one outcome."""
    assert run.returncode == 1, run.stderr[-3000:]
    assert run.states == []
    assert "Traceback" not in run.stderr
    assert "sync_store" in stop_line(run.stderr)
    tally = summary_counts(run.stderr)
    if received is not None:
        assert tally["received"] == received
    assert tally["received"] == sum(v for k, v in tally.items() if k != "received")
    assert SECRET_KEY not in run.stderr
    return tally


def test_a_store_locked_when_a_changed_batch_is_claimed_leaves_its_leads_unsent(sandbox, tmp_path):
    """Before: the batch left the waiting list, the drop of its old entries failed, and its
    200 leads had no outcome at all (received 200, every outcome 0)."""
    store = tmp_path / "s.sqlite"
    config = target_config(sandbox, sync_store=f"sqlite:///{store}?timeout=1")
    leads = distinctive_leads(200)
    assert counts(run_target(tmp_path, config, lines(leads)))["succeeded"] == 200
    requests = sandbox.stats()["upload_requests"]
    changed = [{**lead, "lastName": "Changed"} for lead in leads]

    proc, watch = start_with_store_open(tmp_path, config)
    with LockHolder(store):
        run = finish(proc, watch, lines(changed)[1:])
    tally = assert_stopped_by_the_store(run, 200)
    assert tally["not sent (run stopped)"] == 200
    assert "locked by another process for more than 1 s" in run.stderr
    assert sandbox.stats()["upload_requests"] == requests


def test_a_store_locked_when_acknowledgements_are_written_fails_the_run_loudly(sandbox, tmp_path):
    """The leads were delivered (succeeded), but the store could not record them: the run
    fails with one line and no STATE, and the next run sends them again."""
    store = tmp_path / "s.sqlite"
    config = target_config(sandbox, sync_store=f"sqlite:///{store}?timeout=1", request_timeout=60)
    leads = distinctive_leads(150)
    sandbox.set_faults("hold", every=1, stall_seconds=60, times=1)
    proc = start_target(tmp_path, config, lines(leads))
    assert proc.stderr is not None and proc.stdin is not None
    watch = StderrWatch(proc.stderr)
    proc.stdin.close()  # end of input: the batch goes, and careCycle holds it
    wait_for_stats(sandbox, lambda stats: stats["upload_requests"] >= 1)
    with LockHolder(store):
        sandbox.release_held()
        run = finish(proc, watch, [])
    tally = assert_stopped_by_the_store(run, 150)
    assert tally["succeeded"] == 150
    assert table_keys(store, LEADS_TABLE) == set()
    again = counts(run_target(tmp_path, config, lines(leads)))
    assert again["succeeded"] == 150


def full_disk(tmp_path: Path) -> tuple[Path, Any]:
    """A folder on a 192 KiB tmpfs when this process may mount one; else None and a limit
    on the size of files the target may write (RLIMIT_FSIZE), which fails writes alike."""
    mount = tmp_path / "small"
    mount.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=192k,mode=0700", "tmpfs", str(mount)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode == 0:
        return mount, None

    def limit_file_size() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write fails instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (160 * 1024, 160 * 1024))

    return mount, limit_file_size


def test_a_full_disk_stops_the_run_with_every_lead_accounted_for(sandbox, tmp_path):
    where, limit = full_disk(tmp_path)
    try:
        store = where / "s.sqlite"
        config_path = tmp_path / "full.json"
        config_path.write_text(json.dumps(target_config(sandbox, sync_store=str(store))))
        leads = distinctive_leads(3000)
        done = subprocess.run(
            [TARGET_EXE, "--config", str(config_path)],
            input="\n".join(lines(leads)) + "\n",
            capture_output=True,
            text=True,
            timeout=180,
            preexec_fn=limit,
            check=False,
        )
        run = TargetRun(done.returncode, done.stdout, done.stderr)
        tally = assert_stopped_by_the_store(run)  # it stops reading at the failure
        assert "disk" in run.stderr.lower() or "full" in run.stderr.lower()
        assert tally["succeeded"] <= sandbox.stats()["created"]
    finally:
        if limit is None:
            subprocess.run(["umount", "-l", str(where)], check=False)


# A stop signal acts at once while another process holds the store's lock


def test_sigterm_while_the_store_is_locked_at_open_ends_the_run_at_once(sandbox, tmp_path):
    store = tmp_path / "s.sqlite"
    SyncStore.open(str(store), Account.for_key(sandbox.url, SECRET_KEY)).close()
    config = target_config(sandbox, sync_store=f"sqlite:///{store}?timeout=3600")
    with LockHolder(store) as holder:
        proc = start_target(tmp_path, config, lines(distinctive_leads(10)))
        assert proc.stderr is not None
        watch = StderrWatch(proc.stderr)
        wait_until(lambda: watch.saw(WAITING_FOR_LOCK))
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)  # a bound, not a measurement: the holder lets go only later
        assert holder.holding
    close_pipes(proc)
    assert proc.returncode == 128 + signal.SIGTERM, watch.text[-2000:]
    assert "Traceback" not in watch.text
    assert sandbox.stats()["upload_requests"] == 0


def test_sigterm_while_the_store_is_locked_mid_run_ends_the_run_at_once(sandbox, tmp_path):
    store = tmp_path / "s.sqlite"
    config = target_config(sandbox, sync_store=f"sqlite:///{store}?timeout=3600")
    leads = distinctive_leads(200)
    assert counts(run_target(tmp_path, config, lines(leads)))["succeeded"] == 200
    changed = [{**lead, "lastName": "Changed"} for lead in leads]

    proc, watch = start_with_store_open(tmp_path, config)
    with LockHolder(store) as holder:
        assert proc.stdin is not None
        proc.stdin.write("".join(line + "\n" for line in lines(changed)[1:]))
        proc.stdin.flush()
        wait_until(lambda: watch.saw(WAITING_FOR_LOCK))
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)  # a bound, not a measurement
        assert holder.holding
    assert close_pipes(proc).strip() == ""  # no STATE
    assert proc.returncode == 128 + signal.SIGTERM, watch.text[-2000:]
    tally = summary_counts(watch.text)
    assert tally["received"] == 200 == tally["not sent (run stopped)"]
    assert "Traceback" not in watch.text
    assert_accounted({"received": tally["received"], "unsent": tally["not sent (run stopped)"]})


@pytest.mark.slow
def test_overlapping_runs_of_the_same_leads_leave_only_true_digests(tmp_path):
    """Two runs with different versions of the same 400 leads (in opposite orders), started
    together, three times: whatever the store vouches for is what careCycle applied last."""
    ledger = tmp_path / "ledger.jsonl"
    sandbox_config = SandboxConfig(
        api_keys=(SECRET_KEY,), rate_limit=0, latency=0.02, ledger=ledger
    )
    with running_sandbox(sandbox_config) as sandbox:
        store = tmp_path / "s.sqlite"
        config = target_config(sandbox, sync_store=str(store), batch_size_rows=50)
        account = Account.for_key(sandbox.url, SECRET_KEY)
        base = distinctive_leads(400)
        for round_number in range(3):
            procs = []
            for name in ("x", "y"):
                version = [{**lead, "lastName": f"R{round_number}{name}"} for lead in base]
                if name == "y":
                    version.reverse()
                where = folder(tmp_path, f"{name}{round_number}")
                procs.append(start_target(where, config, lines(version)))
            for proc in procs:
                _, stderr = proc.communicate(timeout=180)
                assert proc.returncode == 0, stderr[-2000:]
            assert_store_tells_the_truth(stored_digests(store), applied_last(ledger, account))
