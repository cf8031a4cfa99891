"""What do the run history and the sync log cost, and how fast is the report? (issue 17)

Runs the real ``target-carecycle`` executable against a ``carecycle-sandbox`` process on
127.0.0.1 (no rate limit), each run with a fresh SQLite store (a first run: every lead is
sent and recorded). Three variants, alternated, best of ``--repeats`` each:

* history off: the same code with ``CARECYCLE_BENCHMARK_NO_HISTORY=1`` (the baseline);
* history: the default (one run row at the start, the counts at the end);
* history + sync log: ``sync_log: true`` (one row per record, written 5,000 at a time).

Ratios history / baseline and sync log / baseline (goal: at most 1.10).

Then the report: a store with 100 runs of 100,000 leads each (2% refused, spread over 12
reasons; 3 streams), whose sync log holds every record of the newest 10 runs (1,000,000 rows)
and the refused records of all 100 (200,000 rows), written directly; then the real
``carecycle-report`` executable renders it as text, json, csv and html (wall time of each,
goal: seconds).

Usage (about 3-5 minutes on 2 cores; ``--quick``: 20k leads, 30 runs of 20k):

    .venv/bin/python benchmarks/bench_history.py [--quick] [--repeats N] [--json FILE]

Figures: docs/performance.md, section "Run history and sync log".
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sqlite3
import subprocess
import sys
import tempfile
import time
from contextlib import closing
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from bench_target import Bench, Run, sandbox

from target_carecycle.history import BENCHMARK_SWITCH
from target_carecycle.report import COUNT_KEYS
from target_carecycle.sandbox import DEFAULT_API_KEY
from target_carecycle.store import Account, SyncStore

REPORT_CMD = [str(Path(sys.executable).parent / "carecycle-report")]
GOAL = 1.10
FAST = {"max_requests_per_minute": 600_000}
API_URL = "https://api.carecycle.ai"
REASONS = [f"careCycle: reason number {n}" for n in range(6)] + [
    f"phoneNumber: not a valid US phone number ({n})" for n in range(6)
]
SQLITE_TIME = "%Y-%m-%d %H:%M:%S.%f"


def say(text: str = "") -> None:
    print(text, flush=True)


def first_runs(workdir: Path, leads: int, repeats: int) -> dict[str, Any]:
    """Best-of-`repeats` first runs of each variant, alternated."""
    bench = Bench(workdir / "runs")
    bench.workdir.mkdir()
    variants: dict[str, tuple[dict[str, Any], bool]] = {
        "history off": ({}, True),
        "history": ({}, False),
        "history + sync log": ({"sync_log": True}, False),
    }
    best: dict[str, Run] = {}
    with sandbox("--rate-limit", "0") as box:
        for _ in range(repeats):
            for label, (settings, switch_off) in variants.items():
                if switch_off:
                    os.environ[BENCHMARK_SWITCH] = "1"
                try:
                    run = bench.run_target(label, box, leads, FAST | settings)
                finally:
                    os.environ.pop(BENCHMARK_SWITCH, None)
                if label not in best or run.wall < best[label].wall:
                    best[label] = run
    base = best["history off"]
    figures: dict[str, Any] = {"leads": leads, "repeats": repeats}
    for label, run in best.items():
        ratio = run.wall / base.wall
        figures[label] = {"seconds": run.wall, "cpu": run.cpu, "ratio": ratio}
        mark = "" if label == "history off" else f" [{'ok' if ratio <= GOAL else 'NOT MET'}]"
        say(
            f"  {label:<20} {run.wall:6.1f} s  CPU {run.cpu:5.1f} s  "
            f"{ratio:.3f}x the baseline{mark}"
        )
    return figures


def synthetic_store(path: Path, runs: int, leads: int, full_runs: int) -> dict[str, int]:
    """A store with `runs` runs of `leads` leads; full sync log for the newest `full_runs`."""
    account = Account.for_key(API_URL, DEFAULT_API_KEY)
    SyncStore.open(str(path), account).close()  # the tables, the account row
    rng = random.Random(17)
    start = datetime.now(timezone.utc) - timedelta(days=runs)
    log_rows = 0
    with closing(sqlite3.connect(path)) as conn, conn:
        for index in range(runs):
            token = rng.randbytes(16)
            started = start + timedelta(days=index)
            ended = started + timedelta(minutes=9)
            conn.execute(
                "INSERT INTO carecycle_sync_runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    token,
                    f"run-{index:03d}",
                    account.account_id,
                    started.strftime(SQLITE_TIME),
                    ended.strftime(SQLITE_TIME),
                    "succeeded",
                    None,
                    "0.4.0",
                    1,
                ),
            )
            refused_total = leads // 50
            per_stream = {"crm": leads // 2, "web": leads // 4, "events": leads - 3 * leads // 4}
            for stream, count in per_stream.items():
                refused = refused_total * count // leads
                counts = dict.fromkeys(COUNT_KEYS, 0)
                counts.update(
                    received=count, succeeded=count // 10, unchanged=count - count // 10 - refused
                )
                counts["failed"], counts["rejected"] = refused // 3, refused - refused // 3
                reasons: dict[str, int] = {}
                for n in range(refused):
                    reason = REASONS[n % len(REASONS)]
                    reasons[reason] = reasons.get(reason, 0) + 1
                conn.execute(
                    "INSERT INTO carecycle_sync_run_streams VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        token,
                        stream,
                        json.dumps(counts),
                        count // 2000,
                        rng.randint(0, 3),
                        0,
                        json.dumps(reasons),
                    ),
                )
            full = index >= runs - full_runs
            rows = []
            for n in range(leads):
                is_refused = n % 50 == 0
                if not (full or is_refused):
                    continue
                outcome = ("failed" if n % 3 == 0 else "rejected") if is_refused else "unchanged"
                rows.append(
                    (
                        token,
                        account.account_id,
                        "crm",
                        f"crm-{(n * 7919 + index * (n % 7 == 0)) % (leads * 2)}",
                        outcome,
                        REASONS[n % len(REASONS)] if is_refused else None,
                        None,
                        ended.strftime(SQLITE_TIME),
                    )
                )
            conn.executemany(
                "INSERT INTO carecycle_sync_log (run, account, stream, external_id, outcome, "
                "reason, carecycle_id, recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            log_rows += len(rows)
    return {"runs": runs, "log_rows": log_rows, "bytes": path.stat().st_size}


def report_times(workdir: Path, store: Path, runs: int) -> dict[str, float]:
    config = workdir / "report-config.json"
    config.write_text(
        json.dumps({"api_url": API_URL, "api_key": DEFAULT_API_KEY, "sync_store": str(store)})
    )
    times: dict[str, float] = {}
    for fmt in ("text", "json", "csv", "html"):
        out = workdir / f"report.{fmt}"
        started = time.perf_counter()
        done = subprocess.run(
            [
                *REPORT_CMD,
                "--config",
                str(config),
                "--format",
                fmt,
                "--runs",
                str(runs),
                "--out",
                str(out),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        times[fmt] = time.perf_counter() - started
        if done.returncode != 0:
            raise SystemExit(f"carecycle-report --format {fmt}: {done.stderr}")
        say(f"  {fmt:<5} {times[fmt]:5.2f} s  ({out.stat().st_size / 1e3:,.0f} kB)")
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--report-only", action="store_true", help="skip the first runs")
    args = parser.parse_args()
    leads = 20_000 if args.quick else 100_000
    report_runs = 30 if args.quick else 100
    figures: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-history-") as tmp:
        workdir = Path(tmp)
        if not args.report_only:
            say(f"First run of {leads:,} leads, fresh SQLite store, best of {args.repeats}:")
            figures["first_run"] = first_runs(workdir, leads, args.repeats)
        say(f"Report of {report_runs} runs of {leads:,} leads:")
        store = workdir / "report-store.sqlite"
        started = time.perf_counter()
        figures["report_store"] = synthetic_store(store, report_runs, leads, full_runs=10)
        say(
            f"  store: {figures['report_store']['log_rows']:,} sync log rows, "
            f"{figures['report_store']['bytes'] / 1e6:.0f} MB (written in "
            f"{time.perf_counter() - started:.0f} s)"
        )
        figures["report_seconds"] = report_times(workdir, store, report_runs)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
