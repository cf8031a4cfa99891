"""Normalise and validate one careCycle lead (pure: no I/O, no logging).

The input is a raw lead whose keys are careCycle lead field names (the output of
:mod:`target_carecycle.mapping`); the output is the lead ready for
``POST /v2/leads/upload`` or the reason it cannot be sent. Reasons name the field and
the rule, never the value.
"""

from __future__ import annotations

import functools
import math
import re
import sys
import zoneinfo
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import phonenumbers

# The field facts live in fields.py (one table); leads.py re-exports the names it always had.
from target_carecycle.fields import (
    BOOLEAN_FIELDS,
    GENDERS,
    INT32_MAX,
    INT32_MIN,
    LEAD_FIELDS,
    MARITAL_STATUSES,
    MAX_CUSTOM_FIELDS,
    PERSONAL_FIELDS,
    FieldSpec,
)

__all__ = [
    "BOOLEAN_FIELDS",
    "GENDERS",
    "INT32_MAX",
    "INT32_MIN",
    "LEAD_FIELDS",
    "MARITAL_STATUSES",
    "MAX_CUSTOM_FIELDS",
    "PERSONAL_FIELDS",
    "PHONE_VALIDATION_MODES",
    "FieldSpec",
    "LeadResult",
    "canonical_text",
    "normalise_lead",
]

PHONE_VALIDATION_MODES = ("strict", "format")


@dataclass(frozen=True, slots=True)
class LeadResult:
    """Outcome of :func:`normalise_lead`."""

    lead: dict[str, Any] | None
    rejection: str | None
    omitted: dict[str, str] = field(default_factory=dict)


class _Invalid(ValueError):
    """A value that cannot be normalised; ``reason`` names the rule, never the value."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _NotFinite(_Invalid):
    """A number that is not a finite double (NaN, infinity, 1e400, 10**400).

    JSON encoders write such a number as null or as text careCycle cannot read, so it is never
    left out quietly: the record is rejected, `strict` or not.
    """

    def __init__(self) -> None:
        super().__init__(NOT_FINITE)


# --------------------------------------------------------------------------- numbers

_DOUBLE_MAX = int(sys.float_info.max)
NOT_FINITE = "not a finite number (beyond a double's range, or NaN/infinity)"


# Beyond this many digits a Decimal is kept in scientific form: int(Decimal("1e999999999"))
# would build a billion-digit number (minutes of CPU) for a value no lead field can hold.
MAX_NUMBER_DIGITS = 40


def _integral(value: float | Decimal) -> int | None:
    """Return ``value`` as an int when it is a finite whole number of sane size, else None."""
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    if is_huge(value):
        return None
    if value.is_finite() and value == value.to_integral_value():
        return int(value)
    return None


def is_huge(value: Decimal) -> bool:
    """True for a finite Decimal too large or too small to write out digit by digit."""
    return value.is_finite() and not value.is_zero() and abs(value.adjusted()) > MAX_NUMBER_DIGITS


def scientific_text(value: Decimal) -> str:
    """Canonical scientific text (``1.25E+1000001``), whatever the decimal context's limits."""
    sign, digits, _ = value.as_tuple()
    text = "".join(map(str, digits)).rstrip("0") or "0"
    mantissa = text[0] + ("." + text[1:] if len(text) > 1 else "")
    return f"{'-' if sign else ''}{mantissa}E{value.adjusted():+d}"


def canonical_text(value: int | float | Decimal) -> str:
    """Return a number's canonical text: ``12`` for 12, 12.0 and Decimal('12.00'); ``1.5``.

    Raises ValueError for NaN and infinities.
    """
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("not a finite number")
        whole = _integral(value)
        return str(whole) if whole is not None else format(Decimal(repr(value)).normalize(), "f")
    if not value.is_finite():
        raise ValueError("not a finite number")
    if is_huge(value):
        return scientific_text(value)  # 1E+1000000: canonical, and cheap to write
    whole = _integral(value)
    return str(whole) if whole is not None else format(value.normalize(), "f")


_NUMBER_TEXT = re.compile(r"([+-])?\$?\s*(\d{1,3}(?:,\d{3})+|\d*)(\.\d*)?")


def _parse_number_text(text: str) -> Decimal:
    """Parse ``"55,000"``, ``"$12.50"``, ``"-3"`` into a Decimal."""
    match = _NUMBER_TEXT.fullmatch(text)
    if match is None or not any(ch.isdigit() for ch in text):
        raise _Invalid("not a number")
    sign, whole, frac = match.groups()
    return Decimal((sign or "") + (whole.replace(",", "") or "0") + (frac or ""))


def _to_decimal(value: Any) -> Decimal:
    """Return a number value (not bool) as a Decimal within a double's range.

    Raises _NotFinite for NaN, infinities and numbers beyond a double (1e400, 10**400).
    """
    if isinstance(value, bool):
        raise _Invalid("not a number")
    if isinstance(value, str):
        number = _parse_number_text(value)
    elif isinstance(value, int | Decimal):
        number = Decimal(value)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise _NotFinite
        number = Decimal(repr(value))
    else:
        raise _Invalid("not a number")
    if not number.is_finite() or not math.isfinite(float(number)):
        raise _NotFinite
    return number


def _norm_integer(value: Any) -> int:
    """Non-negative 32-bit integer from int, integral float/Decimal or ``"$55,000"``."""
    if type(value) is int:
        if abs(value) > _DOUBLE_MAX:
            raise _NotFinite
        number = value
    else:
        try:
            whole = _integral(_to_decimal(value))
        except _NotFinite:
            raise
        except _Invalid:
            raise _Invalid("not an integer") from None
        if whole is None:
            raise _Invalid("not a whole number")
        number = whole
    if number > INT32_MAX:
        raise _Invalid("out of 32-bit integer range")
    if number < 0:
        raise _Invalid("negative")
    return number


def _norm_number(value: Any) -> int | float:
    """Non-negative number (leadCost), sent as int when whole, else float."""
    number = _to_decimal(value)
    if number < 0:
        raise _Invalid("negative")
    whole = _integral(number)
    return whole if whole is not None else float(number)


# --------------------------------------------------------------------------- phone

# Separators removed before the fast path; phonenumbers.parse ignores them too.
_PHONE_SEPARATORS = str.maketrans("", "", " ()-.\t\u00a0")
_FAST_PHONE = re.compile(r"(?:\+1|1)?([2-9]\d{9})", re.ASCII)
_FORMAT_PHONE = re.compile(r"(?:\+?1)?([2-9]\d{2}[2-9]\d{6})", re.ASCII)
_FORMAT_SEPARATORS = str.maketrans("", "", " ()-./\t\u00a0")
_PHONE_DESCS = (
    "general_desc",
    "premium_rate",
    "toll_free",
    "shared_cost",
    "voip",
    "personal_number",
    "pager",
    "uan",
    "voicemail",
    "fixed_line",
    "mobile",
)
_NANP_VALIDITY: dict[str, bool] = {}
_NANP_CACHE_LIMIT = 1 << 20
_TRAILING_DIGITS = re.compile(r"(?:\\d(?:\{\d+\})?)+$")
_DIGIT_RUN = re.compile(r"\\d(?:\{(\d+)\})?")


def _top_alternatives(pattern: str) -> list[str]:
    """Split a regex on its top-level ``|``."""
    parts: list[str] = []
    start = depth = 0
    in_class = escaped = False
    for index, char in enumerate(pattern):
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
        elif char in "()":
            depth += 1 if char == "(" else -1
        elif char == "|" and depth == 0:
            parts.append(pattern[start:index])
            start = index + 1
    parts.append(pattern[start:])
    return parts


def _free_tail(alternative: str) -> int:
    r"""Count trailing unconstrained digits (``\d{n}``) of a fully matched alternative."""
    match = _TRAILING_DIGITS.search(alternative)
    if match is None:
        return 0
    return sum(int(count or 1) for count in _DIGIT_RUN.findall(match.group(0)))


def _max_width(pattern: str) -> int:
    """Upper bound of a quantifier-free prefix pattern's match length (10 if unsure)."""
    bare = pattern.replace("(?:", "(")
    if re.search(r"[*+?{]", bare):
        return 10
    return len(re.findall(r"\[[^\]]*\]|\\.|[^()|]", bare))


@functools.cache
def _nanp_decisive_digits() -> int:
    """How many leading digits decide a 10-digit NANP number's validity (conservative).

    Derived from phonenumbers' own metadata (region selection and every number-type
    pattern), so caching validity per prefix of this length gives exactly the result
    of ``is_valid_number``. It is 7 with current metadata (Barbados and Jamaica have
    thousands-block patterns; the rest of NANP is decided by area code + exchange).
    """
    depth = 3
    for region in phonenumbers.region_codes_for_country_code(1):
        meta = phonenumbers.PhoneMetadata.metadata_for_region(region)
        if meta is None:
            return 10
        if meta.leading_digits:
            depth = max(depth, _max_width(meta.leading_digits))
        for name in _PHONE_DESCS:
            desc = getattr(meta, name)
            pattern = desc.national_number_pattern if desc is not None else None
            for alternative in _top_alternatives(pattern) if pattern else ():
                depth = max(depth, 10 - _free_tail(alternative))
    return min(depth, 10)


def _nanp_valid(national: str) -> bool:
    """``phonenumbers.is_valid_number`` for +1 and a 10-digit number, cached per prefix."""
    key = national[: _nanp_decisive_digits()]
    valid = _NANP_VALIDITY.get(key)
    if valid is None:
        number = phonenumbers.PhoneNumber(country_code=1, national_number=int(national))
        valid = phonenumbers.is_valid_number(number)
        if len(_NANP_VALIDITY) >= _NANP_CACHE_LIMIT:
            _NANP_VALIDITY.clear()
        _NANP_VALIDITY[key] = valid
    return valid


def _phone_text(value: Any) -> str:
    """Return the text of a phone value (str, int, integral float/Decimal)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise _Invalid("not a valid US phone number")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        raise _Invalid("not a valid US phone number")
    whole = _integral(value)
    if whole is None:
        raise _Invalid("not a valid US phone number")
    return str(whole)


def _parse_phone_slow(text: str) -> str | None:
    """Parse with phonenumbers (region US); return the 10-digit NANP number or None."""
    try:
        number = phonenumbers.parse(text, "US")
    except phonenumbers.NumberParseException:
        return None
    national = str(number.national_number)
    if number.country_code != 1 or len(national) != 10:
        return None
    return national if phonenumbers.is_valid_number(number) else None


def _norm_phone_strict(value: Any) -> str:
    """Return a valid NANP number as ``+1XXXXXXXXXX`` (phonenumbers validity, region US)."""
    text = _phone_text(value)
    national: str | None
    if len(text) == 12 and text[:2] == "+1" and text[2] in "23456789" and _ascii_digits(text[2:]):
        national = text[2:]  # already E.164, the common case: skip the clean-up
    elif fast := _FAST_PHONE.fullmatch(text.translate(_PHONE_SEPARATORS)):
        national = fast.group(1)
    else:
        national = _parse_phone_slow(text)
    if national is None or not _nanp_valid(national) or _fictional(national):
        raise _Invalid("not a valid US phone number")
    return "+1" + national


def _ascii_digits(text: str) -> bool:
    return text.isascii() and text.isdigit()


def _fictional(national: str) -> bool:
    """NXX-555-0100 to 0199: reserved by the NANP for fiction, never a real lead's phone."""
    return national[3:6] == "555" and national[6:8] == "01"


def _norm_phone_format(value: Any) -> str:
    """Return a NANP-shaped number (10 digits, or 11 starting 1) as ``+1XXXXXXXXXX``."""
    match = _FORMAT_PHONE.fullmatch(_phone_text(value).translate(_FORMAT_SEPARATORS))
    if match is None:
        raise _Invalid("not a valid US phone number")
    return "+1" + match.group(1)


# --------------------------------------------------------------------------- ZIP, time zone

_ZIP = re.compile(r"(\d{5})(?:[-\s]?\d{4})?", re.ASCII)
_SHORT_ZIP = re.compile(r"\d{3,4}", re.ASCII)


def _norm_postal_code(value: Any) -> str:
    """Five-digit ZIP: ZIP+4 cut to 5, lost leading zeros restored for 3-4 digit values."""
    if isinstance(value, str):
        match = _ZIP.fullmatch(value)
        if match is not None:
            zip5 = match.group(1)
        elif _SHORT_ZIP.fullmatch(value):
            zip5 = value.zfill(5)
        else:
            raise _Invalid("not a valid 5-digit ZIP code")
    elif isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise _Invalid("not a ZIP code")
    else:
        whole = value if isinstance(value, int) else _finite_integral(value)
        if whole is None or not 100 <= whole <= 99999:
            raise _Invalid("not a valid 5-digit ZIP code")
        zip5 = str(whole).zfill(5)
    if zip5 == "00000":
        raise _Invalid("not a valid 5-digit ZIP code")
    return zip5


def _finite_number(value: float | Decimal) -> bool:
    return math.isfinite(value) if isinstance(value, float | int) else value.is_finite()


def _finite_integral(value: float | Decimal) -> int | None:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return _integral(value)


_US_TIMEZONE_ABBREVIATIONS = {"est": "EST", "cst": "CST", "mst": "MST", "pst": "PST"}
_NOT_ZONES = frozenset({"Factory", "localtime", "posixrules", "posix", "right"})


@functools.cache
def _timezones() -> Mapping[str, str]:
    """Lower-cased IANA name -> canonical spelling, plus the four US abbreviations."""
    names = {name.lower(): name for name in zoneinfo.available_timezones() - _NOT_ZONES}
    names.update(_US_TIMEZONE_ABBREVIATIONS)
    return names


def _norm_timezone(value: Any) -> str:
    """Return an IANA time zone name (any case) or EST/CST/MST/PST (uppercase)."""
    if not isinstance(value, str):
        raise _Invalid("not a time zone")
    zone = _timezones().get(value.lower())
    if zone is None:
        raise _Invalid("not an IANA time zone or EST/CST/MST/PST")
    return zone


# --------------------------------------------------------------------------- dates

_ISO_DATE = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})"
    r"(?:[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?(?:Z|[+-]\d{2}(?::?\d{2})?)?)?"
)
_US_DATE = re.compile(
    r"(\d{1,2})([/-])(\d{1,2})\2(\d{4})(?:[ T]\d{1,2}:\d{2}(?::\d{2})?(?:\s?[AaPp][Mm])?)?"
)
_EARLIEST_BIRTH_YEAR = 1900


@functools.lru_cache(maxsize=65536)
def _parse_date_text(text: str) -> date:
    """Parse ISO (date or date-time) or US ``M/D/YYYY`` / ``M-D-YYYY`` text."""
    iso = _ISO_DATE.fullmatch(text)
    if iso is not None:
        year, month, day = iso.group(1), iso.group(2), iso.group(3)
    else:
        us = _US_DATE.fullmatch(text)
        if us is None:
            raise _Invalid("not a valid date")
        month, day, year = us.group(1), us.group(3), us.group(4)
    try:
        return date(int(year), int(month), int(day))
    except ValueError:
        raise _Invalid("not a valid date") from None


def _norm_birth_date(value: Any) -> str:
    """Birth date as ``MM-DD-YYYY``: a real date, not before 1900, not in the future."""
    if isinstance(value, str):
        return _birth_date_from_text(value)
    if isinstance(value, datetime):
        return _birth_date_text(value.date())
    if isinstance(value, date):
        return _birth_date_text(value)
    raise _Invalid("not a date")


@functools.lru_cache(maxsize=65536)
def _birth_date_from_text(text: str) -> str:
    """Cached per input text: birth dates repeat across a file (invalid ones are not cached)."""
    return _birth_date_text(_parse_date_text(text))


def _birth_date_text(day: date) -> str:
    if day.year < _EARLIEST_BIRTH_YEAR or day > date.today():
        raise _Invalid("not a plausible birth date")
    return f"{day.month:02d}-{day.day:02d}-{day.year:04d}"


# --------------------------------------------------------------------------- enums, booleans

_ENUM_SEPARATORS = re.compile(r"[\s_\-]+")
# Placeholders meaning "no data": such an enum value is treated as absent.
_ENUM_PLACEHOLDERS = frozenset({"unknown", "unk", "u", "n/a", "na", "unspecified", "not specified"})
_GENDER_WORDS = {
    **dict.fromkeys(("m", "male", "man"), "Male"),
    **dict.fromkeys(("f", "female", "woman"), "Female"),
    **dict.fromkeys(("nonbinary", "non binary", "nb", "enby"), "Non-Binary"),
    **dict.fromkeys(("other", "o"), "Other"),
    **dict.fromkeys(
        (
            "prefer not to say",
            "prefer not to answer",
            "prefer not to disclose",
            "declined",
            "declined to state",
            "decline to state",
            "decline to answer",
        ),
        "Prefer Not to Say",
    ),
}
_MARITAL_WORDS = {
    **dict.fromkeys(("single", "s", "never married"), "Single"),
    **dict.fromkeys(("married", "m"), "Married"),
    **dict.fromkeys(("divorced", "d"), "Divorced"),
    **dict.fromkeys(("widowed", "w", "widow", "widower"), "Widowed"),
    **dict.fromkeys(("separated", "legally separated"), "Separated"),
    **dict.fromkeys(
        (
            "domestic partnership",
            "domestic partner",
            "domestic partners",
            "partnered",
            "civil union",
            "civil partnership",
        ),
        "Domestic Partnership",
    ),
}
_TRUE_WORDS = frozenset({"true", "t", "yes", "y", "1"})
_FALSE_WORDS = frozenset({"false", "f", "no", "n", "0"})


class _Absent(Exception):
    """Raised by a normaliser when the value is a placeholder for 'no data'."""


def _enum_normaliser(words: Mapping[str, str], noun: str) -> Callable[[Any], str]:
    def normalise(value: Any) -> str:
        if not isinstance(value, str):
            raise _Invalid(f"not a {noun}")
        key = value.lower()
        found = words.get(key)
        if found is None:
            key = _ENUM_SEPARATORS.sub(" ", key).strip()
            found = words.get(key)
        if found is None:
            if key in _ENUM_PLACEHOLDERS:
                raise _Absent
            raise _Invalid(f"not a recognised {noun}")
        return found

    normalise.__doc__ = f"Map a {noun} to careCycle's enum (case and separators ignored)."
    return normalise


def _norm_boolean(value: Any) -> bool:
    """true/false, yes/no, y/n, t/f, 1/0 (any case), bools, and the numbers 0 and 1."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        word = value.lower()
        if word in _TRUE_WORDS:
            return True
        if word in _FALSE_WORDS:
            return False
    elif isinstance(value, int | float | Decimal) and _finite_number(value) and value in (0, 1):
        return value == 1
    raise _Invalid("not a boolean")


# --------------------------------------------------------------------------- strings

_STATE_CODES = {
    "alabama": "AL", "alaska": "AK", "arizona": "AZ", "arkansas": "AR", "california": "CA",
    "colorado": "CO", "connecticut": "CT", "delaware": "DE", "district of columbia": "DC",
    "florida": "FL", "georgia": "GA", "hawaii": "HI", "idaho": "ID", "illinois": "IL",
    "indiana": "IN", "iowa": "IA", "kansas": "KS", "kentucky": "KY", "louisiana": "LA",
    "maine": "ME", "maryland": "MD", "massachusetts": "MA", "michigan": "MI",
    "minnesota": "MN", "mississippi": "MS", "missouri": "MO", "montana": "MT",
    "nebraska": "NE", "nevada": "NV", "new hampshire": "NH", "new jersey": "NJ",
    "new mexico": "NM", "new york": "NY", "north carolina": "NC", "north dakota": "ND",
    "ohio": "OH", "oklahoma": "OK", "oregon": "OR", "pennsylvania": "PA",
    "rhode island": "RI", "south carolina": "SC", "south dakota": "SD", "tennessee": "TN",
    "texas": "TX", "utah": "UT", "vermont": "VT", "virginia": "VA", "washington": "WA",
    "west virginia": "WV", "wisconsin": "WI", "wyoming": "WY", "puerto rico": "PR",
    "guam": "GU", "american samoa": "AS", "northern mariana islands": "MP",
    "virgin islands": "VI", "u.s. virgin islands": "VI", "us virgin islands": "VI",
}  # fmt: skip
_KNOWN_STATE_CODES = frozenset(_STATE_CODES.values()) | {"AA", "AE", "AP"}
_WHITESPACE = re.compile(r"\s+")
_MBI_SEPARATORS = str.maketrans("", "", " -")


def _text(value: Any) -> str:
    """Return a scalar as trimmed text: numbers canonical, dates ISO; else invalid."""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, bool):
        raise _Invalid("not a string")
    if isinstance(value, int | float | Decimal):
        try:
            return canonical_text(value)
        except ValueError:
            raise _Invalid("not a finite number") from None
    if isinstance(value, date):
        return value.isoformat()
    raise _Invalid("not a string")


def _string_normaliser(
    max_length: int | None, transform: Callable[[str], str] | None = None
) -> Callable[[Any], str]:
    def normalise(value: Any) -> str:
        text = value if type(value) is str else _text(value)
        if transform is not None:
            text = transform(text)
        if max_length is not None and len(text) > max_length:
            raise _Invalid(f"longer than {max_length} characters")
        return text

    normalise.__doc__ = "Trimmed text within the field's length limit (never truncated)."
    return normalise


_WHITESPACE_CHAR = re.compile(r"\s")


def _email(text: str) -> str:
    """Lower-case an email address; reject text that is clearly not one."""
    local, at, domain = text.lower().rpartition("@")
    if not at or not local or not domain or _WHITESPACE_CHAR.search(text):
        raise _Invalid("not an email address")
    return f"{local}@{domain}"


def _state(text: str) -> str:
    """Turn a US state or territory name into its USPS code; upper-case known codes."""
    upper = text.upper()
    if upper in _KNOWN_STATE_CODES:
        return upper
    return _STATE_CODES.get(_WHITESPACE.sub(" ", text.lower()), text)


def _mbi(text: str) -> str:
    """Upper-case a Medicare Beneficiary Identifier and drop spaces and dashes."""
    return text.upper().translate(_MBI_SEPARATORS)


# --------------------------------------------------------------------------- custom fields


def _custom_value(value: Any) -> str | None:
    """Return a custom field value as text (None when absent)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list | tuple | set):
        raise _Invalid("value is not a scalar")
    text = _text(value)
    return text or None


def _custom_item(item: Any) -> dict[str, str] | None:
    """Normalise one ``{"fieldKey", "value"}`` item (None when its value is absent)."""
    if not isinstance(item, Mapping):
        raise _Invalid("not a {fieldKey, value} object")
    key = item.get("fieldKey")
    if not isinstance(key, str) or not key.strip():
        raise _Invalid("fieldKey is not a non-empty string")
    value = _custom_value(item.get("value"))
    return None if value is None else {"fieldKey": key.strip(), "value": value}


def _norm_custom_fields(value: Any) -> list[dict[str, str]]:
    """At most 50 ``{"fieldKey", "value"}`` items with text values; None values dropped."""
    if isinstance(value, Mapping):
        value = [{"fieldKey": key, "value": item} for key, item in value.items()]
    if not isinstance(value, list | tuple):
        raise _Invalid("not a list of {fieldKey, value} objects")
    items: list[dict[str, str]] = []
    for position, raw_item in enumerate(value):
        try:
            item = _custom_item(raw_item)
        except _Invalid as exc:
            raise _Invalid(f"item {position}: {exc.reason}") from None
        if item is not None:
            items.append(item)
    if len(items) > MAX_CUSTOM_FIELDS:
        raise _Invalid(f"more than {MAX_CUSTOM_FIELDS} items")
    if not items:
        raise _Absent
    return items


# --------------------------------------------------------------------------- the lead

_Normaliser = Callable[[Any], Any]


# Normalisers by the name a field's spec gives (fields.py: its `normaliser`, else its kind).
_TEXT_RULES: Mapping[str, Callable[[str], str] | None] = {
    "string": None,
    "email": _email,
    "us_state": _state,
    "mbi": _mbi,
}
_ENUM_WORDS: Mapping[str, tuple[Mapping[str, str], str]] = {
    "gender": (_GENDER_WORDS, "gender"),
    "marital_status": (_MARITAL_WORDS, "marital status"),
}
_BY_NAME: Mapping[str, _Normaliser] = {
    "phone": _norm_phone_strict,
    "postal_code": _norm_postal_code,
    "timezone": _norm_timezone,
    "date": _norm_birth_date,
    "boolean": _norm_boolean,
    "integer": _norm_integer,
    "number": _norm_number,
    "custom_fields": _norm_custom_fields,
}
NORMALISER_NAMES = frozenset({*_TEXT_RULES, *_ENUM_WORDS, *_BY_NAME})
"""Every name a field's spec may give as its normaliser (tests/test_fields.py checks)."""


def normaliser_for(spec: FieldSpec) -> _Normaliser:
    """The normaliser a field's spec names; KeyError for a name leads.py does not know."""
    name = spec.normaliser_name
    if name in _TEXT_RULES:
        return _string_normaliser(spec.max_length, _TEXT_RULES[name])
    if name in _ENUM_WORDS:
        words, noun = _ENUM_WORDS[name]
        return _enum_normaliser(words, noun)
    return _BY_NAME[name]


def _build_normalisers() -> dict[str, _Normaliser]:
    return {name: normaliser_for(spec) for name, spec in LEAD_FIELDS.items()}


_NORMALISERS: Mapping[str, Mapping[str, _Normaliser]] = {
    "strict": _build_normalisers(),
    "format": {**_build_normalisers(), "phoneNumber": _norm_phone_format},
}
_NEITHER_ZIP_NOR_ZONE = (
    "postalCode/timezone: neither a valid 5-digit postalCode nor a valid timezone"
)


def _normalise_fields(
    raw: Mapping[str, Any], normalisers: Mapping[str, _Normaliser]
) -> tuple[dict[str, Any], dict[str, str], dict[str, str]]:
    """Normalise every known field of ``raw``; return (lead, omitted, refused reasons).

    Refused: a number no JSON encoder can send as a number (`_NotFinite`).
    """
    lead: dict[str, Any] = {}
    omitted: dict[str, str] = {}
    refused: dict[str, str] = {}
    for name, value in raw.items():
        normalise = normalisers.get(name)
        if normalise is None or value is None:
            continue
        if isinstance(value, str):
            value = value.strip()
            if not value:
                continue
        try:
            lead[name] = normalise(value)
        except _NotFinite as exc:
            refused[name] = exc.reason
        except _Invalid as exc:
            omitted[name] = exc.reason
        except _Absent:
            pass
    return lead, omitted, refused


def _rejected(reason: str) -> LeadResult:
    return LeadResult(lead=None, rejection=reason, omitted={})


def normalise_lead(
    raw: Mapping[str, Any], *, phone_validation: str = "strict", strict: bool = False
) -> LeadResult:
    """Normalise one raw lead (careCycle field names) and decide whether it can be sent.

    A lead is rejected when it has no valid phoneNumber, or neither a valid postalCode
    nor a valid timezone. Other invalid values are left out and reported in
    ``omitted``, or, with ``strict=True``, reject the lead. ``phone_validation`` is
    ``"strict"`` (phonenumbers validity) or ``"format"`` (NANP shape only).
    """
    normalisers = _NORMALISERS.get(phone_validation)
    if normalisers is None:
        raise ValueError(f"phone_validation must be one of {PHONE_VALIDATION_MODES}")
    lead, omitted, refused = _normalise_fields(raw, normalisers)
    if "phoneNumber" not in lead:
        reason = omitted.get("phoneNumber", "missing")
        return _rejected(f"phoneNumber: {reason}")
    if "postalCode" not in lead and "timezone" not in lead:
        if "postalCode" in omitted or "timezone" in omitted:
            return _rejected(_NEITHER_ZIP_NOR_ZONE)
        return _rejected("postalCode/timezone: missing (one of them is required)")
    if refused:  # strict or not: never sent without it, never sent as null
        name, reason = next(iter(refused.items()))
        return _rejected(f"{name}: {reason}")
    if strict and omitted:
        name, reason = next(iter(omitted.items()))
        return _rejected(f"{name}: {reason} (strict)")
    return LeadResult(lead=lead, rejection=None, omitted=omitted)
