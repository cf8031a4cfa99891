"""A concurrency torture of the sync store, shared by the SQLite test (fast tier) and the
PostgreSQL one (pipelines tier).

Several target processes on one store send random versions of overlapping leads to one
sandbox, with random latency, requests careCycle holds past the client's timeout and applies
late, runs that give up (retries used up) and runs killed with -9 at random points. After each
round, once every request has landed, the store may vouch only for what careCycle applied
last. Then a quiet run of version V, and runs of V until one sends nothing: careCycle holds V
for every lead, and only the leads claimed by runs that died or gave up cost an extra run.
Every run that exits reports received = the sum of its outcomes. Deterministic seeds (the
inputs, settings, faults and kill points; the interleaving is the machine's), no timed
assertions, bounded: rounds finish when their processes do.
"""

from __future__ import annotations

import random
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from store_runs import (
    applied_last,
    assert_store_tells_the_truth,
    distinctive_leads,
    lines,
    summary_counts,
    wait_until,
)
from target_runner import TargetRun, all_answered, start_target, target_config, wait_for_stats

from target_carecycle.sandbox import RunningSandbox, SandboxConfig, running_sandbox
from target_carecycle.store import Account

TORTURE_KEY = "cc_torture_secret_key_0123456789"
REQUEST_TIMEOUT = 1  # so a doubt lasts DOUBT_TIMEOUTS x 1 s
HOLD_SECONDS = 3.0


@dataclass
class Runner:
    name: str
    proc: subprocess.Popen[str]
    kill_at: int | None  # kill -9 once the sandbox has seen this many upload requests
    stderr: str = ""
    stdout: str = ""
    killed: bool = False


def version_of(lead: dict[str, Any], tag: str) -> dict[str, Any]:
    return {**lead, "lastName": f"T{tag}"}


def runner_input(rng: random.Random, base: list[dict[str, Any]], tag: str) -> list[dict[str, Any]]:
    """An overlapping subset in random order, some leads twice (an older version first)."""
    chosen = rng.sample(base, k=rng.randint(len(base) // 2, len(base)))
    records = [version_of(lead, f"{tag}v{rng.randrange(3)}") for lead in chosen]
    for lead in rng.sample(chosen, k=len(chosen) // 10):
        records.insert(rng.randrange(len(records) + 1), version_of(lead, f"{tag}old"))
    return records


def assert_run_accounted(runner: Runner) -> None:
    """A run that exited (0, 1 or a signal) says received = the sum of its outcomes."""
    assert "Traceback" not in runner.stderr, runner.stderr[-2000:]
    if runner.proc.returncode == 0:
        tally = TargetRun(0, runner.stdout, runner.stderr).states[-1]["target_carecycle"]["leads"]
    else:
        assert runner.proc.returncode == 1, runner.stderr[-2000:]
        tally = summary_counts(runner.stderr)
    assert tally["received"] == sum(v for k, v in tally.items() if k != "received"), tally


def kill_at_random_point(sandbox: RunningSandbox, runner: Runner, requests: int) -> None:
    """kill -9 once the sandbox has seen `requests` upload requests (if still running)."""
    wait_until(
        lambda: sandbox.stats()["upload_requests"] >= requests or runner.proc.poll() is not None
    )
    if runner.proc.poll() is None:
        runner.proc.send_signal(signal.SIGKILL)
        runner.killed = True


def run_round(
    rng: random.Random,
    sandbox: RunningSandbox,
    workdir: Path,
    sync_store: str,
    base: list[dict[str, Any]],
    round_number: int,
    runners: int,
) -> None:
    # careCycle holds some requests past the client's timeout (1 s) and applies them up to
    # HOLD_SECONDS later, inside the doubt the run (or the next to claim the lead) records.
    sandbox.set_faults("hold", every=rng.choice([6, 9, 13]), stall_seconds=HOLD_SECONDS, times=3)
    started = sandbox.stats()["upload_requests"]
    procs: list[Runner] = []
    for number in range(runners):
        name = f"r{round_number}n{number}"
        config = target_config(
            sandbox,
            sync_store=sync_store,
            batch_size_rows=rng.choice([10, 25, 60]),
            max_concurrent_requests=rng.choice([1, 2, 4]),
            request_timeout=REQUEST_TIMEOUT,
            max_retries=rng.choice([0, 2, 3]),
        )
        folder = workdir / name
        folder.mkdir()
        proc = start_target(folder, config, lines(runner_input(rng, base, name)))
        kill_at = started + rng.randint(2, 30) if rng.random() < 0.4 else None
        procs.append(Runner(name, proc, kill_at))
    for runner in procs:
        if runner.kill_at is not None:
            kill_at_random_point(sandbox, runner, runner.kill_at)
    for runner in procs:
        runner.stdout, runner.stderr = runner.proc.communicate(timeout=300)
        if not runner.killed:
            assert_run_accounted(runner)
    sandbox.set_faults(None)
    wait_for_stats(sandbox, all_answered)  # what careCycle held has landed


def store_query(sync_store: str, path: Path | None, sql: str) -> Any:
    """One value from the store, read as a person inspecting it would."""
    if path is not None:
        with closing(sqlite3.connect(path)) as conn:
            return conn.execute(sql).fetchone()[0]
    import psycopg

    with psycopg.connect(sync_store.replace("postgresql+psycopg://", "postgresql://")) as conn:
        found = conn.execute(sql).fetchone()
    assert found is not None
    return found[0]


def claimed_leads(sync_store: str, path: Path | None, *, owned: bool = False) -> int:
    """How many leads the store holds claims or doubts on (`owned`: claims of a run only)."""
    sql = "SELECT count(*) FROM carecycle_sync_claims"
    if owned:
        sql += " WHERE batch > 0"  # a doubt belongs to no run and to batch 0
    return int(store_query(sync_store, path, sql))


def wait_for_doubts_to_expire(sync_store: str, path: Path | None) -> None:
    """Wait (no assertion) until no doubt is in force: the store's clock passes the last."""
    until = store_query(sync_store, path, "SELECT max(doubt_until) FROM carecycle_sync_claims")
    if until is None:
        return
    if path is not None:
        wait_until(lambda: time.time() > float(until), limit=120)
        return
    now = "SELECT extract(epoch FROM clock_timestamp())"
    wait_until(lambda: float(store_query(sync_store, path, now)) > float(until), limit=120)


def quiet_run(
    sandbox: RunningSandbox, workdir: Path, name: str, sync_store: str, leads: list[dict[str, Any]]
) -> dict[str, int]:
    folder = workdir / name
    folder.mkdir()
    config = target_config(sandbox, sync_store=sync_store, request_timeout=REQUEST_TIMEOUT)
    proc = start_target(folder, config, lines(leads))
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr[-3000:]
    tally: dict[str, int] = TargetRun(0, stdout, stderr).states[-1]["target_carecycle"]["leads"]
    assert tally["received"] == sum(v for k, v in tally.items() if k != "received")
    return tally


def torture(
    workdir: Path,
    sync_store: str,
    *,
    seed: int,
    sqlite_path: Path | None = None,
    leads: int = 240,
    rounds: int = 3,
    runners: int = 4,
    digests: Callable[[], dict[bytes, bytes]],
) -> None:
    """The whole torture; `digests()` reads what the store vouches for (lead_key -> digest)."""
    rng = random.Random(seed)
    ledger = workdir / "ledger.jsonl"
    config = SandboxConfig(api_keys=(TORTURE_KEY,), rate_limit=0, latency=0.02, ledger=ledger)
    with running_sandbox(config) as sandbox:
        account = Account.for_key(sandbox.url, TORTURE_KEY)
        base = distinctive_leads(leads)
        for round_number in range(rounds):
            run_round(rng, sandbox, workdir, sync_store, base, round_number, runners)
            assert_store_tells_the_truth(digests(), applied_last(ledger, account))

        final = [version_of(lead, "final") for lead in base]
        # Doubts end; the claims of runs that died or gave up stay until the lead is sent.
        wait_for_doubts_to_expire(sync_store, sqlite_path)
        left_claims = claimed_leads(sync_store, sqlite_path, owned=True)
        first = quiet_run(sandbox, workdir, "final-1", sync_store, final)
        assert first["succeeded"] + first["unchanged"] == leads
        held = {c["externalId"]: c["lastName"] for c in sandbox.customers()}
        assert held == {lead["externalId"]: "Tfinal" for lead in base}
        assert_store_tells_the_truth(digests(), applied_last(ledger, account))

        # The leads that runs which died or gave up had claimed are not recorded by the next
        # run (its answer may have come before theirs landed), nor by any run while the doubt
        # lasts (DOUBT_TIMEOUTS request timeouts): once it is over, one more run records them.
        assert claimed_leads(sync_store, sqlite_path, owned=True) == 0
        wait_for_doubts_to_expire(sync_store, sqlite_path)
        second = quiet_run(sandbox, workdir, "final-2", sync_store, final)
        assert second["succeeded"] == left_claims
        assert claimed_leads(sync_store, sqlite_path) == 0
        third = quiet_run(sandbox, workdir, "final-3", sync_store, final)
        assert (third["succeeded"], third["unchanged"]) == (0, leads)
        assert_store_tells_the_truth(digests(), applied_last(ledger, account))
