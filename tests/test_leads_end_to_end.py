"""Messy multi-stream input through the real executable: what careCycle stored, what was refused."""

from __future__ import annotations

import json
import os
import re
import stat
from typing import Any

import pytest
from target_runner import run_target, state_counts, stop_line, target_config

from target_carecycle.sandbox.samples import singer_lines

CRM_SCHEMA = {
    "type": "object",
    "properties": {
        "id": {"type": "integer"},
        "contact": {"type": "object"},
        "address": {"type": "object"},
        "utm": {"type": "object"},
        "updated": {"type": "string", "format": "date-time"},
    },
}
CRM_RECORDS = [
    {  # nested paths, custom field, ZIP+4
        "id": 1,
        "contact": {
            "phone": "(312) 847-1928",
            "email": " Ada.Lovelace@Example.COM ",
            "first": "Ada",
        },
        "address": {"zip": "60614-1234"},
        "utm": {"source": "facebook"},
        "updated": "2026-11-01T10:00:00Z",
    },
    {  # Excel ate the leading zero, number instead of string
        "id": 2,
        "contact": {"phone": 6172345678, "first": "Boris"},
        "address": {"zip": 2134},
        "utm": {"source": None},
    },
    {"id": 3, "contact": {"phone": "+1 555 234 5678", "first": "Cyd"}, "address": {"zip": "10001"}},
    {"id": 4, "contact": {"phone": "212-987-6543", "first": "Dot"}, "address": {"zip": "ABCDE"}},
    {  # same id as record 1 later in the batch: the last wins
        "id": 1,
        "contact": {"phone": "312.847.1928", "first": "Ada", "email": "ada@example.com"},
        "address": {"zip": "60614"},
        "utm": {"source": "google"},
    },
]
WEB_SCHEMA = {"type": "object", "properties": {}, "additionalProperties": True}
WEB_RECORDS: list[dict[str, Any]] = [
    {
        "Lead ID": "wf-1",
        "Phone Number": "+13052345678",
        "First Name": "Elif",
        "Last Name": "Yilmaz",
        "Zip": "33101",
        "DOB": "1955-07-04",
        "Sex": "F",
        "Marital Status": "married",
        "Household Income": "55,000",
        "Do Not Call": "yes",
        "External ID": "wf-1",
    },
    {
        "Phone Number": "7132345678",
        "First Name": "Farid",
        "tz": " america/chicago ",
        "Zip": "7700",
        "DOB": "02/30/1950",
        "Sex": "nonbinary",
        "External ID": "wf-2",
    },
    {"First Name": "Gia", "Zip": "78701", "External ID": "wf-3"},
    {"Phone Number": "5122345678", "First Name": "Hal", "External ID": "wf-4"},
    {
        "Phone Number": "2062345678",
        "First Name": "Ines",
        "Zip": "98101",
        "Household Income": "lots",
        "Dependents": 99999999999,
        "External ID": "wf-5",
    },
]
STREAMS = {
    "crm_contacts": {
        "fields": {
            "phoneNumber": "contact.phone",
            "email": "contact.email",
            "firstName": "contact.first",
            "postalCode": "address.zip",
        },
        "custom_fields": {"utm_source": "utm.source"},
        "lead_cost": 3.5,
    },
    "archived": {"enabled": False},
    "partner": {"source_id": "no-such-source"},
}
TAP_STATE = {"bookmarks": {"crm_contacts": {"replication_key_value": "2026-11-01T10:00:00Z"}}}
PERSONAL = ("Ada", "Boris", "Elif", "Yilmaz", "Farid", "847-1928", "8471928", "2345678", "1955")
# The SDK's metric lines carry timings and the pid, whose digits may spell a personal value.
METRIC_NUMBER = re.compile(r'"(value|pid)":[-+0-9.eE]+')


def without_metric_numbers(stderr: str) -> str:
    """stderr with metric timings and pids blanked, so a digit check tests our own output."""
    return METRIC_NUMBER.sub(r'"\1":0', stderr)


def messy_input() -> list[str]:
    return [
        *singer_lines("crm_contacts", CRM_RECORDS, schema=CRM_SCHEMA, key_properties=["id"]),
        *singer_lines("web_form", WEB_RECORDS, schema=WEB_SCHEMA),
        *singer_lines("archived", [{"phone": "3122345678", "zip": "60614"}], schema=WEB_SCHEMA),
        *singer_lines(
            "partner",
            [{"phone": "4042345678", "zip": "30303", "external_id": "p-1"}],
            schema=WEB_SCHEMA,
            state=TAP_STATE,
        ),
    ]


def typed_schema(**extra: dict[str, Any]) -> dict[str, Any]:
    """A tap schema with an integer `id`, `phone` and `zip` strings, and `extra` columns."""
    columns = {"id": {"type": "integer"}, "phone": {"type": "string"}, "zip": {"type": "string"}}
    return {"type": "object", "properties": {**columns, **extra}}


def test_messy_streams_become_exact_leads_and_every_record_is_accounted_for(sandbox, tmp_path):
    rejects = tmp_path / "rejects.jsonl"
    results = tmp_path / "results.jsonl"
    config = target_config(
        sandbox,
        streams=STREAMS,
        source_id="sandbox-source",
        reject_file=str(rejects),
        results_file=str(results),
    )
    run = run_target(tmp_path, config, messy_input())
    assert run.returncode == 0, run.stderr

    stored = {c["externalId"]: c for c in sandbox.customers()}
    assert set(stored) == {
        "crm_contacts:1",
        "crm_contacts:2",
        "wf-1",
        "wf-2",
        "wf-5",
    }

    ada = stored["crm_contacts:1"]
    assert ada["phoneNumber"] == "+13128471928"
    assert ada["email"] == "ada@example.com"
    assert ada["postalCode"] == "60614"
    assert ada["customFields"] == [{"fieldKey": "utm_source", "value": "google"}]
    assert ada["sourceId"] == "sandbox-source"
    assert ada["leadCost"] == 3.5
    boris = stored["crm_contacts:2"]
    assert boris["postalCode"] == "02134"
    assert boris["phoneNumber"] == "+16172345678"
    assert "customFields" not in boris or boris["customFields"] in (None, [])

    elif_ = stored["wf-1"]
    assert (elif_["firstName"], elif_["lastName"]) == ("Elif", "Yilmaz")
    assert elif_["dateOfBirth"] == "07-04-1955"
    assert elif_["gender"] == "Female"
    assert elif_["maritalStatus"] == "Married"
    assert elif_["householdIncome"] == 55000
    assert elif_["doNotCall"] is True
    assert elif_["sourceId"] == "sandbox-source"
    farid = stored["wf-2"]
    assert farid["timezone"] == "America/Chicago"
    assert farid["gender"] == "Non-Binary"
    assert farid.get("dateOfBirth") is None
    assert farid["postalCode"] == "07700"
    assert "householdIncome" not in stored["wf-5"] or stored["wf-5"]["householdIncome"] is None

    refused = [json.loads(line) for line in rejects.read_text().splitlines()]
    by_id = {(r["stream"], r["externalId"]): r for r in refused}
    assert by_id[("crm_contacts", "crm_contacts:3")]["status"] == "rejected"
    assert by_id[("crm_contacts", "crm_contacts:3")]["reason"].startswith("phoneNumber:")
    assert by_id[("crm_contacts", "crm_contacts:3")]["record"]["contact"]["first"] == "Cyd"
    assert by_id[("crm_contacts", "crm_contacts:4")]["reason"].startswith("postalCode/timezone:")
    assert by_id[("web_form", "wf-3")]["reason"] == "phoneNumber: missing"
    assert by_id[("web_form", "wf-4")]["reason"].startswith("postalCode/timezone:")
    partner = by_id[("partner", "p-1")]
    assert partner["status"] == "failed"
    assert "Source not found" in partner["reason"]
    assert len(refused) == 5
    assert stat.S_IMODE(os.stat(rejects).st_mode) == 0o600

    receipts = [json.loads(line) for line in results.read_text().splitlines()]
    assert {r["externalId"] for r in receipts} == set(stored)
    assert all(r["id"] == stored[r["externalId"]]["id"] for r in receipts)

    final = run.states[-1]
    assert final["bookmarks"] == TAP_STATE["bookmarks"]
    counts = final["target_carecycle"]
    assert counts["crm_contacts"] == state_counts(5, succeeded=2, rejected=2, merged=1)
    assert counts["web_form"]["succeeded"] == 3
    assert counts["web_form"]["rejected"] == 2
    assert counts["archived"]["skipped"] == 1
    assert counts["partner"]["failed"] == 1
    for tally in counts.values():
        assert tally["received"] == sum(v for k, v in tally.items() if k != "received")

    assert "optional values left out" in run.stderr
    assert "dateOfBirth (" in run.stderr
    for value in PERSONAL:
        assert value not in without_metric_numbers(run.stderr), value


def test_dry_run_sends_nothing_and_masks_its_sample(sandbox, tmp_path):
    rejects = tmp_path / "rejects.jsonl"
    config = {"dry_run": True, "streams": STREAMS, "reject_file": str(rejects)}
    run = run_target(tmp_path, config, messy_input())

    assert run.returncode == 0, run.stderr
    assert sandbox.stats()["upload_requests"] == 0
    assert "dry run: nothing was sent" in run.stderr
    assert "would send 2" in run.stderr
    assert "Dry run sample (personal data masked)" in run.stderr
    assert len(rejects.read_text().splitlines()) == 4  # partner's unknown source is not checked
    for value in PERSONAL:
        assert value not in without_metric_numbers(run.stderr), value


def test_strict_mode_rejects_records_with_bad_optional_values(sandbox, tmp_path):
    config = target_config(
        sandbox, streams=STREAMS, strict=True, source_id="sandbox-source", max_error_rate=1
    )
    run = run_target(tmp_path, config, messy_input())

    assert run.returncode == 0, run.stderr
    stored = {c["externalId"] for c in sandbox.customers()}
    assert "wf-2" not in stored  # Feb 30 birth date
    assert "wf-5" not in stored  # income "lots"
    assert "wf-1" in stored
    assert "dateOfBirth: not a valid date (strict)" in run.stderr


def test_max_record_errors_stops_the_run_after_reporting(sandbox, tmp_path):
    config = target_config(sandbox, streams=STREAMS, max_record_errors=1)
    run = run_target(tmp_path, config, messy_input())

    assert run.returncode == 1
    assert "more than max_record_errors=1" in run.stderr
    assert "target-carecycle summary" in run.stderr
    assert run.states == []


def test_stream_maps_apply_before_the_lead_mapping(sandbox, tmp_path):
    config = target_config(
        sandbox,
        stream_maps={"web_form": {"phone_alt": "record['Phone Number']", "Phone Number": None}},
        streams={"web_form": {"fields": {"phoneNumber": "phone_alt"}}},
    )
    schema = {
        "type": "object",
        "properties": {
            "Phone Number": {"type": "string"},
            "Zip": {"type": "string"},
            "External ID": {"type": "string"},
        },
    }
    records = [{"Phone Number": "3052345678", "Zip": "33101", "External ID": "x-1"}]
    run = run_target(tmp_path, config, singer_lines("web_form", records, schema=schema))

    assert run.returncode == 0, run.stderr
    (customer,) = sandbox.customers()
    assert customer["phoneNumber"] == "+13052345678"
    assert customer["externalId"] == "x-1"


def test_validate_records_rejects_records_that_break_the_taps_schema(sandbox, tmp_path):
    schema = typed_schema()
    records: list[dict[str, Any]] = [
        {"id": 1, "phone": "3052345678", "zip": "33101"},
        {"id": "two", "phone": "3052345679", "zip": "33101"},
    ]
    lines = singer_lines("typed", records, schema=schema, key_properties=["id"])
    run = run_target(tmp_path, target_config(sandbox, validate_records=True), lines)

    assert run.returncode == 0, run.stderr
    assert [c["externalId"] for c in sandbox.customers()] == ["typed:1"]
    assert "reason=id: does not match the stream's schema (type)" in run.stderr
    assert "3052345679" not in run.stderr


def test_flattening_takes_the_sdk_path_and_still_maps(sandbox, tmp_path):
    schema = {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "contact": {"type": "object", "properties": {"phone": {"type": "string"}}},
            "zip": {"type": "string"},
        },
    }
    records = [{"id": 7, "contact": {"phone": "3052345678"}, "zip": "33101"}]
    config = target_config(
        sandbox,
        flattening_enabled=True,
        flattening_max_depth=2,
        streams={"flat": {"fields": {"phoneNumber": "contact__phone"}}},
    )
    lines = singer_lines("flat", records, schema=schema, key_properties=["id"])
    run = run_target(tmp_path, config, lines)

    assert run.returncode == 0, run.stderr
    (customer,) = sandbox.customers()
    assert customer["phoneNumber"] == "+13052345678"
    assert customer["externalId"] == "flat:7"


@pytest.mark.parametrize(
    ("bad_property", "says"),
    [
        ({"type": 5}, "line 1: SCHEMA for stream 'typed' is not a valid JSON Schema"),
        ({"type": "string", "pattern": "(["}, "line 1: SCHEMA for stream 'typed'"),
        ("a string", "line 1: SCHEMA for stream 'typed' is not a valid JSON Schema"),
        ({"$ref": "#/definitions/missing"}, "line 2: SCHEMA for stream 'typed' cannot check"),
    ],
    ids=["type not a name", "bad pattern", "property not a schema", "missing $ref"],
)
def test_a_schema_validate_records_cannot_use_stops_the_run_naming_it(
    sandbox, tmp_path, bad_property, says
):
    schema = {"type": "object", "properties": {"id": {"type": "integer"}, "zip": bad_property}}
    records = [{"id": 1, "phone": "3052345678", "zip": "33101"}]
    lines = singer_lines("typed", records, schema=schema, key_properties=["id"])
    run = run_target(tmp_path, target_config(sandbox, validate_records=True), lines)

    assert run.returncode == 1
    assert stop_line(run.stderr).startswith(f"target-carecycle: {says}"), run.stderr[-2000:]
    assert "Traceback" not in run.stderr and "3052345678" not in run.stderr
    assert run.states == []


def test_schema_check_reasons_never_name_a_records_own_keys(sandbox, tmp_path):
    """A key can be personal data (an email used as a key): reasons name the schema's place."""
    schema = typed_schema(contacts={"type": "object", "additionalProperties": {"type": "string"}})
    records = [{"id": 1, "phone": "3052345678", "zip": "33101", "contacts": {"jo@ex.com": 1}}]
    lines = singer_lines("typed", records, schema=schema, key_properties=["id"])
    reject_file = tmp_path / "rejects.jsonl"
    config = target_config(sandbox, validate_records=True, reject_file=str(reject_file))
    run = run_target(tmp_path, config, lines)

    assert run.returncode == 1, run.stderr  # its only record rejected: nothing delivered
    assert "(nothing delivered)" in stop_line(run.stderr)
    assert "reason=contacts.additionalProperties: does not match" in run.stderr
    assert "jo@ex.com" not in run.stderr
    assert "jo@ex.com" not in json.loads(reject_file.read_text())["reason"]


def test_records_a_stream_map_filters_out_are_counted_skipped(sandbox, tmp_path):
    """`__filter__` and `__NULL__` are the user's choice: skipped, never silently gone, never
    an error (even a record that is not an object, on a stream mapped to nowhere)."""
    leads = [{"id": n, "phone": f"30523456{n:02d}", "zip": "33101"} for n in range(10)]
    schema = typed_schema()
    lines = [
        *singer_lines("leads", leads, schema=schema, key_properties=["id"]),
        *singer_lines("dropped", leads[:3], schema=schema, key_properties=["id"]),
        json.dumps({"type": "RECORD", "stream": "dropped", "record": None}),
        json.dumps({"type": "STATE", "value": {"bookmarks": {}}}),
    ]
    maps = {"leads": {"__filter__": "id % 2 == 0"}, "dropped": None}
    config = target_config(sandbox, stream_maps=maps, max_record_errors=0)
    run = run_target(tmp_path, config, lines)

    assert run.returncode == 0, run.stderr[-2000:]
    counts = run.states[-1]["target_carecycle"]
    assert counts["leads"]["received"] == 10
    assert counts["leads"]["succeeded"] == 5 and counts["leads"]["skipped"] == 5
    assert counts["dropped"]["received"] == counts["dropped"]["skipped"] == 4
    assert len(sandbox.customers()) == 5


def test_a_stream_map_that_cannot_apply_stops_the_run_naming_stream_maps(sandbox, tmp_path):
    lines = list(singer_lines("leads", [{"phone": "3052345678", "zip": "33101"}]))
    config = target_config(sandbox, stream_maps={"leads": {"__filter__": "no_such_column > 1"}})
    run = run_target(tmp_path, config, lines)

    assert run.returncode == 1
    assert stop_line(run.stderr) == (
        "target-carecycle: line 2: stream_maps cannot be applied to stream 'leads': property "
        "'__filter__' expression `no_such_column > 1` failed (NameNotDefined); "
        "fix stream_maps.leads.__filter__"
    )
    assert "Traceback" not in run.stderr
