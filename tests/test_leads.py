"""Tables for target_carecycle.leads: each normaliser, rejection and omission rules."""

from __future__ import annotations

import math
import random
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import phonenumbers
import pytest

from target_carecycle import fields, leads
from target_carecycle.leads import (
    LEAD_FIELDS,
    LeadResult,
    canonical_text,
    normalise_lead,
)

BASE = {"phoneNumber": "+13128471928", "postalCode": "60614"}
TOMORROW = date.today() + timedelta(days=1)


def one(field: str, value: Any, **kwargs: Any) -> tuple[Any, str | None]:
    """Normalise one optional field on an otherwise valid lead: (sent value, omission)."""
    result = normalise_lead({**BASE, field: value}, **kwargs)
    assert result.lead is not None, result.rejection
    return result.lead.get(field), result.omitted.get(field)


def sent(field: str, value: Any, expected: Any) -> None:
    got, omitted = one(field, value)
    assert omitted is None
    assert got == expected
    assert type(got) is type(expected)


def left_out(field: str, value: Any, reason: str) -> None:
    got, omitted = one(field, value)
    assert got is None
    assert omitted == reason


# --------------------------------------------------------------------------- the registry's rules
# The field list, kinds and limits are the registry's (target_carecycle/fields.py), checked
# against the contract in tests/test_fields.py; here normalise_lead is held to them.

SAMPLE_BY_KIND: dict[str, Any] = {
    "phone": "3128471928",
    "postal_code": "60614",
    "timezone": "america/chicago",
    "date": "1950-03-07",
    "integer": "55,000",
    "number": "$12.50",
    "boolean": "yes",
    "string": "  text  ",
    "custom_fields": {"plan": "gold"},
}


@pytest.mark.parametrize("name", list(LEAD_FIELDS))
def test_every_registry_field_is_normalised_and_sent(name):
    spec = LEAD_FIELDS[name]
    value = spec.choices[0].upper() if spec.kind == "enum" else SAMPLE_BY_KIND[spec.kind]
    if name == "email":
        value = "Ann@Example.com"
    result = normalise_lead({"phoneNumber": "+13128471928", "timezone": "EST", name: value})
    assert result.lead is not None and result.omitted == {}, name
    assert result.lead[name] not in (None, ""), name


@pytest.mark.parametrize(
    "name", [name for name, spec in LEAD_FIELDS.items() if spec.max_length is not None]
)
def test_every_registry_length_limit_is_enforced_never_truncated(name):
    limit = LEAD_FIELDS[name].max_length
    assert limit is not None

    def text(length: int) -> str:
        return "a" * (length - 6) + "@b.com" if name == "email" else "A" * length

    assert one(name, text(limit))[1] is None
    assert one(name, text(limit + 1)) == (None, f"longer than {limit} characters")


def test_the_registry_names_are_what_leads_exports():
    assert leads.LEAD_FIELDS is fields.LEAD_FIELDS
    assert leads.BOOLEAN_FIELDS == fields.BOOLEAN_FIELDS
    assert (leads.GENDERS, leads.MARITAL_STATUSES) == (fields.GENDERS, fields.MARITAL_STATUSES)
    assert leads.FieldSpec is fields.FieldSpec


# --------------------------------------------------------------------------- phone


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("+13128471928", "+13128471928"),
        ("3128471928", "+13128471928"),
        ("13128471928", "+13128471928"),
        ("(312) 847-1928", "+13128471928"),
        ("312.847.1928", "+13128471928"),
        ("1-312-847-1928", "+13128471928"),
        ("+1 (312) 847-1928", "+13128471928"),
        ("  312 847 1928  ", "+13128471928"),
        ("312-847-1928 ext. 12", "+13128471928"),
        (3128471928, "+13128471928"),
        (13128471928, "+13128471928"),
        (Decimal("3128471928"), "+13128471928"),
        (3128471928.0, "+13128471928"),
        ("+1 416 967 1111", "+14169671111"),  # Canada is NANP
        ("+1 246 521 0000", "+12465210000"),  # Barbados thousands-block: valid
        ("312-555-0200", "+13125550200"),  # 555 outside 0100-0199 is a real exchange
        ("+1312\u0668471928", "+13128471928"),  # a non-ASCII digit: phonenumbers normalises it
    ],
)
def test_phone_valid(value, expected):
    lead = normalise_lead({**BASE, "phoneNumber": value}).lead
    assert lead is not None and lead["phoneNumber"] == expected


@pytest.mark.parametrize(
    "value",
    [
        "555-555-0123",  # 555 is not an assigned area code
        "(555) 847-1928",
        "(312) 555-0142",  # 555-0100 to 0199 are reserved for fiction
        "+1 512 555 0199",
        "+44 20 7946 0958",  # other country code
        "+3128471928",  # +31 is the Netherlands
        "312847192",  # 9 digits
        "312847192811",  # 12 digits
        "23128471928",  # 11 digits not starting with 1
        "0128471928",
        "1128471928",
        "+1 246 521 2000",  # Barbados block 246-521-2: not assigned
        "not a phone",
        True,
        3128471928.5,
        Decimal("NaN"),
        float("inf"),
        {"number": "3128471928"},
        ["3128471928"],
    ],
)
def test_phone_invalid_rejects(value):
    result = normalise_lead({**BASE, "phoneNumber": value})
    assert result.lead is None
    assert result.rejection == "phoneNumber: not a valid US phone number"


@pytest.mark.parametrize("value", [None, "", "   "])
def test_phone_missing(value):
    result = normalise_lead({**BASE, "phoneNumber": value})
    assert result == LeadResult(lead=None, rejection="phoneNumber: missing", omitted={})


def test_phone_absent_key():
    assert normalise_lead({"postalCode": "60614"}).rejection == "phoneNumber: missing"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("555-555-0123", "+15555550123"),
        ("(312) 847-1928", "+13128471928"),
        ("+1 312 847 1928", "+13128471928"),
        ("13128471928", "+13128471928"),
        (3128471928, "+13128471928"),
        ("0128471928", None),  # area code starts with 0
        ("3121471928", None),  # exchange starts with 1
        ("+44 20 7946 0958", None),
        ("+3128471928", None),
        ("312847192", None),
        ("312-847-19x8", None),
    ],
)
def test_phone_format_mode(value, expected):
    result = normalise_lead({**BASE, "phoneNumber": value}, phone_validation="format")
    if expected is None:
        assert result.rejection == "phoneNumber: not a valid US phone number"
    else:
        assert result.lead is not None and result.lead["phoneNumber"] == expected


def test_unknown_phone_validation_mode():
    with pytest.raises(ValueError, match="phone_validation"):
        normalise_lead(BASE, phone_validation="lenient")


def _slow(text: str) -> str | None:
    """The reference: phonenumbers.parse (region US) + is_valid_number."""
    try:
        number = phonenumbers.parse(text, "US")
    except phonenumbers.NumberParseException:
        return None
    national = str(number.national_number)
    if number.country_code != 1 or len(national) != 10 or not phonenumbers.is_valid_number(number):
        return None
    if national[3:8] == "55501":  # NXX-555-01XX is reserved for fiction
        return None
    return "+1" + national


def test_phone_fast_path_matches_phonenumbers():
    rng = random.Random(20240229)
    prefixes = ["246521", "246522", "876606", "2465", "8766", "523", "524", "721", "340", "555"]
    shapes = [
        "{}",
        "+1{}",
        "1{}",
        "({0[0]}{0[1]}{0[2]}) {0[3]}{0[4]}{0[5]}-{0[6]}{0[7]}{0[8]}{0[9]}",
    ]
    for _ in range(6000):
        head = rng.choice([*prefixes, ""])
        digits = head + "".join(rng.choice("0123456789") for _ in range(10 - len(head)))
        text = rng.choice(shapes).format(digits)
        try:
            fast = leads._norm_phone_strict(text)
        except leads._Invalid:
            fast = None
        assert fast == _slow(text), text


def test_phone_cache_key_is_long_enough():
    # Barbados and Jamaica have thousands-block patterns: 6 digits would not be enough.
    assert 7 <= leads._nanp_decisive_digits() <= 10


# --------------------------------------------------------------------------- postal code


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("60614", "60614"),
        ("60614-1234", "60614"),
        ("606141234", "60614"),
        ("60614 1234", "60614"),
        (" 60614 ", "60614"),
        ("2134", "02134"),
        ("501", "00501"),
        (2134, "02134"),
        (501, "00501"),
        (60614, "60614"),
        (2134.0, "02134"),
        (Decimal("2134"), "02134"),
        (Decimal("60614.00"), "60614"),
    ],
)
def test_postal_code_valid(value, expected):
    sent("postalCode", value, expected)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("12", "not a valid 5-digit ZIP code"),
        ("606145", "not a valid 5-digit ZIP code"),
        ("60614-12", "not a valid 5-digit ZIP code"),
        ("ABCDE", "not a valid 5-digit ZIP code"),
        ("SW1A 1AA", "not a valid 5-digit ZIP code"),
        ("00000", "not a valid 5-digit ZIP code"),
        (0, "not a valid 5-digit ZIP code"),
        (12, "not a valid 5-digit ZIP code"),
        (606141234, "not a valid 5-digit ZIP code"),
        (2134.5, "not a valid 5-digit ZIP code"),
        (float("nan"), "not a valid 5-digit ZIP code"),
        (True, "not a ZIP code"),
        ({"zip": "60614"}, "not a ZIP code"),
    ],
)
def test_postal_code_invalid(value, reason):
    result = normalise_lead({**BASE, "postalCode": value, "timezone": "America/Chicago"})
    assert result.lead is not None and "postalCode" not in result.lead
    assert result.omitted == {"postalCode": reason}


# --------------------------------------------------------------------------- time zone


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("America/New_York", "America/New_York"),
        ("  America/Chicago ", "America/Chicago"),
        ("america/los_angeles", "America/Los_Angeles"),
        ("Pacific/Honolulu", "Pacific/Honolulu"),
        ("EST", "EST"),
        ("est", "EST"),
        ("Cst", "CST"),
        ("mst", "MST"),
        ("pst", "PST"),
        ("UTC", "UTC"),
    ],
)
def test_timezone_valid(value, expected):
    sent("timezone", value, expected)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("Eastern", "not an IANA time zone or EST/CST/MST/PST"),
        ("EDT", "not an IANA time zone or EST/CST/MST/PST"),
        ("America/Nowhere", "not an IANA time zone or EST/CST/MST/PST"),
        ("localtime", "not an IANA time zone or EST/CST/MST/PST"),
        (-5, "not a time zone"),
    ],
)
def test_timezone_invalid(value, reason):
    left_out("timezone", value, reason)


def test_timezone_alone_is_enough():
    result = normalise_lead({"phoneNumber": "3128471928", "timezone": "cst"})
    assert result.lead == {"phoneNumber": "+13128471928", "timezone": "CST"}


# --------------------------------------------------------------------------- date of birth


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1950-03-07", "03-07-1950"),
        ("1950-03-07T00:00:00Z", "03-07-1950"),
        ("1950-03-07T12:30:00.123+05:00", "03-07-1950"),
        ("1950-03-07 00:00:00", "03-07-1950"),
        ("3/7/1950", "03-07-1950"),
        ("03/07/1950", "03-07-1950"),
        ("03-07-1950", "03-07-1950"),
        ("3-7-1950", "03-07-1950"),
        ("3/7/1950 12:00 AM", "03-07-1950"),
        ("12/31/1999", "12-31-1999"),
        ("2/29/1952", "02-29-1952"),  # leap year
        ("2000-02-29", "02-29-2000"),
        ("1900-01-01", "01-01-1900"),
        (date(1950, 3, 7), "03-07-1950"),
        (datetime(1950, 3, 7, 23, 59, tzinfo=timezone.utc), "03-07-1950"),
        (date.today(), date.today().strftime("%m-%d-%Y")),
    ],
)
def test_date_of_birth_valid(value, expected):
    sent("dateOfBirth", value, expected)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("02/30/1950", "not a valid date"),
        ("1950-02-30", "not a valid date"),
        ("2/29/1951", "not a valid date"),  # not a leap year
        ("1900-02-29", "not a valid date"),  # 1900 was not a leap year
        ("13/01/1950", "not a valid date"),  # day-first is not accepted
        ("00/10/1950", "not a valid date"),
        ("03/07/50", "not a valid date"),  # two-digit year
        ("3/7-1950", "not a valid date"),  # mixed separators
        ("March 7, 1950", "not a valid date"),
        ("1950-3-7", "not a valid date"),
        ("1899-12-31", "not a plausible birth date"),
        ("1/1/1800", "not a plausible birth date"),
        (TOMORROW.isoformat(), "not a plausible birth date"),
        (TOMORROW, "not a plausible birth date"),
        (19500307, "not a date"),
        (True, "not a date"),
    ],
)
def test_date_of_birth_invalid(value, reason):
    left_out("dateOfBirth", value, reason)


# --------------------------------------------------------------------------- enums

GENDER_CASES = [
    ("M", "Male"),
    ("male", "Male"),
    (" MAN ", "Male"),
    ("f", "Female"),
    ("Female", "Female"),
    ("woman", "Female"),
    ("nonbinary", "Non-Binary"),
    ("Non-Binary", "Non-Binary"),
    ("non binary", "Non-Binary"),
    ("non_binary", "Non-Binary"),
    ("NB", "Non-Binary"),
    ("enby", "Non-Binary"),
    ("other", "Other"),
    ("O", "Other"),
    ("Prefer Not to Say", "Prefer Not to Say"),
    ("prefer_not_to_say", "Prefer Not to Say"),
    ("declined", "Prefer Not to Say"),
    ("Decline to state", "Prefer Not to Say"),
]


@pytest.mark.parametrize(("value", "expected"), GENDER_CASES)
def test_gender_valid(value, expected):
    sent("gender", value, expected)


@pytest.mark.parametrize(
    ("value", "reason"),
    [("x", "not a recognised gender"), ("mal", "not a recognised gender"), (1, "not a gender")],
)
def test_gender_invalid(value, reason):
    left_out("gender", value, reason)


@pytest.mark.parametrize("value", ["unknown", "Unknown", "U", "n/a", "unspecified"])
def test_enum_placeholders_count_as_absent(value):
    result = normalise_lead({**BASE, "gender": value, "maritalStatus": value})
    assert result.lead == {"phoneNumber": "+13128471928", "postalCode": "60614"}
    assert result.omitted == {}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("single", "Single"),
        ("S", "Single"),
        ("never married", "Single"),
        ("MARRIED", "Married"),
        ("m", "Married"),
        ("divorced", "Divorced"),
        ("D", "Divorced"),
        ("widowed", "Widowed"),
        ("W", "Widowed"),
        ("widow", "Widowed"),
        ("separated", "Separated"),
        ("Domestic Partnership", "Domestic Partnership"),
        ("domestic_partner", "Domestic Partnership"),
        ("partnered", "Domestic Partnership"),
        ("civil union", "Domestic Partnership"),
    ],
)
def test_marital_status_valid(value, expected):
    sent("maritalStatus", value, expected)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("engaged", "not a recognised marital status"),
        ("complicated", "not a recognised marital status"),
        (True, "not a marital status"),
    ],
)
def test_marital_status_invalid(value, reason):
    left_out("maritalStatus", value, reason)


# --------------------------------------------------------------------------- booleans


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("true", True),
        ("TRUE", True),
        ("Yes", True),
        ("y", True),
        ("T", True),
        ("1", True),
        (True, True),
        (1, True),
        (Decimal("1"), True),
        (1.0, True),
        ("false", False),
        ("No", False),
        ("N", False),
        ("f", False),
        ("0", False),
        (False, False),
        (0, False),
    ],
)
@pytest.mark.parametrize("field", ["doNotCall", "medicaid", "isDecisionMaker"])
def test_boolean_valid(field, value, expected):
    sent(field, value, expected)


@pytest.mark.parametrize("value", ["maybe", "2", 2, -1, 0.5, "yes please", Decimal("NaN"), [True]])
def test_boolean_invalid(value):
    left_out("doNotSMS", value, "not a boolean")


# --------------------------------------------------------------------------- integers


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("55,000", 55000),
        ("$55,000", 55000),
        ("$ 55,000.00", 55000),
        ("55000", 55000),
        (55000, 55000),
        (55000.0, 55000),
        (Decimal("55000"), 55000),
        (Decimal("5.5E+4"), 55000),
        (" 3 ", 3),
        (0, 0),
        ("+7", 7),
        (2147483647, 2147483647),
        ("2,147,483,647", 2147483647),
    ],
)
@pytest.mark.parametrize("field", ["householdIncome", "dependentCount"])
def test_integer_valid(field, value, expected):
    sent(field, value, expected)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (2147483648, "out of 32-bit integer range"),
        ("2,147,483,648", "out of 32-bit integer range"),
        (10**12, "out of 32-bit integer range"),
        (-1, "negative"),
        ("-5", "negative"),
        (55000.5, "not a whole number"),
        ("55,000.50", "not a whole number"),
        (Decimal("2.5"), "not a whole number"),
        (True, "not an integer"),
        ("abc", "not an integer"),
        ("5,00", "not an integer"),
        ("1e5", "not an integer"),
        ({"amount": 1}, "not an integer"),
    ],
)
def test_integer_invalid(value, reason):
    left_out("householdIncome", value, reason)


# --------------------------------------------------------------------------- lead cost


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("$12.50", 12.5),
        ("12.5", 12.5),
        (12.5, 12.5),
        (Decimal("12.50"), 12.5),
        (Decimal("12"), 12),
        (12, 12),
        ("0", 0),
        ("$1,250", 1250),
    ],
)
def test_lead_cost_valid(value, expected):
    sent("leadCost", value, expected)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (-1, "negative"),
        ("-$1.00", "negative"),
        ("twelve", "not a number"),
        (True, "not a number"),
    ],
)
def test_lead_cost_invalid(value, reason):
    left_out("leadCost", value, reason)


NOT_A_DOUBLE = [
    Decimal("1e400"),
    10**400,
    -(10**400),
    Decimal("-1e400"),
    "1" + "0" * 400,
    float("inf"),
    float("nan"),
    Decimal("NaN"),
    Decimal("-Infinity"),
]


@pytest.mark.parametrize("field", ["leadCost", "householdIncome", "dependentCount"])
@pytest.mark.parametrize("value", NOT_A_DOUBLE, ids=str)
@pytest.mark.parametrize("strict", [False, True])
def test_a_number_beyond_a_double_rejects_the_record_never_sent_as_null(field, value, strict):
    """1e400 became float('inf'), which JSON encoders write as null: the lead lost its cost."""
    result = normalise_lead({**BASE, field: value}, strict=strict)
    assert result.lead is None
    assert (
        result.rejection
        == f"{field}: not a finite number (beyond a double's range, or NaN/infinity)"
    )


@pytest.mark.parametrize("value", [Decimal("1.7e308"), 10**300, "1e5"])
def test_a_large_but_finite_lead_cost_is_sent_as_a_number(value):
    result = normalise_lead({**BASE, "leadCost": value})
    if result.lead is None or "leadCost" not in result.lead:
        assert result.omitted.get("leadCost") == "not a number"  # "1e5": not a money text
        return
    assert math.isfinite(float(result.lead["leadCost"]))


# --------------------------------------------------------------------------- strings


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("firstName", "  Ann ", "Ann"),
        ("lastName", "O'Brien", "O'Brien"),
        ("medicaidNumber", 12345, "12345"),
        ("vaNumber", Decimal("12"), "12"),
        ("externalId", Decimal("12.00"), "12"),
        ("externalId", 12.0, "12"),
        ("carrierAssignedCustomerId", 12.5, "12.5"),
        ("healthSherpaCustomerId", Decimal("1.50"), "1.5"),
        ("city", "x" * 255, "x" * 255),
        ("language", "y" * 50, "y" * 50),
        ("email", "  John.Doe@Example.COM ", "john.doe@example.com"),
        ("state", "IL", "IL"),
        ("state", "il", "IL"),
        ("state", "Illinois", "IL"),
        ("state", "new  york", "NY"),
        ("state", "District of Columbia", "DC"),
        ("state", "Ontario", "Ontario"),
        ("mbiNumber", "1eg4-te5-mk73", "1EG4TE5MK73"),
        ("mbiNumber", " 1EG4 TE5 MK73 ", "1EG4TE5MK73"),
        ("sourceId", "web-form", "web-form"),
        ("county", "Cook", "Cook"),
    ],
)
def test_string_valid(field, value, expected):
    sent(field, value, expected)


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("firstName", "x" * 256, "longer than 255 characters"),
        ("address", "1 Main St " * 30, "longer than 255 characters"),
        ("externalId", 10**300, "longer than 255 characters"),
        ("state", "x" * 51, "longer than 50 characters"),
        ("filingStatus", "f" * 51, "longer than 50 characters"),
        ("email", "john.example.com", "not an email address"),
        ("email", "john doe@example.com", "not an email address"),
        ("email", "@example.com", "not an email address"),
        ("firstName", {"first": "Ann"}, "not a string"),
        ("lastName", ["Lee"], "not a string"),
        ("city", True, "not a string"),
        ("county", float("nan"), "not a finite number"),
    ],
)
def test_string_invalid(field, value, reason):
    left_out(field, value, reason)


@pytest.mark.parametrize("value", [Decimal("1e999999999"), Decimal("-1e999999999")])
def test_huge_numbers_are_refused_without_writing_them_out(value):
    lead = {"phoneNumber": value, "postalCode": value, "householdIncome": value, "timezone": "EST"}
    result = normalise_lead(lead)
    assert result.lead is None
    assert result.rejection is not None and "phoneNumber" in result.rejection


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (12, "12"),
        (12.0, "12"),
        (Decimal("12"), "12"),
        (Decimal("12.000"), "12"),
        (Decimal("1E+3"), "1000"),
        (1.5, "1.5"),
        (Decimal("1.50"), "1.5"),
        (1e-07, "0.0000001"),
        # Beyond 40 digits: scientific, never written out (1e999999999 would take minutes)
        (Decimal("1e999999999"), "1E+999999999"),
        (Decimal("12.5e1000000"), "1.25E+1000001"),
        (Decimal("1e-999999999"), "1E-999999999"),
        (Decimal("1" + "0" * 40), "1" + "0" * 40),
    ],
)
def test_canonical_text(value, expected):
    assert canonical_text(value) == expected


# --------------------------------------------------------------------------- custom fields


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ([{"fieldKey": "plan", "value": "Gold"}], [{"fieldKey": "plan", "value": "Gold"}]),
        ([{"fieldKey": "n", "value": Decimal("12")}], [{"fieldKey": "n", "value": "12"}]),
        ([{"fieldKey": "n", "value": 2.5}], [{"fieldKey": "n", "value": "2.5"}]),
        ([{"fieldKey": "ok", "value": True}], [{"fieldKey": "ok", "value": "true"}]),
        ([{"fieldKey": "ok", "value": False}], [{"fieldKey": "ok", "value": "false"}]),
        (
            [{"fieldKey": "d", "value": date(2024, 2, 29)}],
            [{"fieldKey": "d", "value": "2024-02-29"}],
        ),
        (
            [{"fieldKey": "a", "value": None}, {"fieldKey": "b", "value": " x "}],
            [{"fieldKey": "b", "value": "x"}],
        ),
        ({"plan": "Gold", "skip": None}, [{"fieldKey": "plan", "value": "Gold"}]),
        (
            [{"fieldKey": f"k{i}", "value": i} for i in range(50)],
            [{"fieldKey": f"k{i}", "value": str(i)} for i in range(50)],
        ),
    ],
)
def test_custom_fields_valid(value, expected):
    sent("customFields", value, expected)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ([{"fieldKey": f"k{i}", "value": i} for i in range(51)], "more than 50 items"),
        ([{"value": "x"}], "item 0: fieldKey is not a non-empty string"),
        ([{"fieldKey": "a", "value": 1}, "x"], "item 1: not a {fieldKey, value} object"),
        ([{"fieldKey": "a", "value": {"b": 1}}], "item 0: value is not a scalar"),
        ("plan=Gold", "not a list of {fieldKey, value} objects"),
    ],
)
def test_custom_fields_invalid(value, reason):
    left_out("customFields", value, reason)


@pytest.mark.parametrize("value", [[], [{"fieldKey": "a", "value": None}], {}])
def test_custom_fields_empty_are_not_sent(value):
    result = normalise_lead({**BASE, "customFields": value})
    assert result.lead is not None and "customFields" not in result.lead
    assert result.omitted == {}


# --------------------------------------------------------------------------- the whole lead


def test_full_lead():
    raw = {
        "phoneNumber": "(312) 847-1928",
        "postalCode": "60614-1234",
        "timezone": "america/chicago",
        "firstName": " Ann ",
        "email": "Ann@Example.com",
        "dateOfBirth": "2/29/1952",
        "gender": "f",
        "maritalStatus": "domestic_partner",
        "householdIncome": "$55,000",
        "doNotCall": "Y",
        "leadCost": "$12.50",
        "externalId": "contacts:1",
        "customFields": [{"fieldKey": "plan", "value": "Gold"}],
        "notALeadField": "ignored",
    }
    result = normalise_lead(raw)
    assert result == LeadResult(
        lead={
            "phoneNumber": "+13128471928",
            "postalCode": "60614",
            "timezone": "America/Chicago",
            "firstName": "Ann",
            "email": "ann@example.com",
            "dateOfBirth": "02-29-1952",
            "gender": "Female",
            "maritalStatus": "Domestic Partnership",
            "householdIncome": 55000,
            "doNotCall": True,
            "leadCost": 12.5,
            "externalId": "contacts:1",
            "customFields": [{"fieldKey": "plan", "value": "Gold"}],
        },
        rejection=None,
        omitted={},
    )


@pytest.mark.parametrize("blank", [None, "", "   ", "\t\n"])
def test_blank_optional_values_are_absent_not_omitted(blank):
    result = normalise_lead({**BASE, "firstName": blank, "dateOfBirth": blank, "gender": blank})
    assert result.lead == {"phoneNumber": "+13128471928", "postalCode": "60614"}
    assert result.omitted == {}


@pytest.mark.parametrize(
    ("raw", "rejection"),
    [
        ({"phoneNumber": "3128471928"}, "postalCode/timezone: missing (one of them is required)"),
        (
            {"phoneNumber": "3128471928", "postalCode": " ", "timezone": None},
            "postalCode/timezone: missing (one of them is required)",
        ),
        (
            {"phoneNumber": "3128471928", "postalCode": "ABCDE"},
            "postalCode/timezone: neither a valid 5-digit postalCode nor a valid timezone",
        ),
        (
            {"phoneNumber": "3128471928", "postalCode": "1", "timezone": "Mars/Olympus"},
            "postalCode/timezone: neither a valid 5-digit postalCode nor a valid timezone",
        ),
        ({"postalCode": "60614", "timezone": "EST"}, "phoneNumber: missing"),
        (
            {"phoneNumber": "555-555-0123", "postalCode": "60614"},
            "phoneNumber: not a valid US phone number",
        ),
    ],
)
def test_rejections(raw, rejection):
    assert normalise_lead(raw) == LeadResult(lead=None, rejection=rejection, omitted={})


def test_omissions_are_reported_and_lead_still_sent():
    raw = {
        **BASE,
        "timezone": "Eastern",
        "dateOfBirth": "02/30/1950",
        "email": "nope",
        "firstName": "Ann",
    }
    result = normalise_lead(raw)
    assert result.rejection is None
    assert result.lead == {"phoneNumber": "+13128471928", "postalCode": "60614", "firstName": "Ann"}
    assert result.omitted == {
        "timezone": "not an IANA time zone or EST/CST/MST/PST",
        "dateOfBirth": "not a valid date",
        "email": "not an email address",
    }


def test_invalid_postal_code_with_valid_timezone_is_an_omission():
    result = normalise_lead({"phoneNumber": "3128471928", "postalCode": "6", "timezone": "PST"})
    assert result.lead == {"phoneNumber": "+13128471928", "timezone": "PST"}
    assert result.omitted == {"postalCode": "not a valid 5-digit ZIP code"}


@pytest.mark.parametrize(
    ("extra", "rejection"),
    [
        ({"dateOfBirth": "02/30/1950"}, "dateOfBirth: not a valid date (strict)"),
        ({"gender": "x"}, "gender: not a recognised gender (strict)"),
        ({"firstName": "x" * 256}, "firstName: longer than 255 characters (strict)"),
        (
            {"postalCode": "6", "timezone": "EST"},
            "postalCode: not a valid 5-digit ZIP code (strict)",
        ),
        (
            {"householdIncome": 2**31, "email": "no"},
            "householdIncome: out of 32-bit integer range (strict)",
        ),
    ],
)
def test_strict_mode_rejects_instead_of_omitting(extra, rejection):
    raw = {**BASE, **extra}
    assert normalise_lead(raw, strict=True) == LeadResult(None, rejection, {})
    relaxed = normalise_lead(raw)
    assert relaxed.lead is not None and relaxed.omitted


def test_strict_mode_accepts_a_clean_lead():
    result = normalise_lead({**BASE, "gender": "unknown", "firstName": ""}, strict=True)
    assert result == LeadResult(
        lead={"phoneNumber": "+13128471928", "postalCode": "60614"}, rejection=None, omitted={}
    )


SECRET = "7731SECRET"
LEAKY = [
    ("phoneNumber", f"+44 {SECRET}"),
    ("phoneNumber", f"{SECRET}555"),
    ("postalCode", SECRET),
    ("timezone", SECRET),
    ("dateOfBirth", SECRET),
    ("gender", SECRET),
    ("maritalStatus", SECRET),
    ("doNotCall", SECRET),
    ("householdIncome", SECRET),
    ("leadCost", SECRET),
    ("email", SECRET),
    ("firstName", SECRET * 40),
    ("state", SECRET * 10),
    ("customFields", [{"fieldKey": SECRET, "value": {SECRET: SECRET}}]),
]


@pytest.mark.parametrize(("field", "value"), LEAKY)
@pytest.mark.parametrize("strict", [False, True])
def test_reasons_never_contain_the_value(field, value, strict):
    raw = {**BASE, "timezone": "EST", field: value}
    result = normalise_lead(raw, strict=strict)
    reasons = [result.rejection or "", *result.omitted.values()]
    assert reasons != [""], "expected a rejection or an omission"
    assert all(SECRET not in reason for reason in reasons)
    assert all(SECRET not in key for key in result.omitted)


def test_input_is_not_modified():
    raw: dict[str, Any] = {
        **BASE,
        "customFields": [{"fieldKey": "a", "value": 1}],
        "firstName": " Ann ",
    }
    snapshot = {**raw, "customFields": [dict(raw["customFields"][0])]}
    normalise_lead(raw)
    assert raw == snapshot


def test_result_is_frozen():
    result = normalise_lead(BASE)
    with pytest.raises(AttributeError):
        result.lead = None  # type: ignore[misc]
