"""How close does pacing get to careCycle's limit, alone and with other runs on the key?

Two scenarios, each a timing claim, so measured here and not asserted in the test suite:

* one client (LeadUploadClient, in process) paced at the sandbox's own limit (600/min, a
  bucket of one) sends 200-lead batches back to back. Any 429 means two requests arrived
  closer than the limit allows; pacing's 3% margin (PACING_MARGIN) absorbs network and
  scheduling jitter. Prints the 200s and 429s per round.
* several runs of the real `target-carecycle` on one key at once, each with
  `max_requests_per_minute` at the limit and no shared store (`sync_store: off`), so each
  paces on its own and learns of the others only from careCycle's 429 answers. The sandbox
  (its own process) allows 600 a minute with a bucket of `--burst` requests. Per number of
  runs: the share of the limit they used together (successful requests per second over the
  time from the first start to the last end, against 10 a second), and the 429 answers per
  successful request; the runs' share against one run alone is the ratio (measured in the
  same invocation). Goal (issue 19): 4 runs >= 70% of the limit, no collapse.

    .venv/bin/python benchmarks/bench_pacing.py [--rounds 5] [--requests 20]
        [--runs 1 2 4] [--per-run 12000] [--burst 10 1] [--no-single]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from bench_target import TARGET_CMD, child_env, sandbox

from target_carecycle.client import (
    PACE_CUT,
    PACE_RECOVERY_SECONDS,
    PACING_MARGIN,
    ClientSettings,
    LeadUploadClient,
)
from target_carecycle.sandbox import DEFAULT_API_KEY, SandboxConfig, running_sandbox
from target_carecycle.sandbox.samples import api_leads, singer_lines

LIMIT = 600


def one_round(requests: int) -> tuple[int, int, float]:
    """Send `requests` batches through a paced client; return (200s, 429s, seconds)."""
    with running_sandbox(SandboxConfig(rate_limit=LIMIT, rate_burst=1)) as box:
        settings = ClientSettings(
            api_url=box.url,
            api_key=box.api_key,
            max_requests_per_minute=LIMIT,
            backoff_base=0.05,
        )
        client = LeadUploadClient(settings)
        started = time.monotonic()
        for i in range(requests):
            client.upload(api_leads(200, start=200 * i))
        seconds = time.monotonic() - started
        statuses = box.stats()["requests"]
    return statuses.get("200", 0), statuses.get("429", 0), seconds


def single(rounds: int, requests: int) -> None:
    print(f"One client paced at {LIMIT}/min (margin {PACING_MARGIN}), a {LIMIT}/min bucket of 1")
    total_ok = total_429 = 0
    for number in range(1, rounds + 1):
        ok, limited, seconds = one_round(requests)
        total_ok, total_429 = total_ok + ok, total_429 + limited
        rate = 60 * ok / seconds
        print(
            f"  round {number}: {ok} x 200, {limited} x 429, {rate:.0f} req/min "
            f"({rate / LIMIT:.1%} of the limit)"
        )
    print(f"  429s per request: {total_429 / max(total_ok, 1):.3f} (goal 0)")


def runs_at_once(workdir: Path, runs: int, per_run: int, burst: int) -> tuple[float, int, int]:
    """`runs` target processes on one key, no shared store: (share of limit, 200s, 429s)."""
    with (
        sandbox("--rate-limit", str(LIMIT), "--rate-burst", str(burst)) as box,
        ExitStack() as stack,
    ):
        procs = []
        started = time.monotonic()
        for n in range(runs):
            source = workdir / f"input-{per_run}-{n}.jsonl"
            if not source.exists():
                leads = api_leads(per_run, "leads", start=n * per_run)
                rows = singer_lines("leads", leads, key_properties=["externalId"], state={})
                source.write_text("\n".join(rows) + "\n")
            config = workdir / f"config-{runs}-{burst}-{n}.json"
            settings = {
                "api_url": box.url,
                "api_key": DEFAULT_API_KEY,
                "max_requests_per_minute": LIMIT,
                "sync_store": "off",
            }
            config.write_text(json.dumps(settings))
            procs.append(
                subprocess.Popen(
                    [*TARGET_CMD, "--config", str(config)],
                    stdin=stack.enter_context(source.open("rb")),
                    stdout=subprocess.DEVNULL,
                    stderr=stack.enter_context((workdir / f"stderr-{n}").open("wb")),
                    env=child_env(),
                )
            )
        codes = [proc.wait(timeout=1800) for proc in procs]
        wall = time.monotonic() - started
        stats = box.stats()
    if any(codes) or stats["created"] != runs * per_run:
        raise SystemExit(f"{runs} runs, burst {burst}: a run failed ({codes}) or lost leads")
    ok, limited = stats["requests"].get("200", 0), stats["requests"].get("429", 0)
    return ok / wall / (LIMIT / 60), ok, limited


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--runs", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--per-run", type=int, default=12_000)
    parser.add_argument("--burst", type=int, nargs="+", default=[10, 1])
    parser.add_argument("--no-single", action="store_true")
    args = parser.parse_args()
    if not args.no_single:
        single(args.rounds, args.requests)
    print(
        f"Runs on one key without a shared store, {args.per_run:,} leads each, each paced at "
        f"{LIMIT}/min; a 429 cuts a run's pace to {PACE_CUT:.0%} (once per wait), "
        f"successes bring back the whole budget in {PACE_RECOVERY_SECONDS:g} s"
    )
    with tempfile.TemporaryDirectory(prefix="bench-pacing-") as tmp:
        for burst in args.burst:
            alone = None
            for runs in args.runs:
                share, ok, limited = runs_at_once(Path(tmp), runs, args.per_run, burst)
                alone = share if runs == 1 else alone
                ratio = f", {share / alone:.2f}x one run alone" if alone and runs > 1 else ""
                verdict = " [goal >= 70%: " + ("ok]" if share >= 0.7 else "NOT MET]")
                print(
                    f"  burst {burst}, {runs} runs: {share:.0%} of the limit together{ratio}; "
                    f"{ok} x 200, {limited} x 429 ({limited / max(ok, 1):.2f} per success)"
                    + (verdict if runs == 4 else ""),
                    flush=True,
                )


if __name__ == "__main__":
    main()
