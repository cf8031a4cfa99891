"""Invariants of the scrubber over generated keys, leads and server texts (Hypothesis)."""

from __future__ import annotations

import base64
from urllib.parse import quote, quote_plus

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from target_carecycle.client import MAX_SERVER_TEXT, Scrubber  # noqa: E402

KEY_CHARS = st.characters(min_codepoint=33, max_codepoint=126)
keys = st.builds(lambda tail: "cc_" + tail, st.text(KEY_CHARS, min_size=8, max_size=40))
words = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=30)
names = st.text(st.characters(min_codepoint=65, max_codepoint=122), min_size=3, max_size=20)


def spellings(key: str) -> list[str]:
    raw = key.encode()
    return [
        key,
        quote(key, safe=""),
        quote_plus(key),
        base64.b64encode(raw).decode().rstrip("="),
        base64.urlsafe_b64encode(raw).decode().rstrip("="),
    ]


@settings(max_examples=300, deadline=None)
@given(
    key=keys,
    before=words,
    after=words,
    which=st.integers(0, 4),
    upper=st.booleans(),
)
def test_no_spelling_of_the_key_survives(key, before, after, which, upper):
    spelled = spellings(key)[which]
    if upper and which < 3:
        spelled = spelled.upper()
    out = Scrubber(key)(before + spelled + after, limit=10_000)
    assert key not in out
    assert key.lower() not in out.lower()


@settings(max_examples=300, deadline=None)
@given(key=keys, first=names, last=names, before=words, after=words)
def test_no_personal_value_survives_and_text_stays_one_short_line(key, first, last, before, after):
    lead = {"firstName": first, "lastName": last, "externalId": "x:1"}
    out = Scrubber(key, [lead])(f"{before}{first} {last}{after}{key}")
    visible = out.replace("<value>", "\0").replace("<api key>", "\0").lower()
    assert first.lower() not in visible
    assert last.lower() not in visible
    assert key not in out
    assert "\n" not in out and "\r" not in out
    assert len(out) <= MAX_SERVER_TEXT
