"""Print the demo's results: the target's summaries from a Meltano log, the sandbox's counts.

    python demo/show_run.py summary .work/demo/run.log     # log of `meltano --log-format=json run`
    python demo/show_run.py sandbox http://127.0.0.1:PORT  # GET /__sandbox/stats (+ a sample)

Standard library only.
"""

from __future__ import annotations

import json
import re
import sys
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

TARGET = "target-carecycle"


def target_stderr(log_text: str) -> list[str]:
    """Return what target-carecycle wrote on stderr, as relayed in Meltano's JSON log."""
    lines: list[str] = []
    for raw in log_text.splitlines():
        raw = raw.strip()
        if not raw.startswith("{"):
            continue
        try:
            record = json.loads(raw)
        except json.JSONDecodeError:
            continue
        if record.get("name") == TARGET and record.get("stdio") == "stderr":
            lines.append(str(record.get("event", "")))
    return lines


# A summary line, with or without its indentation: Meltano strips the leading spaces of a
# plugin's plain-text lines when the plugin has the `structured-logging` capability.
SUMMARY_LINE = re.compile(r"\s*(\S[^:]*: received \d+|optional values left out|top reasons|\d+ x )")


def summaries(lines: list[str]) -> list[list[str]]:
    """Split out each `target-carecycle summary` block (one per target run)."""
    blocks: list[list[str]] = []
    for line in lines:
        if line.startswith("target-carecycle summary"):
            blocks.append([line])
        elif blocks and SUMMARY_LINE.match(line) and len(blocks[-1]) < 100:
            blocks[-1].append(line if line.startswith(" ") else reindented(line))
    return blocks


def reindented(line: str) -> str:
    """A summary line with the indentation the target gave it (Meltano strips it)."""
    if re.match(r"\d+ x ", line):
        return "      " + line
    if line.startswith(("top reasons", "optional values left out")):
        return "    " + line
    return "  " + line


def show_summary(log_path: str) -> int:
    """Print every summary block found in the log."""
    blocks = summaries(target_stderr(Path(log_path).read_text(encoding="utf-8")))
    if not blocks:
        print("(no summary found in the log)")
        return 1
    print("\n\n".join("\n".join(block) for block in blocks))
    return 0


def get_json(url: str) -> Any:
    """GET a sandbox endpoint (loopback only)."""
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read().decode("utf-8"))


def show_sandbox(base_url: str) -> int:
    """Print the sandbox's request and lead counts, and two stored customers."""
    base_url = base_url.rstrip("/")
    stats = get_json(f"{base_url}/__sandbox/stats")
    customers = get_json(f"{base_url}/__sandbox/customers")
    if isinstance(customers, dict):
        customers = customers.get("customers", [])
    sizes = stats.get("batch_sizes") or []
    requests = ", ".join(f"{n} x HTTP {code}" for code, n in sorted(stats["requests"].items()))
    print(f"upload requests: {stats['upload_requests']} ({requests})")
    if sizes:
        print(f"batch sizes:     {', '.join(str(s) for s in sizes)} (largest {max(sizes)})")
    print(
        f"leads received:  {stats['leads_received']}: created {stats['created']}, "
        f"updated {stats['updated']}, failed {stats['failed']}"
    )
    print(f"customers now:   {stats['customers']}")
    if customers:
        by_zone = Counter(
            "postalCode" if c.get("postalCode") else "timezone only" for c in customers
        )
        print(
            "calling-hours data: " + ", ".join(f"{kind} {n}" for kind, n in sorted(by_zone.items()))
        )
        plain = next((c for c in customers if not c.get("customFields")), None)
        with_custom = next((c for c in customers if c.get("customFields")), None)
        for title, sample in (("from the CSV", plain), ("from the web forms", with_custom)):
            if sample is not None:
                print(f"a stored customer {title} (as careCycle would return it):")
                print(json.dumps(sample, indent=2, ensure_ascii=False))
    return 0


def main(argv: list[str]) -> int:
    """Dispatch `summary LOG` or `sandbox URL`."""
    if len(argv) == 2 and argv[0] == "summary":
        return show_summary(argv[1])
    if len(argv) == 2 and argv[0] == "sandbox":
        return show_sandbox(argv[1])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
