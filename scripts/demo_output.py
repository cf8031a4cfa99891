"""Keeps the demo output shown in docs/pipelines.md equal to what `make demo` prints.

    .venv/bin/python scripts/demo_output.py            # run the demo, rewrite the block
    .venv/bin/python scripts/demo_output.py --check    # run the demo, exit 1 if the block differs
    .venv/bin/python scripts/demo_output.py --check --output saved.txt   # compare a saved run

The block sits between the `BEGIN demo output` and `END demo output` comments of
docs/pipelines.md. It is the demo's stdout (scripts/demo.sh) as printed; the comparison
ignores only what differs from run to run: the sandbox's port, generated ids, timestamps and
durations. Everything else (counts, reasons, sections, the stored customers) must match.
tests/pipelines/test_demo_output.py runs the check.
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "pipelines.md"
BEGIN = "<!-- BEGIN demo output: written by scripts/demo_output.py, do not edit by hand -->\n"
END = "<!-- END demo output -->\n"
FENCE = "```text\n"

# What changes from one run to the next, each replaced by a placeholder before comparing.
VOLATILE = [
    (re.compile(r"http://127\.0\.0\.1:\d+"), "http://127.0.0.1:PORT"),
    (re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"), "UUID"),
    (re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?Z"), "TIMESTAMP"),
    (re.compile(r"\bdone in \d+ s\b"), "done in N s"),
    (re.compile(r"(target-carecycle summary), \d+(?:\.\d+)? s,"), r"\1, N s,"),
]


def run_demo() -> str:
    """The demo's stdout (its progress goes there; errors go to stderr and fail the run)."""
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "demo.sh")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1200,
        env={k: v for k, v in os.environ.items() if not k.startswith("TARGET_CARECYCLE_")},
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"the demo failed (exit {done.returncode}):\n{done.stderr[-4000:]}")
    return done.stdout


def without_volatile(text: str) -> str:
    """The output with ports, ids, timestamps and durations replaced by placeholders."""
    for pattern, placeholder in VOLATILE:
        text = pattern.sub(placeholder, text)
    return text


def documented_output(page: str) -> str:
    """The block's text (inside its code fence)."""
    start, end = page.index(BEGIN) + len(BEGIN), page.index(END)
    block = page[start:end]
    if not (block.startswith(FENCE) and block.endswith("```\n")):
        raise SystemExit(f"{PAGE.name}: the demo output block must be one {FENCE.strip()} fence")
    return block[len(FENCE) : -len("```\n")]


def with_output(page: str, output: str) -> str:
    """The page with the block replaced by `output`."""
    start, end = page.index(BEGIN) + len(BEGIN), page.index(END)
    body = output.strip("\n") + "\n"
    return page[:start] + FENCE + body + "```\n" + page[end:]


def differences(documented: str, output: str) -> list[str]:
    """A unified diff of the two, volatile parts masked; empty when they agree."""
    return list(
        difflib.unified_diff(
            without_volatile(documented.strip("\n")).splitlines(),
            without_volatile(output.strip("\n")).splitlines(),
            "docs/pipelines.md",
            "make demo",
            lineterm="",
        )
    )


def main(argv: list[str] | None = None) -> int:
    """Rewrite the block from a demo run, or (--check) compare it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the block is stale")
    parser.add_argument("--output", type=Path, help="a saved demo output instead of a new run")
    args = parser.parse_args(argv)
    page = PAGE.read_text(encoding="utf-8")
    output = args.output.read_text(encoding="utf-8") if args.output else run_demo()
    diff = differences(documented_output(page), output)
    if args.check:
        if diff:
            print("docs/pipelines.md shows stale demo output: run scripts/demo_output.py")
            print("\n".join(diff))
            return 1
        return 0
    if diff:
        PAGE.write_text(with_output(page, output), encoding="utf-8")
        print("wrote docs/pipelines.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
