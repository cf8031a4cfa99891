"""What does the sync store save, and what does it cost? (issue #12)

Runs the real ``target-carecycle`` executable against ``carecycle-sandbox`` processes on
127.0.0.1, with a SQLite store in a temporary folder and (when the PostgreSQL server binaries
are installed) a throwaway PostgreSQL server. Every ratio is against a baseline measured in the
same run. Scenarios:

* re-run, per backend: the first run of N leads (sends all, fills the store), then the same
  input again. Requests sent by the re-run (must be 0), its wall time against a dry run of the
  same input without a store (must be at most 1.3x; best of 3 each, alternating), store
  transactions per 200-lead batch (PostgreSQL's ``xact_commit``: lookups are batched, one
  per batch, not one per lead) and the store's size per 100,000 leads.
* first run (issue 19), per size (100k; `--first-run-sizes 100000 1000000` for 1M as well):
  a bare `requests.Session` loop posting the same 200-lead batches (the baseline), the target
  with `sync_store: off`, and the target with a fresh default store (SQLite), best of 2 each,
  alternating, sandbox without a rate limit. Ratios: first run / bare loop (goal <= 1.5x),
  store off / bare loop, first run / store off (what the store itself costs), and CPU.
* memory: peak RSS of the re-run with 100k vs 10k leads in the store, and of the first run
  with 100k vs 10k leads (each must be at most 1.5x).
* two runs on one key at once against a strict limit (``--rate-limit 120 --rate-burst 1``:
  2 requests a second, no burst), each with ``max_requests_per_minute: 120``: each run with
  its own pacing (``sync_store: off``, the old behaviour) vs sharing a store. 429 answers,
  wall time from the first start to the last end, and the combined share of the limit
  (successful requests per minute / 120).

Usage (4-7 minutes on 2 cores; ``--quick``: 20k/2k leads and 1,000 per concurrent run):

    .venv/bin/python benchmarks/bench_sync_store.py [--quick] [--json FILE] [--no-postgres]
        [--no-concurrent]

Figures and findings: docs/performance.md, section "Sync store".
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench_target import TARGET_CMD, WRAPPER, Bench, Sandbox, bare_baseline, child_env, sandbox

from target_carecycle.sandbox import DEFAULT_API_KEY
from target_carecycle.sandbox.samples import api_leads, singer_lines

STREAM = "leads"
BATCH = 200
REPEATS = 3  # re-runs and dry runs, best of
STRICT_LIMIT = 120  # requests per minute: 2 a second
REPO = Path(__file__).resolve().parents[1]


@dataclass
class Result:
    label: str
    leads: int
    wall: float
    maxrss_mib: float
    code: int
    counts: dict[str, int]
    requests: int  # upload requests the sandbox saw during the run


def write_input(workdir: Path, count: int, start: int = 0, tag: str = "") -> Path:
    path = workdir / f"input-{count}{tag}.jsonl"
    if not path.exists():
        with path.open("w", encoding="utf-8") as out:
            for line in singer_lines(
                STREAM,
                api_leads(count, STREAM, start=start),
                key_properties=["externalId"],
                state={"bookmarks": {STREAM: {"count": count}}},
            ):
                out.write(line + "\n")
    return path


def run_target(
    workdir: Path, label: str, box: Sandbox, input_path: Path, leads: int, settings: dict[str, Any]
) -> Result:
    """One target run through the rusage wrapper (wall time, peak RSS of exactly this run)."""
    stem = workdir / label.replace(" ", "-")
    config = {"api_url": box.url, "api_key": DEFAULT_API_KEY, **settings}
    stem.with_suffix(".config.json").write_text(json.dumps(config))
    report = stem.with_suffix(".rusage.json")
    before = box.stats()["upload_requests"]
    with (
        input_path.open("rb") as stdin,
        stem.with_suffix(".stdout").open("wb") as stdout,
        stem.with_suffix(".stderr").open("wb") as stderr,
    ):
        subprocess.call(
            [
                sys.executable,
                "-c",
                WRAPPER,
                str(report),
                *TARGET_CMD,
                "--config",
                str(stem.with_suffix(".config.json")),
            ],
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            env=child_env(),
        )
    facts = json.loads(report.read_text())
    counts = summary_counts(stem.with_suffix(".stderr").read_text())
    if facts["code"] != 0 or not counts:
        tail = "\n".join(stem.with_suffix(".stderr").read_text().splitlines()[-15:])
        raise SystemExit(f"{label}: target exit {facts['code']}\n{tail}")
    return Result(
        label=label,
        leads=leads,
        wall=facts["end"] - facts["start"],
        maxrss_mib=facts["maxrss_kib"] / 1024,
        code=facts["code"],
        counts=counts,
        requests=box.stats()["upload_requests"] - before,
    )


def summary_counts(log: str) -> dict[str, int]:
    """The stream's counts from the run's `Run summary: {...}` event (a dry run emits no STATE)."""
    for line in reversed(log.splitlines()):
        _, found, summary = line.partition("Run summary: ")
        if found:
            counts: dict[str, int] = json.loads(summary)["streams"].get(STREAM, {})
            return counts
    return {}


def say(text: str = "") -> None:
    print(text, flush=True)


def verdict(ok: bool) -> str:
    return "ok" if ok else "NOT MET"


FAST = {"max_requests_per_minute": 600_000}


def rerun_scenario(
    workdir: Path, backend: str, store: str, sizes: tuple[int, ...], pg: Any = None
) -> dict[str, Any]:
    """First run, re-run and dry run (no store) of each size, against one sandbox."""
    figures: dict[str, Any] = {"backend": backend, "sizes": {}}
    for size in sizes:
        input_path = write_input(workdir, size)
        with sandbox("--rate-limit", "0") as box:
            settings = FAST | {"sync_store": store}
            first = run_target(workdir, f"{backend} first {size}", box, input_path, size, settings)
            size_bytes = store_size(store, pg)
            no_store = run_target(
                workdir,
                f"{backend} no store {size}",
                box,
                input_path,
                size,
                FAST | {"sync_store": "off"},
            )
            xacts_before = pg_commits(pg) if pg else 0
            again = run_target(workdir, f"{backend} rerun {size}", box, input_path, size, settings)
            xacts = pg_commits(pg) - xacts_before if pg else None
            # Best of REPEATS each, alternating, so a busy moment on a shared machine does not
            # decide the ratio.
            dry_settings = {"dry_run": True, "sync_store": "off"}
            dries = []
            for n in range(REPEATS):
                label = f"{backend} dry {size} #{n}"
                dries.append(run_target(workdir, label, box, input_path, size, dry_settings))
                if n:
                    label = f"{backend} rerun {size} #{n}"
                    more = run_target(workdir, label, box, input_path, size, settings)
                    again = min(again, more, key=lambda run: run.wall)
            dry = min(dries, key=lambda run: run.wall)
        figures["sizes"][size] = {
            "first": asdict(first),
            "no_store": asdict(no_store),
            "rerun": asdict(again),
            "dry": asdict(dry),
            "store_bytes": size_bytes,
            "store_transactions_rerun": xacts,
        }
        batches = -(-size // BATCH)
        say(
            f"  {backend}, {size:,} leads: first run {first.wall:.1f} s ({first.requests} "
            f"requests; the same without a store {no_store.wall:.1f} s); re-run "
            f"{again.wall:.1f} s, {again.requests} requests, unchanged "
            f"{again.counts.get('unchanged')}; dry run without store {dry.wall:.1f} s -> "
            f"re-run / dry run = {again.wall / dry.wall:.2f}x "
            f"[{verdict(again.requests == 0 and again.wall <= 1.3 * dry.wall)}]"
        )
        say(
            f"    store: {size_bytes / 1e6:.1f} MB ({size_bytes / size * 100_000 / 1e6:.1f} MB "
            f"per 100k leads); peak RSS re-run {again.maxrss_mib:.0f} MiB, "
            f"dry run {dry.maxrss_mib:.0f} MiB"
            + (
                f"; store transactions in the re-run: {xacts} for {batches} batches "
                f"({xacts / batches:.2f} per batch)"
                if xacts is not None
                else ""
            )
        )
    return figures


def first_run_scenario(workdir: Path, sizes: tuple[int, ...]) -> dict[int, Any]:
    """A first run against a bare requests loop and against the target without a store."""
    figures: dict[int, Any] = {}
    bench = Bench(workdir / "first")
    bench.workdir.mkdir()
    fast = {"max_requests_per_minute": 600_000}
    for size in sizes:
        leads = api_leads(size, STREAM)
        bare, off, first = [], [], []
        with sandbox("--rate-limit", "0") as box:
            for _ in range(2):
                bare.append(bare_baseline(box, leads)[0])
                off.append(bench.run_target(f"off {size}", box, size, fast | {"sync_store": "off"}))
                first.append(bench.run_target(f"first {size}", box, size, fast))  # fresh store
        baseline = min(bare)
        best_off = min(off, key=lambda run: run.wall)
        best = min(first, key=lambda run: run.wall)
        figures[size] = {
            "bare_seconds": baseline,
            "off_seconds": best_off.wall,
            "first_seconds": best.wall,
            "off_cpu": best_off.cpu,
            "first_cpu": best.cpu,
            "first_maxrss_mib": best.maxrss_mib,
        }
        say(
            f"  {size:,} leads: bare loop {baseline:.1f} s; store off {best_off.wall:.1f} s "
            f"({best_off.wall / baseline:.2f}x, CPU {best_off.cpu:.1f} s); first run with the "
            f"default store {best.wall:.1f} s ({best.wall / baseline:.2f}x the bare loop "
            f"[{verdict(best.wall <= 1.5 * baseline)}], {best.wall / best_off.wall:.2f}x "
            f"store off; CPU {best.cpu:.1f} s); peak RSS {best.maxrss_mib:.0f} MiB"
        )
    return figures


def store_size(store: str, pg: Any) -> int:
    if pg is not None:
        out = pg.psql(
            "SELECT pg_total_relation_size('carecycle_sync_leads')", database="sync_bench"
        )
        return int(out.strip())
    path = Path(store)
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))


def pg_commits(pg: Any) -> int:
    out = pg.psql(
        "SELECT pg_stat_force_next_flush(); "
        "SELECT xact_commit FROM pg_stat_database WHERE datname = 'sync_bench'",
        database="postgres",
    )
    return int(out.strip().splitlines()[-1])


def concurrent_scenario(workdir: Path, per_run: int, stores: dict[str, str]) -> dict[str, Any]:
    """Two runs on one key at once against 2 requests a second, no burst."""
    figures: dict[str, Any] = {}
    inputs = [write_input(workdir, per_run, start=n * per_run, tag=f"-part{n}") for n in range(2)]
    for mode, store in stores.items():
        with sandbox("--rate-limit", str(STRICT_LIMIT), "--rate-burst", "1") as box:
            procs, reports = [], []
            with ExitStack() as stack:
                for n, input_path in enumerate(inputs):
                    stem = workdir / f"concurrent-{mode}-{n}"
                    config = {
                        "api_url": box.url,
                        "api_key": DEFAULT_API_KEY,
                        "max_requests_per_minute": STRICT_LIMIT,
                        "sync_store": store,
                    }
                    stem.with_suffix(".json").write_text(json.dumps(config))
                    report = stem.with_suffix(".rusage.json")
                    reports.append(report)
                    stdin = stack.enter_context(input_path.open("rb"))
                    stderr = stack.enter_context(stem.with_suffix(".stderr").open("wb"))
                    procs.append(
                        subprocess.Popen(
                            [
                                sys.executable,
                                "-c",
                                WRAPPER,
                                str(report),
                                *TARGET_CMD,
                                "--config",
                                str(stem.with_suffix(".json")),
                            ],
                            stdin=stdin,
                            stdout=subprocess.DEVNULL,
                            stderr=stderr,
                            env=child_env(),
                        )
                    )
                for proc in procs:
                    proc.wait(timeout=900)
            facts = [json.loads(r.read_text()) for r in reports]
            stats = box.stats()
        if any(f["code"] != 0 for f in facts) or stats["customers"] != 2 * per_run:
            raise SystemExit(f"concurrent {mode}: a run failed or leads are missing: {stats}")
        wall = max(f["end"] for f in facts) - min(f["start"] for f in facts)
        ok = stats["requests"].get("200", 0)
        share = ok / (wall / 60) / STRICT_LIMIT
        limited = stats["requests"].get("429", 0)
        figures[mode] = {"wall": wall, "429": limited, "200": ok, "share_of_limit": share}
        say(
            f"  {mode}: {ok} requests answered 200, {limited} answered 429, {wall:.1f} s "
            f"for both, {share:.0%} of the limit used"
        )
    floor = 2 * -(-per_run // BATCH) / (STRICT_LIMIT / 60)
    figures["floor_seconds"] = floor
    say(f"  (the limit allows both runs in {floor:.0f} s at best)")
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--no-concurrent", action="store_true", help="skip the two-run scenario")
    parser.add_argument(
        "--first-run-sizes",
        type=int,
        nargs="*",
        default=None,
        help="first-run scenario sizes (default: the large size; none to skip)",
    )
    args = parser.parse_args()
    large, small, per_run = (20_000, 2_000, 1_000) if args.quick else (100_000, 10_000, 3_000)
    figures: dict[str, Any] = {"large": large, "small": small, "per_run": per_run}
    with tempfile.TemporaryDirectory(prefix="bench-sync-store-") as tmp, ExitStack() as stack:
        workdir = Path(tmp)
        sqlite_store = str(workdir / "store" / "sync.sqlite")
        first_sizes = tuple(args.first_run_sizes if args.first_run_sizes is not None else [large])
        if first_sizes:
            say(
                "First run, no rate limit: a bare requests loop, the target without a store, "
                "the target with a fresh default store (best of 2 each)"
            )
            first_run = first_run_scenario(workdir, (small, *first_sizes))
            figures["first_run"] = first_run
            memory = (
                first_run[first_sizes[0]]["first_maxrss_mib"] / first_run[small]["first_maxrss_mib"]
            )
            figures["first_run_memory_ratio"] = memory
            say(
                f"  peak RSS of the first run, {first_sizes[0] // 1000}k vs {small // 1000}k "
                f"leads: {memory:.2f}x [{verdict(memory <= 1.5)}]"
            )
        say(f"Re-runs of unchanged input (SQLite store; {large:,} and {small:,} leads)")
        figures["sqlite"] = rerun_scenario(workdir, "sqlite", sqlite_store, (small, large))
        sizes = figures["sqlite"]["sizes"]
        ratio = sizes[large]["rerun"]["maxrss_mib"] / sizes[small]["rerun"]["maxrss_mib"]
        figures["memory_ratio"] = ratio
        say(
            f"  peak RSS of the re-run, {large // 1000}k vs {small // 1000}k leads: "
            f"{ratio:.2f}x [{verdict(ratio <= 1.5)}]"
        )
        pg = None
        if not args.no_postgres:
            sys.path.insert(0, str(REPO / "tests" / "pipelines"))
            from pipeline_helpers import postgres_bindir, running_postgres

            if postgres_bindir() is not None:
                pg = stack.enter_context(running_postgres())
                pg.psql('CREATE DATABASE "sync_bench"')
        if pg is not None:
            url = f"postgresql+psycopg://postgres:unused@127.0.0.1:{pg.port}/sync_bench"
            say(f"Re-runs of unchanged input (PostgreSQL store; {large:,} leads)")
            figures["postgresql"] = rerun_scenario(workdir, "postgresql", url, (large,), pg)
        else:
            say("PostgreSQL: skipped (no server binaries or --no-postgres)")
        if args.no_concurrent:
            return _write(args.json, figures)
        say(f"Two runs on one key at once, {per_run:,} leads each, limit 2 requests/s, burst 1")
        stores = {
            "own pacing (sync_store off)": "off",
            "shared SQLite store": str(workdir / "shared" / "sync.sqlite"),
        }
        if pg is not None:
            pg.psql('CREATE DATABASE "sync_shared"')
            stores["shared PostgreSQL store"] = (
                f"postgresql+psycopg://postgres:unused@127.0.0.1:{pg.port}/sync_shared"
            )
        figures["concurrent"] = concurrent_scenario(workdir, per_run, stores)
    return _write(args.json, figures)


def _write(path: Path | None, figures: dict[str, Any]) -> int:
    if path:
        path.write_text(json.dumps(figures, indent=2, default=str))
    return 0


if __name__ == "__main__":
    started = time.monotonic()
    code = main()
    say(f"(benchmark took {time.monotonic() - started:.0f} s)")
    sys.exit(code)
