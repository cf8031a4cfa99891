"""docs/troubleshooting.md quotes the log's own wording: each phrase it quotes is still written.

A phrase is a backticked text on a `**In the log:**` line (and the lines after it, up to the
blank line); `…` stands for a part that varies. Each phrase must match, piece by piece and in
order, one string literal of the package (f-string and %-format parts count as variable).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "troubleshooting.md"
PACKAGE = ROOT / "target_carecycle"
VARIABLE = "\x00"


def quoted_phrases() -> list[str]:
    phrases: list[str] = []
    for block in DOC.read_text(encoding="utf-8").split("\n\n"):
        if block.startswith("**In the log:**"):
            phrases += re.findall(r"`([^`]+)`", block)
    return phrases


def code_strings() -> list[str]:
    """Every string literal of the package; formatted parts become VARIABLE."""
    found: list[str] = []
    for path in PACKAGE.rglob("*.py"):
        if "sandbox" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                found.append(re.sub(r"%[-0-9.]*[sdfr]", VARIABLE, node.value))
            elif isinstance(node, ast.JoinedStr):
                found.append(
                    "".join(
                        part.value
                        if isinstance(part, ast.Constant) and isinstance(part.value, str)
                        else VARIABLE
                        for part in node.values
                    )
                )
    return found


def matches(phrase: str, text: str) -> bool:
    """The phrase's fixed pieces appear in `text` in order; `…` matches anything."""
    pattern = ".*?".join(re.escape(piece) for piece in phrase.split("…"))
    return re.search(pattern, text, flags=re.DOTALL) is not None


PHRASES = quoted_phrases()


def test_the_page_quotes_the_log_for_every_symptom_the_issue_names():
    text = DOC.read_text(encoding="utf-8")
    for symptom in ("401", "403", "404", "422", "429", "TLS", "locked", "failure policy",
                    "dry run", "No STATE"):  # fmt: skip
        assert symptom.lower() in text.lower(), symptom
    assert len(PHRASES) >= 20


@pytest.mark.parametrize("phrase", PHRASES)
def test_each_quoted_phrase_is_what_the_code_writes(phrase):
    strings = code_strings()
    assert any(matches(phrase, text) for text in strings), f"not in the code: {phrase!r}"


def test_the_readme_links_the_page():
    assert "(docs/troubleshooting.md)" in (ROOT / "README.md").read_text(encoding="utf-8")
