"""Writes the tables that docs show from the package's registries, so the docs cannot drift.

    .venv/bin/python scripts/registry_tables.py            # rewrite the tables in docs/
    .venv/bin/python scripts/registry_tables.py --check    # exit 1 if a page differs

- docs/mapping.md, the lead-field table: target_carecycle/fields.py's `FIELDS`
  (type, personal or not, column aliases);
- docs/outcomes.md, the outcome table: target_carecycle/outcomes.py's `OUTCOME_REGISTRY`.

Each table sits between a `BEGIN <name>` and an `END <name>` comment; everything else on the
page is left as written. tests/test_fields.py and tests/test_outcomes.py run the check.
"""

from __future__ import annotations

import argparse
import difflib
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from target_carecycle import fields, outcomes

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Table:
    """One generated block: the page, its marker name, and what writes it."""

    page: Path
    name: str
    render: Callable[[], str]

    @property
    def begin(self) -> str:
        """The comment line the table follows."""
        return (
            f"<!-- BEGIN {self.name}: written by scripts/registry_tables.py, "
            "do not edit by hand -->\n"
        )

    @property
    def end(self) -> str:
        """The comment line after the table."""
        return f"<!-- END {self.name} -->\n"


TABLES = (
    Table(
        ROOT / "docs" / "mapping.md", "lead fields", lambda: fields.markdown_table(fields.FIELDS)
    ),
    Table(
        ROOT / "docs" / "outcomes.md",
        "outcomes",
        lambda: outcomes.markdown_table(outcomes.OUTCOME_REGISTRY),
    ),
)


def with_table(page: str, table: Table) -> str:
    """`page` with the block between the table's markers replaced by the rendered table."""
    start = page.find(table.begin)
    end = page.find(table.end)
    if start < 0 or end < start:
        raise SystemExit(f"{table.page.name}: the {table.name!r} markers are missing")
    start += len(table.begin)
    return page[:start] + table.render() + page[end:]


def stale_pages() -> list[str]:
    """A unified diff for each page whose tables differ from the registries (empty: none)."""
    diffs = []
    for page in sorted({table.page for table in TABLES}):
        text = page.read_text(encoding="utf-8")
        wanted = text
        for table in TABLES:
            if table.page == page:
                wanted = with_table(wanted, table)
        if wanted != text:
            diffs.append(
                "".join(
                    difflib.unified_diff(
                        text.splitlines(keepends=True),
                        wanted.splitlines(keepends=True),
                        f"{page.name} (as written)",
                        f"{page.name} (from the registry)",
                    )
                )
            )
    return diffs


def write_pages() -> None:
    """Rewrite every page's tables from the registries."""
    for page in sorted({table.page for table in TABLES}):
        text = page.read_text(encoding="utf-8")
        for table in TABLES:
            if table.page == page:
                text = with_table(text, table)
        page.write_text(text, encoding="utf-8")


def main() -> int:
    """Write the tables, or with --check report the pages that differ."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a page differs")
    args = parser.parse_args()
    if not args.check:
        write_pages()
        return 0
    diffs = stale_pages()
    for diff in diffs:
        sys.stdout.write(diff)
    if diffs:
        print("run: .venv/bin/python scripts/registry_tables.py", file=sys.stderr)
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main())
