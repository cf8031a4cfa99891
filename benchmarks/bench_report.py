"""How long do the report's renderers take, and how big is the HTML page? (issue #17)

The targets: 100 runs x 5 streams render in well under a second; a refused list of 100,000
records does not make a huge page (the HTML table is capped at 1,000 rows); repeated_refusals
over 100 runs of a sync log with 1,000 refused records each (100,000 rows) takes seconds at
most. Each time is the best of 3 and printed next to a baseline measured in the same run:
`json.dumps` of the same data as plain dicts (the least any renderer must do), so the ratio
says how much the rendering itself costs on this machine, busy or not.

    .venv/bin/python benchmarks/bench_report.py [--json FILE]

Figures: docs/performance.md, section "Report".
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from target_carecycle.report import (
    COUNT_KEYS,
    RefusedRecord,
    RunAccount,
    RunRecord,
    StreamHistory,
    render_csv,
    render_html,
    render_json,
    render_text,
    repeated_refusals,
)

T0 = datetime(2026, 1, 1, 2, 0, tzinfo=timezone.utc)
ACCOUNT = RunAccount("https://api.carecycle.ai", "0123456789abcdef")
REPEATS = 3


def make_runs(runs: int, streams: int) -> list[RunRecord]:
    """`runs` nightly runs of `streams` streams with every outcome and six reasons each."""
    made = []
    for night in range(runs):
        histories = {}
        for index in range(streams):
            counts = {key: 1000 * (position + 1) + night for position, key in enumerate(COUNT_KEYS)}
            reasons = {f"reason {k} of stream {index}": 10 + k + night for k in range(6)}
            histories[f"stream_{index}"] = StreamHistory(counts, 50 + night, night % 7, 1, reasons)
        started = T0 + timedelta(days=night)
        made.append(
            RunRecord(
                run_id=f"run-{night}",
                started_at=started,
                ended_at=started + timedelta(minutes=9),
                status="failed" if night % 17 == 5 else "succeeded",
                reason="careCycle answered 503 five times in a row" if night % 17 == 5 else None,
                target_version="0.4.0",
                account=ACCOUNT,
                streams=histories,
                sync_log=True,
            )
        )
    return made


def make_refused(runs: list[RunRecord], per_run: int) -> list[RefusedRecord]:
    """`per_run` refused records per run; half of the externalIds come back every night."""
    refused = []
    for night, run in enumerate(runs):
        for index in range(per_run):
            external_id = f"crm-{index}" if index % 2 else f"crm-{night}-{index}"
            refused.append(
                RefusedRecord(
                    run.run_id,
                    f"stream_{index % 5}",
                    external_id,
                    "failed" if index % 3 else "rejected",
                    f"reason {index % 6} of stream {index % 5}",
                    run.started_at + timedelta(minutes=1),
                )
            )
    return refused


def best(action: Callable[[], Any]) -> tuple[float, Any]:
    """Best wall time of REPEATS calls, and the last result."""
    times, result = [], None
    for _ in range(REPEATS):
        start = time.perf_counter()
        result = action()
        times.append(time.perf_counter() - start)
    return min(times), result


def main() -> None:
    """Measure, print a table, optionally write the figures as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    runs = make_runs(100, 5)
    refused = make_refused(runs, 1000)
    latest = [r for r in refused if r.run_id == "run-99"]
    huge_refused = make_refused(runs[:1], 100_000)
    repeated = repeated_refusals(runs, refused)
    plain_runs = [asdict(run) for run in runs]
    plain_refused = [asdict(record) for record in huge_refused]

    baseline_runs, _ = best(lambda: json.dumps(plain_runs, default=str))
    baseline_refused, _ = best(lambda: json.dumps(plain_refused, default=str))
    cases: list[tuple[str, Callable[[], Any], float]] = [
        ("html, 100 runs x 5 streams", lambda: render_html(runs, latest, repeated), baseline_runs),
        ("json, 100 runs x 5 streams", lambda: render_json(runs), baseline_runs),
        ("text, last 10 of 100 runs", lambda: render_text(runs, 10), baseline_runs),
        ("html, 100k refused in the latest run", lambda: render_html(runs, huge_refused, []),
         baseline_refused),
        ("csv, 100k refused", lambda: render_csv(huge_refused), baseline_refused),
        ("repeated_refusals, 100 runs x 1k refused", lambda: repeated_refusals(runs, refused),
         baseline_refused),
    ]  # fmt: skip
    figures = {}
    print(f"baseline json.dumps: runs {baseline_runs:.3f} s, 100k refused {baseline_refused:.3f} s")
    print(f"{'case':44} {'seconds':>8} {'x baseline':>10} {'output':>12}")
    for name, action, baseline in cases:
        seconds, result = best(action)
        size = len(result.encode()) if isinstance(result, str) else len(result)
        unit = "bytes" if isinstance(result, str) else "items"
        print(f"{name:44} {seconds:8.3f} {seconds / baseline:10.1f} {size:>12,} {unit}")
        figures[name] = {"seconds": seconds, "ratio": seconds / baseline, unit: size}
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
