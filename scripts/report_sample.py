"""Write a demo HTML report from generated runs (for docs/history.md), and optionally its picture.

    .venv/bin/python scripts/report_sample.py --out /tmp/report.html
    .venv/bin/python scripts/report_sample.py --out /tmp/report.html --png docs/img/report.png

(the second writes the picture in docs/history.md: the page's top 1,700 pixels, 1,060 wide).

Thirty nightly runs of two streams tell a typical story: a first full load, then mostly
unchanged leads, a batch of bad phone numbers from a CRM import, a night of 429s when another
pipeline shared the key, a failed run and an interrupted one. The PNG is taken with Debian's
chromium, headless; nothing in the page is fetched from anywhere.
"""

from __future__ import annotations

import argparse
import random
import shutil
import subprocess
import sys
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

from target_carecycle.report import (
    COUNT_KEYS,
    RefusedRecord,
    RunAccount,
    RunRecord,
    StreamHistory,
    newest_first,
    refused_in_run,
    render_html,
    repeated_refusals,
)

ACCOUNT = RunAccount("https://api.carecycle.ai", "3f9a0c5e7b21d4e8")
PHONE = "phoneNumber: not a valid US phone number"
ZIP = "postalCode/timezone: neither a valid 5-digit postalCode nor a valid timezone"
SOURCE = "careCycle: Source not found"
DUPLICATE = "careCycle: duplicate externalId in another source"
BIRTH = "dateOfBirth: in the future"


def _stream(
    rng: random.Random,
    received: int,
    changed: float,
    reasons: dict[str, int],
    *,
    rate_limited: int = 0,
    unsent: int = 0,
    retries: int = 0,
) -> StreamHistory:
    failed = sum(n for r, n in reasons.items() if r.startswith("careCycle"))
    rejected = sum(reasons.values()) - failed
    merged = rng.randint(0, 6)
    skipped = rng.randint(0, 3)
    rest = received - failed - rejected - merged - skipped - unsent
    succeeded = round(rest * changed)
    counts = {
        "received": received,
        "succeeded": succeeded,
        "failed": failed,
        "rejected": rejected,
        "merged": merged,
        "skipped": skipped,
        "unchanged": rest - succeeded,
        "unsent": unsent,
    }
    assert set(counts) == set(COUNT_KEYS)
    requests = math_ceil(succeeded + failed, 200) + rate_limited + retries
    top = dict(sorted(((r, n) for r, n in reasons.items() if n), key=lambda item: -item[1])[:5])
    return StreamHistory(counts, requests, rate_limited, retries, top)


def math_ceil(value: int, size: int) -> int:
    """Batches of `size` needed for `value` leads."""
    return -(-value // size)


def sample_runs(nights: int = 30) -> tuple[list[RunRecord], list[RefusedRecord]]:
    """Generated runs and a sync log of their refused records (deterministic)."""
    rng = random.Random(17)
    start = datetime(2026, 4, 1, 2, 0, tzinfo=timezone.utc)
    runs: list[RunRecord] = []
    refused: list[RefusedRecord] = []
    stubborn = [f"crm-{4700 + i}" for i in range(6)]  # never fixed in the CRM
    for night in range(nights):
        began = start + timedelta(days=night, minutes=rng.randint(0, 9))
        run_id = f"run-{night + 1:03d}"
        contacts_n = 12000 + night * 40
        forms_n = 300 + rng.randint(0, 120)
        first = night == 0
        changed = 1.0 if first else rng.uniform(0.02, 0.06)
        reasons_c = {PHONE: rng.randint(3, 9), ZIP: rng.randint(0, 4), SOURCE: len(stubborn)}
        reasons_f = {PHONE: rng.randint(0, 5), BIRTH: rng.randint(0, 2)}
        if 11 <= night <= 13:  # a CRM import with bad phone numbers
            reasons_c[PHONE] += 180 - (night - 11) * 70
            reasons_c[DUPLICATE] = 25
        status, reason, unsent, rate_limited, retries = "succeeded", None, 0, 0, 0
        if night == 18:
            rate_limited, retries = 14, 2
        if night == 21:
            status, unsent = "failed", 4200
            reason = "careCycle answered 503 five times in a row: stopped (retries used up)"
        if night == 26:
            status, unsent = "interrupted", 800
            reason = "SIGTERM: stopped after the batches in flight"
        contacts = _stream(
            rng, contacts_n, changed, reasons_c,
            rate_limited=rate_limited, unsent=unsent, retries=retries,
        )  # fmt: skip
        forms = _stream(rng, forms_n, 1.0 if first else 0.8, reasons_f)
        took = timedelta(seconds=30 + contacts_n / 150 + contacts.requests + rate_limited * 25)
        runs.append(
            RunRecord(
                run_id=run_id,
                started_at=began,
                ended_at=began + took,
                status=status,
                reason=reason,
                target_version="0.4.0",
                account=ACCOUNT,
                streams={"crm_contacts": contacts, "web_form": forms},
                sync_log=True,
            )
        )
        at = began + took / 2
        for external_id in stubborn:
            refused.append(RefusedRecord(run_id, "crm_contacts", external_id, "failed", SOURCE, at))
        for _ in range(reasons_c[PHONE]):
            eid = f"crm-{rng.randint(10000, 99999)}"
            refused.append(RefusedRecord(run_id, "crm_contacts", eid, "rejected", PHONE, at))
        for index in range(reasons_f[PHONE]):
            refused.append(
                RefusedRecord(run_id, "web_form", f"wf-{night}-{index}", "rejected", PHONE, at)
            )
    return runs, refused


def write_sample(out: Path) -> None:
    """The demo page: every run, the latest run's refused records, the repeated refusals."""
    runs, refused = sample_runs()
    latest = newest_first(runs)[0]
    page = render_html(
        runs, refused_in_run(refused, latest.run_id), repeated_refusals(runs, refused)
    )
    out.write_text(page, encoding="utf-8")


def screenshot(page: Path, png: Path, width: int = 1060, height: int = 1700) -> None:
    """A PNG of the page's first `height` pixels, by headless chromium (no network used)."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        sys.exit("chromium is not installed (bash scripts/ensure-test-deps.sh installs it)")
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [
                chromium, "--headless", "--no-sandbox", "--disable-gpu",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
                "--hide-scrollbars", f"--window-size={width},{height}",
                f"--screenshot={png.resolve()}", page.resolve().as_uri(),
            ],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip


def main() -> None:
    """Parse the arguments, write the page and, with --png, its picture."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="the HTML file to write")
    parser.add_argument("--png", type=Path, help="also write a screenshot of it here")
    parser.add_argument("--width", type=int, default=1060, help="screenshot width in pixels")
    parser.add_argument("--height", type=int, default=1700, help="screenshot height in pixels")
    args = parser.parse_args()
    write_sample(args.out)
    print(args.out)
    if args.png:
        screenshot(args.out, args.png, width=args.width, height=args.height)
        print(args.png)


if __name__ == "__main__":
    main()
