"""Docs that cannot drift: no test counts, the contract they cite is in the repository.

(The `meltano config` commands of the docs run in tests/pipelines/test_documented_commands.py,
the demo output in docs/pipelines.md is checked by tests/pipelines/test_demo_output.py, the
Hub and meltano.yml declarations by tests/test_hub_definition.py.)
"""

from __future__ import annotations

import importlib.metadata
import re
import shlex
from pathlib import Path

from packaging.requirements import Requirement

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


def install_lines() -> list[list[str]]:
    """The install commands of README.md's Install section, as argv lists."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## Install") : text.index("## Usage")]
    block = section[section.index("```console\n") + len("```console\n") :]
    block = block[: block.index("```")]
    return [shlex.split(line, comments=True) for line in block.splitlines() if line.strip()]


def test_readme_install_lines_name_real_extras_and_the_real_repository() -> None:
    """pipx, uv tool and pip lines, one from git; every extra exists, every URL is ours."""
    metadata = importlib.metadata.metadata("target-carecycle")
    extras = set(metadata.get_all("Provides-Extra") or [])
    repository = next(
        url.split(", ", 1)[1]
        for url in metadata.get_all("Project-URL") or []
        if url.lower().startswith("repository")
    )
    lines = install_lines()
    tools = {" ".join(argv[:2]) if argv[0] != "uv" else " ".join(argv[:3]) for argv in lines}
    assert tools == {"pipx install", "uv tool install", "pip install"}
    requirements = [Requirement(argv[-1]) if "@" in argv[-1] else argv[-1] for argv in lines]
    from_git = 0
    for requirement in requirements:
        if isinstance(requirement, str) and requirement.startswith("git+"):
            assert requirement == f"git+{repository}.git"
            from_git += 1
            continue
        parsed = requirement if isinstance(requirement, Requirement) else Requirement(requirement)
        assert parsed.name == "target-carecycle"
        assert parsed.extras <= extras, parsed.extras - extras
        if parsed.url:
            assert parsed.url == f"git+{repository}.git"
            from_git += 1
    assert from_git >= 1
    assert {"postgres", "faker", "parquet", "s3"} <= extras


def test_the_code_layout_lists_every_module_of_the_package() -> None:
    """docs/development.md's layout table names each module, and no module that is gone."""
    text = (ROOT / "docs" / "development.md").read_text(encoding="utf-8")
    layout = text[text.index("## Code layout") :]
    layout = layout[: layout.index("```", layout.index("```text") + 1)]
    listed = set(re.findall(r"^  ([a-z_]+\.py)\b", layout, re.MULTILINE))
    modules = {
        path.name
        for path in (ROOT / "target_carecycle").glob("*.py")
        if path.name not in {"__init__.py", "__main__.py"}
    }
    assert listed == modules
