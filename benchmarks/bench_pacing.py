"""Does pacing keep a busy client under a strict server's limit? (a timing claim, so here)

A client paced at the sandbox's own limit (600/min, bucket of one) sends 200-lead batches
back to back. Any 429 means two requests arrived closer than the limit allows: pacing's 3%
margin (PACING_MARGIN) is there to absorb network and scheduling jitter. On a busy machine a
late wake-up followed by an on-time one can still land two requests close together, which is
why this is measured here and not asserted in the test suite. Prints, per round, the 200s and
429s the sandbox saw, and the share of requests that had to wait out a 429.

    .venv/bin/python benchmarks/bench_pacing.py [--rounds 5] [--requests 20]
"""

from __future__ import annotations

import argparse
import time

from target_carecycle.client import PACING_MARGIN, ClientSettings, LeadUploadClient
from target_carecycle.sandbox import SandboxConfig, running_sandbox
from target_carecycle.sandbox.samples import api_leads

LIMIT = 600


def one_round(requests: int) -> tuple[int, int, float]:
    """Send `requests` batches through a paced client; return (200s, 429s, seconds)."""
    with running_sandbox(SandboxConfig(rate_limit=LIMIT, rate_burst=1)) as sandbox:
        settings = ClientSettings(
            api_url=sandbox.url,
            api_key=sandbox.api_key,
            max_requests_per_minute=LIMIT,
            backoff_base=0.05,
        )
        client = LeadUploadClient(settings)
        started = time.monotonic()
        for i in range(requests):
            client.upload(api_leads(200, start=200 * i))
        seconds = time.monotonic() - started
        statuses = sandbox.stats()["requests"]
    return statuses.get("200", 0), statuses.get("429", 0), seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=20)
    args = parser.parse_args()
    print(f"pacing at {LIMIT}/min with margin {PACING_MARGIN} against a {LIMIT}/min bucket of 1")
    total_ok = total_429 = 0
    for number in range(1, args.rounds + 1):
        ok, limited, seconds = one_round(args.requests)
        total_ok, total_429 = total_ok + ok, total_429 + limited
        rate = 60 * ok / seconds
        print(
            f"round {number}: {ok} x 200, {limited} x 429, {rate:.0f} req/min "
            f"({rate / LIMIT:.1%} of the limit)"
        )
    print(f"429s per request: {total_429 / max(total_ok, 1):.3f} (goal 0)")


if __name__ == "__main__":
    main()
