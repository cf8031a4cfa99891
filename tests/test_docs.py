"""Docs that cannot drift: no test counts, the contract they cite is in the repository.

(The `meltano config` commands of the docs run in tests/pipelines/test_documented_commands.py,
the demo output in docs/pipelines.md is checked by tests/pipelines/test_demo_output.py, the
Hub and meltano.yml declarations by tests/test_hub_definition.py.)
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("*.md"))]
# "1165 tests", "249 passed", "12 failed": a number that is stale after the next test is added.
TEST_COUNT = re.compile(
    r"\b\d+(?:,\d{3})*\s+(?:tests?|passed|failed|skipped|errors?)\b", re.IGNORECASE
)


def test_no_page_states_a_test_count() -> None:
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        assert not TEST_COUNT.findall(text), page.name


def test_the_count_pattern_finds_counts() -> None:
    assert len(TEST_COUNT.findall("pytest 249 s, 1165 tests; 28 passed, 1 failed")) == 3
    assert TEST_COUNT.findall("1,165 tests")
    assert not TEST_COUNT.findall("batches of 200 leads, 60 requests a minute")
    assert not TEST_COUNT.findall("received 400, succeeded 365, failed 0, skipped 0")


def test_the_carecycle_contract_is_in_docs_and_every_citation_points_there() -> None:
    """docs/carecycle-api.md is the contract; the sandbox and the client cite it by that path."""
    contract = ROOT / "docs" / "carecycle-api.md"
    assert "POST https://api.carecycle.ai/v2/leads/upload" in contract.read_text(encoding="utf-8")
    cited_by = []
    for path in sorted((ROOT / "target_carecycle").rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        for match in re.finditer(r"[\w./-]*carecycle-api\.md", text):
            assert match.group() == "docs/carecycle-api.md", (path.name, match.group())
            cited_by.append(path.relative_to(ROOT).as_posix())
    assert "target_carecycle/client.py" in cited_by
    assert any(p.startswith("target_carecycle/sandbox/") for p in cited_by)
    for page in PAGES:
        for link in re.findall(r"\]\(([^)#]*carecycle-api\.md)\)", page.read_text("utf-8")):
            assert (page.parent / link).resolve() == contract.resolve(), (page.name, link)
