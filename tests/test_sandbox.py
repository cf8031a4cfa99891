"""Tests of the careCycle sandbox: validation rules directly, the server over real HTTP."""

from __future__ import annotations

import contextlib
import http.client
import json
import math
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from target_carecycle.sandbox import (
    DEFAULT_API_KEY,
    DEFAULT_SOURCE_ID,
    SandboxConfig,
    running_sandbox,
)
from target_carecycle.sandbox.cli import build_parser, config_from_args
from target_carecycle.sandbox.server import TokenBucket
from target_carecycle.sandbox.validation import (
    BadRequest,
    parse_body,
    to_e164,
    validate_record,
    validate_records,
)

UPLOAD = "/v2/leads/upload"
READ_ONLY_KEY = "cc_sandbox_read_only"
OTHER_SOURCE = "other-source"
BASE = {"phoneNumber": "+15551234567", "postalCode": "12345"}


def lead(**fields: Any) -> dict[str, Any]:
    """A valid lead with ``fields`` merged over the minimal one (``...`` removes a key)."""
    record = {**BASE, **fields}
    return {k: v for k, v in record.items() if v is not ...}


def codes(record: dict[str, Any]) -> list[tuple[tuple[Any, ...], str]]:
    return [(e.path, e.code) for e in validate_record(record, 0)]


# --------------------------------------------------------------------------- validation rules

VALID = [
    ("phoneNumber", "+15551234567"),
    ("phoneNumber", "5551234567"),
    ("phoneNumber", "(555) 123-4567"),
    ("postalCode", "02134"),
    ("firstName", "x" * 255),
    ("lastName", "Ünïcødé"),
    ("email", "a@example.com"),
    ("city", "x" * 255),
    ("county", ""),
    ("address", "1 Main St"),
    ("address2", "x" * 255),
    ("state", "x" * 50),
    ("language", "Spanish"),
    ("filingStatus", "x" * 50),
    ("dateOfBirth", "01-31-1990"),
    ("dateOfBirth", "12/01/2000"),
    ("dateOfBirth", "02/30/1990"),  # the server's pattern does not reject Feb 30
    ("dateOfBirth", "09-15/1975"),  # nor mixed separators: the documented regex allows them
    *[("gender", g) for g in ("Male", "Female", "Non-Binary", "Other", "Prefer Not to Say")],
    *[
        ("maritalStatus", m)
        for m in ("Single", "Married", "Divorced", "Widowed", "Separated", "Domestic Partnership")
    ],
    ("dependentCount", 0),
    ("dependentCount", 2**31 - 1),
    ("householdIncome", -(2**31)),
    ("householdIncome", 85000),
    *[
        (flag, value)
        for flag in (
            "isDecisionMaker",
            "medicaid",
            "veteran",
            "socialSecurityDisability",
            "doNotCall",
            "doNotSMS",
            "doNotEmail",
            "doNotMail",
        )
        for value in (True, False)
    ],
    *[
        (name, "x" * 255)
        for name in (
            "medicaidNumber",
            "vaNumber",
            "carrierAssignedCustomerId",
            "healthSherpaCustomerId",
            "mbiNumber",
            "externalId",
        )
    ],
    ("sourceId", "any-string-is-schema-valid"),
    ("leadCost", 12),
    ("leadCost", 12.75),
    ("leadCost", 0),
    ("customFields", []),
    ("customFields", [{"fieldKey": "plan", "value": "gold"}] * 50),
]


@pytest.mark.parametrize(("name", "value"), VALID)
def test_valid_field_values(name: str, value: Any) -> None:
    assert validate_record(lead(**{name: value}), 0) == []


OPTIONAL = sorted(set(name for name, _ in VALID) - {"phoneNumber", "postalCode"} | {"timezone"})


@pytest.mark.parametrize("name", OPTIONAL)
def test_null_is_allowed_for_optional_fields(name: str) -> None:
    assert validate_record(lead(**{name: None}), 0) == []


@pytest.mark.parametrize(
    "zone", ["America/New_York", "Europe/Paris", "UTC", "EST", "CST", "MST", "PST"]
)
def test_timezone_alone_satisfies_location(zone: str) -> None:
    assert validate_record(lead(postalCode=..., timezone=zone), 0) == []
    assert validate_record(lead(postalCode=None, timezone=zone), 0) == []


INVALID = [
    ("phoneNumber", "555-123-4567", "invalid_string"),
    ("phoneNumber", "+25551234567", "invalid_string"),
    ("phoneNumber", "555123456", "invalid_string"),
    ("phoneNumber", "15551234567", "invalid_string"),
    ("phoneNumber", "(555)123-4567", "invalid_string"),
    ("phoneNumber", "5551234567\n", "invalid_string"),
    ("phoneNumber", "\uff15" * 10, "invalid_string"),  # full-width digits are not [0-9]
    ("phoneNumber", 5551234567, "invalid_type"),
    ("phoneNumber", None, "invalid_type"),
    ("postalCode", "1234", "invalid_string"),
    ("postalCode", "123456", "invalid_string"),
    ("postalCode", "12345-6789", "invalid_string"),
    ("postalCode", "abcde", "invalid_string"),
    ("postalCode", 12345, "invalid_type"),
    ("timezone", "Mars/Olympus", "invalid_string"),
    ("timezone", "EDT", "invalid_string"),
    ("timezone", "america/new_york", "invalid_string"),
    ("timezone", 5, "invalid_type"),
    ("firstName", "x" * 256, "too_big"),
    ("lastName", 7, "invalid_type"),
    ("email", "x" * 256, "too_big"),
    ("address2", ["1 Main St"], "invalid_type"),
    ("state", "x" * 51, "too_big"),
    ("language", "x" * 51, "too_big"),
    ("filingStatus", "x" * 51, "too_big"),
    ("dateOfBirth", "1990-01-31", "invalid_string"),
    ("dateOfBirth", "13/01/1990", "invalid_string"),
    ("dateOfBirth", "01/32/1990", "invalid_string"),
    ("dateOfBirth", "1/2/1990", "invalid_string"),
    ("dateOfBirth", "01.02.1990", "invalid_string"),
    ("dateOfBirth", "01/02/1990 ", "invalid_string"),
    ("gender", "male", "invalid_enum_value"),
    ("gender", "Nonbinary", "invalid_enum_value"),
    ("gender", 1, "invalid_enum_value"),
    ("maritalStatus", "married", "invalid_enum_value"),
    ("dependentCount", 1.5, "invalid_type"),
    ("dependentCount", 2.0, "invalid_type"),
    ("dependentCount", True, "invalid_type"),
    ("dependentCount", "3", "invalid_type"),
    ("dependentCount", 2**31, "too_big"),
    ("householdIncome", -(2**31) - 1, "too_small"),
    ("doNotCall", "true", "invalid_type"),
    ("medicaid", 1, "invalid_type"),
    ("veteran", 0, "invalid_type"),
    ("mbiNumber", "x" * 256, "too_big"),
    ("externalId", 42, "invalid_type"),
    ("sourceId", 5, "invalid_type"),
    ("leadCost", "12", "invalid_type"),
    ("leadCost", True, "invalid_type"),
    ("leadCost", math.inf, "not_finite"),
    ("customFields", {"fieldKey": "a", "value": "b"}, "invalid_type"),
    ("customFields", [{"fieldKey": "a", "value": "b"}] * 51, "too_big"),
    ("hasMedicaid", True, "unrecognized_keys"),  # the response name is not an upload field
    ("favouriteColour", "blue", "unrecognized_keys"),
]


@pytest.mark.parametrize(("name", "value", "code"), INVALID)
def test_invalid_field_values(name: str, value: Any, code: str) -> None:
    assert codes(lead(**{name: value})) == [(("records", 0, name), code)]


@pytest.mark.parametrize(
    ("items", "path", "code"),
    [
        (["x"], ("customFields", 0), "invalid_type"),
        ([{"value": "b"}], ("customFields", 0, "fieldKey"), "invalid_type"),
        ([{"fieldKey": "a"}], ("customFields", 0, "value"), "invalid_type"),
        ([{"fieldKey": 1, "value": "b"}], ("customFields", 0, "fieldKey"), "invalid_type"),
        ([{"fieldKey": "a", "value": None}], ("customFields", 0, "value"), "invalid_type"),
        (
            [{"fieldKey": "a", "value": "b"}, {"fieldKey": "a", "value": "b", "x": 1}],
            ("customFields", 1, "x"),
            "unrecognized_keys",
        ),
    ],
)
def test_invalid_custom_field_items(items: list[Any], path: tuple[Any, ...], code: str) -> None:
    assert codes(lead(customFields=items)) == [(("records", 0, *path), code)]


@pytest.mark.parametrize(
    "record",
    [
        {"phoneNumber": "5551234567"},
        {"phoneNumber": "5551234567", "postalCode": None},
        {"phoneNumber": "5551234567", "postalCode": None, "timezone": None},
    ],
)
def test_postal_code_or_timezone_is_required(record: dict[str, Any]) -> None:
    assert codes(record) == [(("records", 0, "postalCode"), "custom")]


def test_invalid_postal_code_is_an_error_even_with_a_valid_timezone() -> None:
    assert codes(lead(postalCode="1234", timezone="EST")) == [
        (("records", 0, "postalCode"), "invalid_string")
    ]


def test_invalid_timezone_is_an_error_even_with_a_valid_postal_code() -> None:
    assert codes(lead(timezone="Nowhere")) == [(("records", 0, "timezone"), "invalid_string")]


def test_missing_phone_is_reported_as_undefined() -> None:
    (error,) = validate_record({"postalCode": "12345"}, 4)
    assert error.to_json() == {
        "path": ["records", 4, "phoneNumber"],
        "message": "Required",
        "expected": "string",
        "received": "undefined",
        "code": "invalid_type",
    }


def test_received_is_a_type_name_never_the_value() -> None:
    secret = "Secretvalue-123"
    errors = validate_record(lead(gender=secret, dateOfBirth=secret, phoneNumber=secret), 0)
    assert {e.received for e in errors} == {"string"}
    assert all(secret not in json.dumps(e.to_json()) for e in errors)


def test_non_object_record() -> None:
    assert [(e.path, e.code, e.received) for e in validate_record(["x"], 2)] == [
        (("records", 2), "invalid_type", "array")
    ]


def test_validate_records_lists_each_failed_record_once_in_index_order() -> None:
    records = [
        lead(externalId="ok"),
        lead(externalId="e1", firstName="Ann", gender="f", dependentCount="2"),
        "not a record",
        lead(externalId="e3", phoneNumber="1"),
    ]
    errors, failed = validate_records(records)
    assert [e.path for e in errors] == [
        ("records", 1, "gender"),
        ("records", 1, "dependentCount"),
        ("records", 2),
        ("records", 3, "phoneNumber"),
    ]
    assert failed == [
        {
            "index": 1,
            "phoneNumber": "+15551234567",
            "firstName": "Ann",
            "lastName": None,
            "externalId": "e1",
        },
        {"index": 2, "phoneNumber": None, "firstName": None, "lastName": None, "externalId": None},
        {"index": 3, "phoneNumber": "1", "firstName": None, "lastName": None, "externalId": "e3"},
    ]


@pytest.mark.parametrize(
    ("count", "code"), [(0, "too_small"), (1, None), (200, None), (201, "too_big")]
)
def test_record_count_limits(count: int, code: str | None) -> None:
    errors, failed = validate_records([lead()] * count)
    assert [(e.path, e.code) for e in errors] == ([] if code is None else [(("records",), code)])
    assert failed == []


@pytest.mark.parametrize(
    "raw",
    [b"", b"{not json", b"[]", b'"records"', b"{}", b'{"records": {}}', b'{"records": null}',
     b'{"records": [{"leadCost": NaN}]}', b"\xff\xfe", b"[" * 100_000],
)  # fmt: skip
def test_parse_body_rejects(raw: bytes) -> None:
    with pytest.raises(BadRequest):
        parse_body(raw)


def test_parse_body_returns_records() -> None:
    assert parse_body(b'{"records": [{"a": 1}], "extra": true}') == [{"a": 1}]


@pytest.mark.parametrize("phone", ["+15551234567", "5551234567", "(555) 123-4567"])
def test_to_e164(phone: str) -> None:
    assert to_e164(phone) == "+15551234567"


# --------------------------------------------------------------------------- HTTP fixtures

SHARED = SandboxConfig(
    read_only_keys=(READ_ONLY_KEY,),
    sources=(DEFAULT_SOURCE_ID, OTHER_SOURCE),
    rate_limit=0,
)


@pytest.fixture(scope="module")
def shared_sandbox() -> Iterator[Any]:
    with running_sandbox(SHARED) as sandbox:
        yield sandbox


@pytest.fixture
def sandbox(shared_sandbox: Any) -> Any:
    shared_sandbox.reset()
    return shared_sandbox


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as s:
        yield s


def post(
    session: requests.Session,
    sandbox: Any,
    records: Any,
    key: str | None = DEFAULT_API_KEY,
    **kwargs: Any,
) -> requests.Response:
    headers = {} if key is None else {"x-api-key": key}
    return session.post(sandbox.url + UPLOAD, json={"records": records}, headers=headers, **kwargs)


def assert_error(response: requests.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status
    assert response.headers["Content-Type"] == "application/json"
    body: dict[str, Any] = response.json()
    assert body["code"] == code
    assert isinstance(body["message"], str) and body["message"]
    return body


# --------------------------------------------------------------------------- 200 and upsert


def test_defaults() -> None:
    config = SandboxConfig()
    assert (DEFAULT_API_KEY, DEFAULT_SOURCE_ID) == ("cc_sandbox_demo_key", "sandbox-source")
    assert config.api_keys == (DEFAULT_API_KEY,)
    assert config.sources == (DEFAULT_SOURCE_ID,)
    assert (config.rate_limit, config.latency, config.fault_every, config.fault) == (
        60,
        0.0,
        0,
        None,
    )
    assert (config.stall_seconds, config.ledger, config.read_only_keys) == (30.0, None, ())


@pytest.mark.parametrize(
    "kwargs",
    [
        {"fault_every": 2},
        {"fault": "500"},
        {"fault_every": 2, "fault": "418"},
        {"rate_limit": -1},
        {"rate_burst": 0},
        {"api_keys": ()},
        {"read_only_keys": (DEFAULT_API_KEY,)},
    ],
)
def test_inconsistent_config_is_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        SandboxConfig(**kwargs)


def test_running_sandbox_defaults_to_the_cli_defaults() -> None:
    with running_sandbox() as sandbox:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", sandbox.url)
        assert sandbox.api_key == DEFAULT_API_KEY
        assert sandbox.app.config.rate_limit == 60


def test_upload_creates_customers(sandbox: Any, session: requests.Session) -> None:
    records = [
        lead(phoneNumber="(555) 123-4567", externalId="x1", medicaid=True, firstName="Ann"),
        lead(phoneNumber="5559876543", timezone="PST", postalCode=None, sourceId=OTHER_SOURCE),
    ]
    response = post(session, sandbox, records)
    assert response.status_code == 200
    body = response.json()
    assert (body["succeeded"], body["failed"], body["errors"]) == (2, 0, [])
    first, second = body["results"]
    uuid.UUID(first["id"])
    assert first["status"] == "Lead"
    assert first["phoneNumber"] == "+15551234567"
    assert first["hasMedicaid"] is True and "medicaid" not in first
    assert (first["firstName"], first["externalId"], first["postalCode"]) == ("Ann", "x1", "12345")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", first["createdAt"])
    assert first["updatedAt"] == first["createdAt"]
    assert (second["phoneNumber"], second["timezone"], second["sourceId"]) == (
        "+15559876543",
        "PST",
        OTHER_SOURCE,
    )
    assert sandbox.customers() == body["results"]
    stats = sandbox.stats()
    assert stats["requests"] == {"200": 1}
    assert (stats["upload_requests"], stats["batch_sizes"], stats["leads_received"]) == (1, [2], 2)
    assert (stats["created"], stats["updated"], stats["failed"], stats["customers"]) == (2, 0, 0, 2)


def test_same_external_id_twice_updates_the_same_customer(
    sandbox: Any, session: requests.Session
) -> None:
    created = post(session, sandbox, [lead(externalId="e1", firstName="Ann", city="Reno")]).json()
    time.sleep(0.002)
    updated = post(
        session, sandbox, [lead(externalId="e1", phoneNumber="5550000000", firstName="Anne")]
    ).json()
    old, new = created["results"][0], updated["results"][0]
    assert new["id"] == old["id"]
    assert new["createdAt"] == old["createdAt"] and new["updatedAt"] > old["updatedAt"]
    assert (new["firstName"], new["city"], new["phoneNumber"]) == ("Anne", "Reno", "+15550000000")
    stats = sandbox.stats()
    assert (stats["created"], stats["updated"], stats["customers"]) == (1, 1, 1)


def test_phone_match_without_external_id(sandbox: Any, session: requests.Session) -> None:
    first = post(session, sandbox, [lead(phoneNumber="+15551112222", lastName="Lee")]).json()
    second = post(session, sandbox, [lead(phoneNumber="(555) 111-2222", email="l@x.org")]).json()
    assert second["results"][0]["id"] == first["results"][0]["id"]
    assert second["results"][0]["lastName"] == "Lee"
    assert sandbox.stats()["customers"] == 1


def test_phone_match_follows_phone_changes(sandbox: Any, session: requests.Session) -> None:
    a = post(session, sandbox, [lead(externalId="a", phoneNumber="5550000001")]).json()["results"][
        0
    ]
    b = post(session, sandbox, [lead(externalId="b", phoneNumber="5550000001")]).json()["results"][
        0
    ]
    post(session, sandbox, [lead(externalId="a", phoneNumber="5550000002")])  # a moves away
    by_old = post(session, sandbox, [lead(phoneNumber="5550000001")]).json()["results"][0]
    by_new = post(session, sandbox, [lead(phoneNumber="5550000002")]).json()["results"][0]
    assert (by_old["id"], by_new["id"]) == (b["id"], a["id"])
    post(session, sandbox, [lead(externalId="b", phoneNumber="5550000003")])  # b moves too
    assert post(session, sandbox, [lead(phoneNumber="5550000001")]).json()["results"][0][
        "id"
    ] not in (
        a["id"],
        b["id"],
    )
    assert sandbox.stats()["customers"] == 3


def test_external_id_takes_precedence_over_phone(sandbox: Any, session: requests.Session) -> None:
    post(session, sandbox, [lead(externalId="a")])
    post(session, sandbox, [lead(externalId="b")])  # same phone, different externalId: new customer
    assert sandbox.stats()["customers"] == 2


def test_duplicates_inside_one_batch(sandbox: Any, session: requests.Session) -> None:
    body = post(session, sandbox, [lead(externalId="d"), lead(externalId="d", city="Oslo")]).json()
    assert body["succeeded"] == 2
    assert body["results"][0]["id"] == body["results"][1]["id"]
    assert (sandbox.stats()["created"], sandbox.stats()["updated"]) == (1, 1)


def test_unknown_source_is_a_per_record_business_error(
    sandbox: Any, session: requests.Session
) -> None:
    records = [
        lead(externalId="good", sourceId=DEFAULT_SOURCE_ID),
        lead(externalId="bad", phoneNumber="5552223333", sourceId="no-such-source"),
        lead(externalId="nosource", phoneNumber="5552224444"),
    ]
    response = post(session, sandbox, records)
    assert response.status_code == 200
    body = response.json()
    assert (body["succeeded"], body["failed"]) == (2, 1)
    assert body["errors"] == [
        {"id": None, "externalId": "bad", "error": "Source not found: no-such-source"}
    ]
    assert [r["externalId"] for r in body["results"]] == ["good", "nosource"]
    stats = sandbox.stats()
    assert (stats["created"], stats["failed"], stats["customers"], stats["leads_received"]) == (
        2,
        1,
        2,
        3,
    )


# --------------------------------------------------------------------------- error statuses


@pytest.mark.parametrize(
    "data",
    [b"{not json", b"[]", b"{}", b'{"records": "x"}', b'{"records": [{"leadCost": Infinity}]}'],
)
def test_400_bad_request(sandbox: Any, session: requests.Session, data: bytes) -> None:
    headers = {"x-api-key": DEFAULT_API_KEY, "Content-Type": "application/json"}
    response = session.post(sandbox.url + UPLOAD, data=data, headers=headers)
    assert_error(response, 400, "BAD_REQUEST")
    assert sandbox.stats()["customers"] == 0


def test_400_for_chunked_body(sandbox: Any, session: requests.Session) -> None:
    body = iter([b'{"records": ', b"[]}"])  # a generator body makes requests send it chunked
    response = session.post(sandbox.url + UPLOAD, data=body, headers={"x-api-key": DEFAULT_API_KEY})
    assert_error(response, 400, "BAD_REQUEST")


@pytest.mark.parametrize("key", [None, "", "cc_wrong", DEFAULT_API_KEY.upper()])
def test_401_unauthorized(sandbox: Any, session: requests.Session, key: str | None) -> None:
    body = assert_error(post(session, sandbox, [lead()], key=key), 401, "UNAUTHORIZED")
    assert DEFAULT_API_KEY not in json.dumps(body)


def test_401_comes_before_body_parsing(sandbox: Any, session: requests.Session) -> None:
    response = session.post(sandbox.url + UPLOAD, data=b"garbage")
    assert_error(response, 401, "UNAUTHORIZED")


def test_403_read_only_key(sandbox: Any, session: requests.Session) -> None:
    assert_error(post(session, sandbox, [lead()], key=READ_ONLY_KEY), 403, "FORBIDDEN")
    assert sandbox.stats()["customers"] == 0


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", UPLOAD),
        ("PUT", UPLOAD),
        ("DELETE", UPLOAD),
        ("PATCH", UPLOAD),
        ("PROPFIND", UPLOAD),
        ("POST", UPLOAD + "/"),
        ("POST", "/v1/leads/upload"),
        ("POST", "/"),
        ("GET", "/__sandbox/nope"),
        ("POST", "/__sandbox/stats"),
    ],
)
def test_404_not_found(sandbox: Any, session: requests.Session, method: str, path: str) -> None:
    response = session.request(method, sandbox.url + path, headers={"x-api-key": DEFAULT_API_KEY})
    assert_error(response, 404, "NOT_FOUND")


def test_query_string_is_ignored(sandbox: Any, session: requests.Session) -> None:
    response = session.post(
        sandbox.url + UPLOAD + "?dryRun=1",
        json={"records": [lead()]},
        headers={"x-api-key": DEFAULT_API_KEY},
    )
    assert response.status_code == 200


def test_422_rejects_the_whole_request(sandbox: Any, session: requests.Session) -> None:
    records = [
        lead(externalId="ok0"),
        lead(externalId="bad1", firstName="Bea", lastName="Ray", dateOfBirth="1990-02-01"),
        lead(externalId="ok2"),
        lead(externalId="bad3", phoneNumber="12", gender="m"),
    ]
    response = post(session, sandbox, records)
    body = assert_error(response, 422, "VALIDATION_ERROR")
    assert [e["path"] for e in body["errors"]] == [
        ["records", 1, "dateOfBirth"],
        ["records", 3, "phoneNumber"],
        ["records", 3, "gender"],
    ]
    for error in body["errors"]:
        assert set(error) == {"path", "message", "expected", "received", "code"}
        assert error["received"] == "string"
    assert body["failedRecords"] == [
        {
            "index": 1,
            "phoneNumber": "+15551234567",
            "firstName": "Bea",
            "lastName": "Ray",
            "externalId": "bad1",
        },
        {
            "index": 3,
            "phoneNumber": "12",
            "firstName": None,
            "lastName": None,
            "externalId": "bad3",
        },
    ]
    stats = sandbox.stats()
    assert (stats["customers"], stats["batch_sizes"], stats["requests"]) == (0, [], {"422": 1})


@pytest.mark.parametrize("count", [0, 201])
def test_422_record_count(sandbox: Any, session: requests.Session, count: int) -> None:
    body = assert_error(post(session, sandbox, [lead()] * count), 422, "VALIDATION_ERROR")
    assert [e["path"] for e in body["errors"]] == [["records"]]
    assert body["failedRecords"] == []


def test_200_records_is_accepted(sandbox: Any, session: requests.Session) -> None:
    records = [lead(externalId=f"r{i}") for i in range(200)]
    assert post(session, sandbox, records).json()["succeeded"] == 200


def test_500_on_unexpected_exception_and_keeps_serving(
    sandbox: Any,
    session: requests.Session,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    def boom(records: Any) -> Any:
        raise RuntimeError(f"leaked {records[0]['phoneNumber']}")

    monkeypatch.setattr(sandbox.app, "_store", boom)
    assert_error(post(session, sandbox, [lead(phoneNumber="5554443333")]), 500, "INTERNAL_ERROR")
    monkeypatch.undo()
    assert post(session, sandbox, [lead()]).status_code == 200
    assert sandbox.stats()["requests"] == {"200": 1, "500": 1}
    err = capsys.readouterr().err
    assert "RuntimeError" in err and "5554443333" not in err


# --------------------------------------------------------------------------- rate limit


def test_429_rate_limit() -> None:
    config = SandboxConfig(rate_limit=2, api_keys=(DEFAULT_API_KEY, "cc_second"))
    with running_sandbox(config) as sandbox, requests.Session() as session:
        assert [post(session, sandbox, [lead()]).status_code for _ in range(2)] == [200, 200]
        response = post(session, sandbox, [lead()])
        body = assert_error(response, 429, "RATE_LIMIT_EXCEEDED")
        # one token refills every 30 s at 2 requests per minute
        assert isinstance(body["retryAfter"], int) and 29 <= body["retryAfter"] <= 30
        assert response.headers["Retry-After"] == str(body["retryAfter"])
        # rate limit before body parsing, auth before rate limit, buckets per key
        garbage = session.post(
            sandbox.url + UPLOAD, data=b"x", headers={"x-api-key": DEFAULT_API_KEY}
        )
        assert garbage.status_code == 429
        assert post(session, sandbox, [lead()], key="cc_wrong").status_code == 401
        assert post(session, sandbox, [lead()], key="cc_second").status_code == 200
        sandbox.reset()
        assert post(session, sandbox, [lead()]).status_code == 200


def test_token_bucket_burst_and_refill() -> None:
    bucket = TokenBucket(60, now=100.0)
    assert [bucket.take(100.0) for _ in range(60)] == [0.0] * 60
    assert bucket.take(100.0) == pytest.approx(1.0)
    assert bucket.take(100.5) == pytest.approx(0.5)
    assert bucket.take(101.0) == 0.0
    assert bucket.take(1000.0) == 0.0 and bucket.tokens == pytest.approx(59.0)  # capped at burst


def test_token_bucket_with_smaller_burst() -> None:
    bucket = TokenBucket(120, now=0.0, burst=2)
    assert [bucket.take(0.0) for _ in range(2)] == [0.0, 0.0]
    assert bucket.take(0.0) == pytest.approx(0.5)
    assert bucket.take(10.0) == 0.0 and bucket.tokens == pytest.approx(1.0)


def test_rate_limit_refills_over_http() -> None:
    with running_sandbox(SandboxConfig(rate_limit=120)) as sandbox, requests.Session() as session:
        statuses: list[int] = []
        while 429 not in statuses and len(statuses) < 400:
            statuses.append(post(session, sandbox, [lead()]).status_code)
        assert statuses[-1] == 429 and statuses.count(200) >= 120
        assert sandbox.stats()["requests"]["429"] == 1
        time.sleep(0.55)  # 2 tokens a second: one is back
        assert post(session, sandbox, [lead()]).status_code == 200


def test_rate_burst_smaller_than_the_limit() -> None:
    with (
        running_sandbox(SandboxConfig(rate_limit=120, rate_burst=2)) as sandbox,
        requests.Session() as session,
    ):
        statuses = [post(session, sandbox, [lead()]).status_code for _ in range(3)]
        assert statuses == [200, 200, 429]
        time.sleep(0.55)
        assert post(session, sandbox, [lead()]).status_code == 200


# --------------------------------------------------------------------------- faults


@pytest.mark.parametrize(
    ("fault", "status", "code"),
    [("500", 500, "INTERNAL_ERROR"), ("503", 503, "SERVICE_UNAVAILABLE")],
)
def test_fault_status(fault: str, status: int, code: str) -> None:
    config = SandboxConfig(rate_limit=0, fault_every=3, fault=fault)
    with running_sandbox(config) as sandbox, requests.Session() as session:
        responses = [post(session, sandbox, [lead(externalId=f"f{i}")]) for i in range(1, 7)]
        assert [r.status_code for r in responses] == [200, 200, status, 200, 200, status]
        assert_error(responses[2], status, code)
        assert [c["externalId"] for c in sandbox.customers()] == ["f1", "f2", "f4", "f5"]
        assert sandbox.stats()["upload_requests"] == 6


def test_fault_drop() -> None:
    config = SandboxConfig(rate_limit=0, fault_every=2, fault="drop")
    with running_sandbox(config) as sandbox, requests.Session() as session:
        assert post(session, sandbox, [lead(externalId="a")]).status_code == 200
        with pytest.raises(requests.ConnectionError):
            post(session, sandbox, [lead(externalId="b")])
        assert post(session, sandbox, [lead(externalId="c")]).status_code == 200
        stats = sandbox.stats()
        assert [c["externalId"] for c in sandbox.customers()] == ["a", "c"]
        assert (stats["upload_requests"], stats["dropped"], stats["requests"]) == (3, 1, {"200": 2})


def test_fault_stall_then_resend_updates_never_duplicates() -> None:
    config = SandboxConfig(rate_limit=0, fault_every=2, fault="stall", stall_seconds=1.0)
    with running_sandbox(config) as sandbox, requests.Session() as session:
        assert post(session, sandbox, [lead(externalId="a")]).status_code == 200
        started = time.monotonic()
        with pytest.raises(requests.Timeout):
            post(session, sandbox, [lead(externalId="b")], timeout=0.3)
        assert post(session, sandbox, [lead(externalId="b")]).status_code == 200  # the resend
        while sandbox.stats()["updated"] == 0 and time.monotonic() - started < 5:
            time.sleep(0.05)
        assert time.monotonic() - started >= 1.0
        stats = sandbox.stats()
        assert (stats["created"], stats["updated"], stats["customers"]) == (2, 1, 2)


def test_stall_answers_normally_when_waited_for() -> None:
    config = SandboxConfig(rate_limit=0, fault_every=1, fault="stall", stall_seconds=0.3)
    with running_sandbox(config) as sandbox, requests.Session() as session:
        started = time.monotonic()
        assert post(session, sandbox, [lead()]).json()["succeeded"] == 1
        assert time.monotonic() - started >= 0.3


# --------------------------------------------------------------------------- concurrency, ledger


def test_concurrent_posts_lose_nothing(sandbox: Any) -> None:
    def worker(thread: int) -> list[int]:
        with requests.Session() as session:
            return [
                post(
                    session, sandbox, [lead(externalId=f"t{thread}-{b}-{i}") for i in range(25)]
                ).status_code
                for b in range(10)
            ]

    results: list[list[int]] = [[] for _ in range(8)]
    threads = [
        threading.Thread(target=lambda t=t: results.__setitem__(t, worker(t))) for t in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [[200] * 10] * 8
    stats = sandbox.stats()
    assert (stats["customers"], stats["created"], stats["leads_received"]) == (2000, 2000, 2000)
    assert stats["batch_sizes"] == [25] * 80 and stats["requests"] == {"200": 80}
    assert len({c["id"] for c in sandbox.customers()}) == 2000


def test_latency_does_not_serialise_requests() -> None:
    with running_sandbox(SandboxConfig(rate_limit=0, latency=0.2)) as sandbox:

        def one() -> None:
            with requests.Session() as session:
                assert post(session, sandbox, [lead()]).status_code == 200

        threads = [threading.Thread(target=one) for _ in range(8)]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - started
        assert 0.1 <= elapsed < 0.8  # serially the eight would take about 1.6 s


def test_ledger_holds_stored_records_as_received(tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.jsonl"
    config = SandboxConfig(rate_limit=0, ledger=str(ledger))
    stored = [
        lead(externalId="1", medicaid=False, lastName="Øre"),
        lead(externalId="2", phoneNumber="5551231234"),
    ]
    with running_sandbox(config) as sandbox, requests.Session() as session:
        post(session, sandbox, [*stored, lead(externalId="3", sourceId="missing")])
        post(session, sandbox, [lead(externalId="4", gender="x")])  # 422: nothing stored
        post(session, sandbox, [stored[0]])  # an update is stored again
    lines = ledger.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == [*stored, stored[0]]


# --------------------------------------------------------------------------- introspection, HTTP


def test_introspection_endpoints_need_no_key(sandbox: Any, session: requests.Session) -> None:
    post(session, sandbox, [lead(externalId="i1")])
    stats = session.get(sandbox.url + "/__sandbox/stats").json()
    assert stats == sandbox.stats()
    assert set(stats) >= {
        "requests", "upload_requests", "batch_sizes", "leads_received",
        "created", "updated", "failed", "customers",
    }  # fmt: skip
    customers = session.get(sandbox.url + "/__sandbox/customers").json()
    assert [c["externalId"] for c in customers] == ["i1"]
    assert session.post(sandbox.url + "/__sandbox/reset").status_code == 200
    assert sandbox.customers() == []
    assert sandbox.stats()["requests"] == {} and sandbox.stats()["upload_requests"] == 0


def test_keep_alive(sandbox: Any) -> None:
    host, port = sandbox.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=5)
    payload = json.dumps({"records": [lead()]})
    headers = {"x-api-key": DEFAULT_API_KEY, "Content-Type": "application/json"}
    sockets = []
    for _ in range(3):
        connection.request("POST", UPLOAD, body=payload, headers=headers)
        response = connection.getresponse()
        assert response.status == 200 and response.version == 11
        assert json.loads(response.read())["succeeded"] == 1
        sockets.append(connection.sock)
    assert sockets[0] is not None and sockets.count(sockets[0]) == 3
    connection.close()


# --------------------------------------------------------------------------- CLI


def cli_command() -> list[str]:
    script = Path(sys.executable).with_name("carecycle-sandbox")
    return [str(script)] if script.exists() else [sys.executable, "-m", "target_carecycle.sandbox"]


def test_cli_serves_until_sigterm() -> None:
    command = [
        *cli_command(),
        "--port",
        "0",
        "--api-key",
        "cc_cli_key",
        "--source",
        "s1",
        "--verbose",
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    with process, closing_when_done(process):
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", url)
        banner = process.stdout.readline()
        assert "cc_cli_key" in banner and "s1" in banner
        response = requests.post(
            url + UPLOAD,
            json={"records": [lead(sourceId="s1", firstName="Zed")]},
            headers={"x-api-key": "cc_cli_key"},
            timeout=5,
        )
        assert response.status_code == 200
        assert requests.get(url + "/__sandbox/stats", timeout=5).json()["customers"] == 1
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=5) == 0
        stderr = process.stderr.read() if process.stderr else ""
        assert "POST /v2/leads/upload 200 records=1" in stderr
        assert "Zed" not in stderr and "5551234567" not in stderr


def test_cli_exits_cleanly_on_sigint() -> None:
    process = subprocess.Popen([*cli_command(), "--port", "0"], stdout=subprocess.PIPE, text=True)
    with process, closing_when_done(process):
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        assert DEFAULT_API_KEY in process.stdout.readline()
        assert requests.get(url + "/__sandbox/stats", timeout=5).status_code == 200
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=5) == 0


@contextlib.contextmanager
def closing_when_done(process: subprocess.Popen[str]) -> Iterator[None]:
    """Kill the sandbox if a test failed before stopping it (`with process` closes its pipes)."""
    try:
        yield
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_cli_flags_map_to_config(tmp_path: Path) -> None:
    args = build_parser().parse_args(
        ["--port", "0", "--api-key", "cc_a", "--api-key", "cc_b", "--read-only-key", "cc_r",
         "--source", "s1", "--source", "s2", "--rate-limit", "30", "--rate-burst", "5",
         "--latency", "0.25", "--fault-every", "7", "--fault", "stall", "--stall-seconds", "2",
         "--ledger", str(tmp_path / "l.jsonl"), "--verbose"]
    )  # fmt: skip
    assert config_from_args(args) == SandboxConfig(
        api_keys=("cc_a", "cc_b"), read_only_keys=("cc_r",), sources=("s1", "s2"), rate_limit=30,
        rate_burst=5, latency=0.25, fault_every=7, fault="stall", stall_seconds=2.0,
        ledger=str(tmp_path / "l.jsonl"), port=0, verbose=True,
    )  # fmt: skip
    defaults = config_from_args(build_parser().parse_args([]))
    assert defaults == SandboxConfig(port=8765)


@pytest.mark.parametrize(
    "args", [["--fault-every", "2"], ["--fault", "drop"], ["--fault", "418", "--fault-every", "1"]]
)
def test_cli_rejects_inconsistent_flags(args: list[str]) -> None:
    result = subprocess.run(
        [*cli_command(), "--port", "0", *args], capture_output=True, text=True, timeout=10
    )
    assert result.returncode == 2 and result.stdout == ""


# --------------------------------------------------------------------------- the preflight probe


@pytest.mark.parametrize(
    ("key", "status", "code"),
    [
        (None, 401, "UNAUTHORIZED"),
        ("cc_not_a_sandbox_key", 401, "UNAUTHORIZED"),
        (READ_ONLY_KEY, 403, "FORBIDDEN"),
        (DEFAULT_API_KEY, 422, "VALIDATION_ERROR"),
    ],
)
def test_an_empty_upload_is_refused_for_a_bad_key_and_invalid_for_a_good_one(
    sandbox: Any, session: requests.Session, key: str | None, status: int, code: str
) -> None:
    """What `target-carecycle --check` relies on: authentication before validation, and an
    empty `records` array that can never create anything."""
    body = assert_error(post(session, sandbox, [], key=key), status, code)
    if code == "VALIDATION_ERROR":
        assert body["errors"][0]["path"] == ["records"]
        assert body["failedRecords"] == []
    assert sandbox.customers() == []
    assert sandbox.stats()["leads_received"] == 0
