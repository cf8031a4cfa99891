"""How fast does the careCycle sandbox validate and store 200-lead upload requests?

Starts ``carecycle-sandbox --port 0 --rate-limit 0`` (latency 0) as a separate process, so the
client's work does not share the server's interpreter, then sends pre-encoded 200-lead requests
over one keep-alive ``requests.Session``: first all creates, then the same leads again (updates).
Also times ``validate_records`` alone, in process. Usage:

    .venv/bin/python benchmarks/bench_sandbox.py [--requests 300] [--batch 200]
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests

from target_carecycle.sandbox import DEFAULT_API_KEY, UPLOAD_PATH
from target_carecycle.sandbox.validation import validate_records

GENDERS = ("Male", "Female", "Non-Binary", "Other", "Prefer Not to Say")
PHONE_STYLES = ("+1{a}{b}{c}", "{a}{b}{c}", "({a}) {b}-{c}")


def rich_lead(index: int) -> dict[str, Any]:
    """A valid lead using most fields, so validation does real work."""
    a, b, c = 200 + index % 700, 200 + (index // 700) % 700, f"{index % 10_000:04d}"
    return {
        "externalId": f"bench-{index}",
        "phoneNumber": PHONE_STYLES[index % 3].format(a=a, b=b, c=c),
        "firstName": f"First{index}",
        "lastName": f"Last{index}",
        "email": f"lead{index}@example.com",
        "postalCode": f"{10_000 + index % 89_999:05d}",
        "timezone": "America/Chicago" if index % 2 else None,
        "city": "Springfield",
        "state": "IL",
        "address": f"{index} Main St",
        "dateOfBirth": f"{1 + index % 12:02d}/{1 + index % 28:02d}/{1940 + index % 60}",
        "gender": GENDERS[index % len(GENDERS)],
        "maritalStatus": "Married" if index % 2 else "Single",
        "dependentCount": index % 5,
        "householdIncome": 30_000 + index % 90_000,
        "medicaid": index % 7 == 0,
        "doNotCall": False,
        "sourceId": "sandbox-source",
        "leadCost": 12.5,
        "customFields": [{"fieldKey": "campaign", "value": "spring"}],
    }


def payloads(count: int, batch: int) -> list[bytes]:
    return [
        json.dumps({"records": [rich_lead(r * batch + i) for i in range(batch)]}).encode()
        for r in range(count)
    ]


def cli() -> list[str]:
    script = Path(sys.executable).with_name("carecycle-sandbox")
    return [str(script)] if script.exists() else [sys.executable, "-m", "target_carecycle.sandbox"]


def bench_validation(batch: int, rounds: int = 50) -> float:
    records = [rich_lead(i) for i in range(batch)]
    started = time.perf_counter()
    for _ in range(rounds):
        errors, _ = validate_records(records)
        assert not errors, errors[:3]
    return (time.perf_counter() - started) / rounds * 1000


def bench_http(url: str, bodies: list[bytes], batch: int, label: str) -> dict[str, Any]:
    """Send every body over one keep-alive session; print the figures; return the stats."""
    headers = {"x-api-key": DEFAULT_API_KEY, "Content-Type": "application/json"}
    timings: list[float] = []
    with requests.Session() as session:
        started = time.perf_counter()
        for body in bodies:
            t0 = time.perf_counter()
            response = session.post(url + UPLOAD_PATH, data=body, headers=headers, timeout=30)
            timings.append(time.perf_counter() - t0)
            assert response.status_code == 200 and response.json()["succeeded"] == batch
        elapsed = time.perf_counter() - started
        stats: dict[str, Any] = session.get(url + "/__sandbox/stats").json()
    n = len(bodies)
    p95 = sorted(timings)[int(0.95 * (n - 1))] * 1000
    print(
        f"{label:>7}: {n} requests x {batch} leads in {elapsed:.2f} s -> "
        f"{n / elapsed:,.1f} requests/s, {n * batch / elapsed:,.0f} leads/s, "
        f"{elapsed / n * 1000:.2f} ms/request (median {statistics.median(timings) * 1000:.2f}, "
        f"p95 {p95:.2f})"
    )
    return stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--batch", type=int, default=200)
    args = parser.parse_args()
    print(
        f"validate_records({args.batch} leads), in process: {bench_validation(args.batch):.2f} ms"
    )
    bodies = payloads(args.requests, args.batch)
    print(f"request body: {len(bodies[0]) / 1024:.0f} KiB")
    server = subprocess.Popen(
        [*cli(), "--port", "0", "--rate-limit", "0"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None
        url = server.stdout.readline().strip()
        created = bench_http(url, bodies, args.batch, "creates")
        updated = bench_http(url, bodies, args.batch, "updates")  # the same leads again
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=10)
    total = args.requests * args.batch
    assert (created["created"], updated["updated"], updated["customers"]) == (total, total, total)


if __name__ == "__main__":
    main()
