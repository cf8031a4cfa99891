"""The sync store's truth rule on PostgreSQL: several runs, faults and kill -9 on one database
(the torture of tests/store_torture.py), and a lock another session holds."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from store_runs import (
    WAITING_FOR_LOCK,
    StderrWatch,
    close_pipes,
    counts,
    distinctive_leads,
    lines,
    summary_counts,
    wait_until,
)
from store_torture import torture
from target_runner import TargetRun, run_target, start_target, stop_line, target_config

from target_carecycle.sandbox import RunningSandbox, SandboxConfig, running_sandbox

SECRET_KEY = "cc_pg_truth_secret_0123456789"


def plain(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


def pg_digests(url: str) -> dict[bytes, bytes]:
    with psycopg.connect(plain(url)) as conn:
        rows = conn.execute("SELECT lead_key, payload_hash FROM carecycle_sync_leads").fetchall()
    return {bytes(key): bytes(digest) for key, digest in rows}


def test_concurrent_runs_faults_and_kill_9_never_make_the_postgresql_store_lie(
    store_url: str, tmp_path: Path
) -> None:
    torture(tmp_path, store_url, seed=1919, digests=lambda: pg_digests(store_url))


@pytest.fixture
def sandbox() -> Iterator[RunningSandbox]:
    with running_sandbox(SandboxConfig(api_keys=(SECRET_KEY,), rate_limit=0)) as running:
        yield running


def changed_run_under_a_held_lock(
    tmp_path: Path, sandbox: RunningSandbox, url: str
) -> tuple[subprocess.Popen[str], StderrWatch, psycopg.Connection[Any]]:
    """200 leads recorded; a second run with changed versions has opened the store; another
    session holds a lock that keeps it from claiming them (SHARE: reads go on)."""
    config = target_config(sandbox, sync_store=url)
    leads = distinctive_leads(200)
    assert counts(run_target(tmp_path, config, lines(leads)))["succeeded"] == 200
    changed = [{**lead, "lastName": "Changed"} for lead in leads]
    proc = start_target(tmp_path, config, lines(changed)[:1])
    assert proc.stderr is not None and proc.stdin is not None
    watch = StderrWatch(proc.stderr)
    wait_until(lambda: watch.saw("Sync store:") or proc.poll() is not None)
    holder = psycopg.connect(plain(url.split("?")[0]))
    holder.execute("LOCK TABLE carecycle_sync_claims IN SHARE MODE")
    proc.stdin.write("".join(line + "\n" for line in lines(changed)[1:]))
    proc.stdin.flush()
    return proc, watch, holder


def test_a_postgresql_lock_held_past_the_timeout_leaves_the_batch_unsent(
    store_url: str, sandbox: RunningSandbox, tmp_path: Path
) -> None:
    proc, watch, holder = changed_run_under_a_held_lock(tmp_path, sandbox, store_url + "?timeout=1")
    try:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(timeout=120)
    finally:
        holder.rollback()
        holder.close()
    run = TargetRun(proc.returncode, close_pipes(proc), watch.text)
    assert run.returncode == 1, run.stderr[-3000:]
    assert run.states == []
    line = stop_line(run.stderr)
    assert "sync_store" in line and "locked by another process for more than 1 s" in line
    assert "Pg-Store-Sekr3t" not in run.stderr
    tally = summary_counts(run.stderr)
    assert tally["received"] == 200 == tally["not sent (run stopped)"]
    assert sandbox.stats()["upload_requests"] == 1  # the first run's; none of the second


def test_sigterm_while_another_session_holds_a_postgresql_lock_ends_the_run_at_once(
    store_url: str, sandbox: RunningSandbox, tmp_path: Path
) -> None:
    proc, watch, holder = changed_run_under_a_held_lock(
        tmp_path, sandbox, store_url + "?timeout=3600"
    )
    try:
        wait_until(lambda: watch.saw(WAITING_FOR_LOCK))
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)  # a bound, not a measurement: the lock is held for an hour
        assert holder.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
    finally:
        holder.rollback()
        holder.close()
    assert close_pipes(proc).strip() == ""  # no STATE
    assert proc.returncode == 128 + signal.SIGTERM, watch.text[-2000:]
    tally = summary_counts(watch.text)
    assert tally["received"] == 200 == tally["not sent (run stopped)"]
    assert "Traceback" not in watch.text
