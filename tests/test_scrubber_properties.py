"""Invariants of the scrubber over generated keys, leads and server texts (Hypothesis)."""

from __future__ import annotations

import base64
import html
import json
import re
import unicodedata
from datetime import date
from urllib.parse import quote, quote_plus

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from target_carecycle.client import MAX_SERVER_TEXT, Scrubber, usable_id  # noqa: E402

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
    visible = out.replace("<value>", "\0").replace("<api key>", "\0")
    visible = visible.replace("<externalId>", "\0").lower()
    assert first.lower() not in visible
    assert last.lower() not in visible
    assert key not in out
    assert "\n" not in out and "\r" not in out
    assert len(out) <= MAX_SERVER_TEXT


# Spellings careCycle could echo: phones in any US format, dates, escaped or decomposed names

national_numbers = st.builds(
    lambda area, exchange, line: f"{area}{exchange}{line}",
    st.integers(200, 999).map(str),
    st.integers(200, 999).map(str),
    st.integers(0, 9999).map(lambda n: f"{n:04d}"),
)
separators = st.sampled_from(["", " ", "-", ".", "  ", " - ", "/", "\u00a0"])
prefixes = st.sampled_from(["", "+1", "+1 ", "+1-", "1 ", "1-", "1.", "+1 (", "1("])
plain_words = st.text(st.characters(min_codepoint=97, max_codepoint=122), max_size=12)


@settings(max_examples=400, deadline=None)
@given(
    national=national_numbers,
    prefix=prefixes,
    first=separators,
    second=separators,
    parentheses=st.booleans(),
    before=plain_words,
    after=plain_words,
)
def test_a_phone_sent_is_scrubbed_in_any_common_us_format(
    national, prefix, first, second, parentheses, before, after
):
    area, exchange, line = national[:3], national[3:6], national[6:]
    area = f"({area})" if parentheses and not prefix.endswith("(") else area
    if prefix.endswith("("):
        area += ")"
    spelled = f"{prefix}{area}{first}{exchange}{second}{line}"
    lead = {"phoneNumber": f"+1{national}", "externalId": "x-1"}
    out = Scrubber("cc_test_phone_key_0001", [lead])(f"{before} {spelled} {after}", limit=10_000)
    digits = "".join(ch for ch in out if ch.isdigit())
    assert national not in digits and national[3:] not in digits, (spelled, out)


DATE_FORMATS = [
    "{y}-{m:02d}-{d:02d}",
    "{y}/{m:02d}/{d:02d}",
    "{m:02d}/{d:02d}/{y}",
    "{m}/{d}/{y}",
    "{m:02d}-{d:02d}-{y}",
    "{m}-{d}-{y}",
    "{m:02d}.{d:02d}.{y}",
    "{d:02d}/{m:02d}/{y}",
    "{y}{m:02d}{d:02d}",
    "{m:02d}{d:02d}{y}",
    "{y}-{m:02d}-{d:02d}T00:00:00Z",
    "{month} {d}, {y}",
    "{mon} {d} {y}",
    "{d} {month} {y}",
    "{m:02d}/{d:02d}/{yy:02d}",
]
MONTHS = "January February March April May June July August September October November December"


@settings(max_examples=400, deadline=None)
@given(
    born=st.dates(min_value=date(1900, 1, 1), max_value=date(2010, 12, 31)),
    spelling=st.sampled_from(DATE_FORMATS),
    sent_with=st.sampled_from(["-", "/"]),
    before=plain_words,
    after=plain_words,
)
def test_a_birth_date_sent_is_scrubbed_in_the_formats_carecycle_accepts_and_iso(
    born, spelling, sent_with, before, after
):
    month = MONTHS.split()[born.month - 1]
    spelled = spelling.format(
        y=born.year, yy=born.year % 100, m=born.month, d=born.day, month=month, mon=month[:3]
    )
    sent = f"{born.month:02d}{sent_with}{born.day:02d}{sent_with}{born.year}"
    lead = {"dateOfBirth": sent, "externalId": "x-1"}
    out = Scrubber("cc_test_date_key_0001", [lead])(f"{before} {spelled} {after}", limit=10_000)
    assert spelled not in out, out
    assert "<value>" in out


name_letters = st.characters(categories=["Lu", "Ll"], max_codepoint=0x24F).filter(
    lambda ch: ch.casefold() == ch.lower() and len(ch.lower()) == 1 and ch not in "İı"
)


def escaped_forms(name: str) -> list[str]:
    """A name as careCycle's JSON, HTML or URL encoders, or a decomposing system, may send it."""
    return [
        name,
        unicodedata.normalize("NFD", name),
        unicodedata.normalize("NFKD", name),
        json.dumps(name)[1:-1],  # ensure_ascii: \u00e9
        json.dumps(unicodedata.normalize("NFD", name))[1:-1],
        html.escape(name).encode("ascii", "xmlcharrefreplace").decode(),  # &#233;
        "".join(f"&#x{ord(ch):x};" for ch in name),
        quote(name, safe=""),
        quote(unicodedata.normalize("NFD", name), safe=""),
        name.upper(),
    ]


@settings(max_examples=300, deadline=None)
@given(
    name=st.text(name_letters, min_size=3, max_size=16),
    which=st.integers(0, 9),
    before=plain_words,
    after=plain_words,
)
def test_a_name_sent_is_scrubbed_escaped_or_decomposed(name, which, before, after):
    spelled = escaped_forms(name)[which]
    lead = {"firstName": name, "externalId": "x-1"}
    out = Scrubber("cc_test_name_key_0001", [lead])(f"{before} {spelled} {after}", limit=10_000)
    visible = unicodedata.normalize("NFKC", out).casefold()
    assert unicodedata.normalize("NFKC", name).casefold() not in visible, (spelled, out)
    assert spelled not in out


@settings(max_examples=300, deadline=None)
@given(
    value=st.text(name_letters, min_size=3, max_size=16),
    external_id=st.from_regex(r"[A-Za-z0-9:_-]{3,40}", fullmatch=True),
    which=st.integers(0, 9),
    before=plain_words,
    after=plain_words,
)
def test_custom_values_and_external_ids_sent_are_scrubbed(value, external_id, which, before, after):
    """A custom field's value (in any escaped spelling) and the batch's externalId never
    survive careCycle's text, when the value could identify someone."""
    if value.strip().casefold() in {"true", "false", "yes", "null", "none"}:
        return
    spelled = escaped_forms(value)[which]
    lead = {
        "externalId": external_id,
        "customFields": [{"fieldKey": "note", "value": value}],
    }
    text = f"{before} {external_id} {spelled} {after}"
    out = Scrubber("cc_test_custom_key_0001", [lead])(text, limit=10_000)
    visible = unicodedata.normalize("NFKC", out.replace("<externalId>", "\0")).casefold()
    assert unicodedata.normalize("NFKC", value).casefold() not in visible, (spelled, out)
    assert external_id.casefold() not in visible, out


@settings(max_examples=300, deadline=None)
@given(
    identifier=st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True),
    other=st.text(max_size=80),
)
def test_only_identifiers_become_carecycle_ids(identifier, other):
    lead = {"phoneNumber": "+13128471928", "firstName": "Zebediah", "externalId": "x-1"}
    scrub = Scrubber("cc_test_ids_key_0001", [lead])
    kept = usable_id(identifier, scrub, lead)
    assert kept in (identifier, None)
    if kept is None:  # refused only when it holds the key or the lead's own data
        assert (
            "3128471928" in identifier.replace("-", "").replace("_", "")
            or "8471928" in identifier.replace("-", "").replace("_", "")
            or "zebediah" in identifier.lower()
            or identifier.lower().startswith("cc_")
            or "cc_" in identifier.lower()
        ), identifier
    if re.fullmatch(r"[A-Za-z0-9_-]{1,64}", other) is None:
        assert usable_id(other, scrub, lead) is None
