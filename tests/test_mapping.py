"""Tables for target_carecycle.mapping: aliases, paths, precedence, IDs, config errors."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from target_carecycle.fields import LEAD_FIELDS
from target_carecycle.leads import normalise_lead
from target_carecycle.mapping import (
    ALIASES,
    MappingConfigError,
    StreamMapper,
    StreamSettings,
    normalise_column_name,
    parse_streams_setting,
    settings_for_stream,
)

PHONE = "3128471928"


def mapper(
    config: dict[str, Any] | None = None,
    key_properties: list[str] | None = None,
    *,
    stream: str = "contacts",
    source_id: str | None = None,
    lead_cost: Any = None,
) -> StreamMapper:
    settings = parse_streams_setting({stream: config or {}})[stream]
    return StreamMapper(
        stream,
        settings,
        key_properties or [],
        default_source_id=source_id,
        default_lead_cost=lead_cost,
    )


def mapped(
    record: dict[str, Any], config: dict[str, Any] | None = None, **kwargs: Any
) -> dict[str, Any]:
    """Map one record; drop the externalId unless it came from the record itself."""
    m = mapper(config, **kwargs)
    lead = m.map_record(record)
    if m.external_id_source in ("key_properties", "content_hash"):
        lead.pop("externalId")
    return lead


# --------------------------------------------------------------------------- aliases


@pytest.mark.parametrize(("alias", "lead_field"), list(ALIASES.items()))
def test_every_alias_maps(alias, lead_field):
    assert mapped({alias: "v"}) == {lead_field: "v"}


@pytest.mark.parametrize(
    ("key", "lead_field"),
    [
        ("Phone Number", "phoneNumber"),
        ("phone-number", "phoneNumber"),
        ("PHONE_NUMBER", "phoneNumber"),
        ("phone__number", "phoneNumber"),
        (" Phone ", "phoneNumber"),
        ("PhoneNumber", "phoneNumber"),
        ("phonenumber", "phoneNumber"),
        ("Mobile Phone", "phoneNumber"),
        ("CELL", "phoneNumber"),
        ("cell-phone", "phoneNumber"),
        ("First Name", "firstName"),
        ("FNAME", "firstName"),
        ("Given-Name", "firstName"),
        ("LAST NAME", "lastName"),
        ("Surname", "lastName"),
        ("Family_Name", "lastName"),
        ("ZIP", "postalCode"),
        ("Zip Code", "postalCode"),
        ("zip-code", "postalCode"),
        ("Postal Code", "postalCode"),
        ("POSTCODE", "postalCode"),
        ("DOB", "dateOfBirth"),
        ("Date of Birth", "dateOfBirth"),
        ("Birth-Date", "dateOfBirth"),
        ("Birthday", "dateOfBirth"),
        ("TZ", "timezone"),
        ("Time Zone", "timezone"),
        ("TimeZone", "timezone"),
        ("Email Address", "email"),
        ("E-Mail", "email"),
        ("EMAIL", "email"),
        ("Address 1", "address"),
        ("Street Address", "address"),
        ("Address Line 2", "address2"),
        ("address_2", "address2"),
        ("SEX", "gender"),
        ("Marital Status", "maritalStatus"),
        ("MBI", "mbiNumber"),
        ("hasMedicaid", "medicaid"),
        ("Do Not Call", "doNotCall"),
        ("do-not-text", "doNotSMS"),
        ("External ID", "externalId"),
        ("Source-Id", "sourceId"),
        ("LEAD_COST", "leadCost"),
        ("Household Income", "householdIncome"),
        ("is_decision_maker", "isDecisionMaker"),
    ],
)
def test_alias_case_and_separator_variants(key, lead_field):
    assert mapped({key: "v"}) == {lead_field: "v"}


@pytest.mark.parametrize("lead_field", [name for name in LEAD_FIELDS if name != "customFields"])
@pytest.mark.parametrize("spelling", [str, str.lower, str.upper])
def test_lead_field_names_map_case_insensitively(lead_field, spelling):
    assert mapped({spelling(lead_field): "v"}) == {lead_field: "v"}


@pytest.mark.parametrize(
    "key",
    ["id", "notes", "contact", "phone_2", "customFields", "zip4", "created_at", "", "full name"],
)
def test_unknown_keys_are_not_sent(key):
    assert mapped({key: "v"}) == {}


def test_alias_table_is_exported_and_well_formed():
    assert ALIASES["phone"] == "phoneNumber"
    assert ALIASES["zip"] == "postalCode"
    assert set(ALIASES.values()) <= set(LEAD_FIELDS)
    targets: dict[str, set[str]] = {}
    for alias, lead_field in ALIASES.items():
        targets.setdefault(normalise_column_name(alias), set()).add(lead_field)
    assert all(len(fields) == 1 for fields in targets.values())
    with pytest.raises(TypeError):
        ALIASES["x"] = "y"  # type: ignore[index]


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        ({"zip": "1", "postalCode": "2"}, {"postalCode": "2"}),
        ({"postalcode": "1", "zip": "2"}, {"postalCode": "1"}),
        ({"POSTALCODE": "1", "postalCode": "2"}, {"postalCode": "2"}),
        ({"mobile": "1", "phone": "2"}, {"phoneNumber": "2"}),
        ({"cell": "1", "mobile": "2"}, {"phoneNumber": "2"}),
        ({"phone": "1", "phone_number": "2"}, {"phoneNumber": "2"}),
        ({"PHONE": "1", "phone": "2"}, {"phoneNumber": "1"}),
        ({"Email Address": "1", "email": "2"}, {"email": "2"}),
        ({"dob": "1", "birthday": "2"}, {"dateOfBirth": "1"}),
        ({"phone": None, "mobile": "2"}, {}),
    ],
)
def test_exact_name_beats_alias_and_first_alias_wins(record, expected):
    assert mapped(record) == expected


# --------------------------------------------------------------------------- explicit fields


@pytest.mark.parametrize(
    ("path", "record", "expected"),
    [
        ("contact.phone", {"contact": {"phone": PHONE}}, PHONE),
        ("a.b.c", {"a": {"b": {"c": 7}}}, 7),
        ("phones.0", {"phones": [PHONE, "x"]}, PHONE),
        ("phones.1.number", {"phones": [{}, {"number": PHONE}]}, PHONE),
        ("phones.0", {"phones": {"0": PHONE}}, PHONE),
        ("phones.5", {"phones": [PHONE]}, None),
        ("contact.phone", {"contact": "not a dict"}, None),
        ("contact.phone", {"contact": None}, None),
        ("contact.phone", {}, None),
        ("phones.first", {"phones": [PHONE]}, None),
        ("Tel", {"Tel": PHONE}, PHONE),
    ],
)
def test_dotted_paths(path, record, expected):
    lead = mapped(record, {"fields": {"phoneNumber": path}})
    assert lead.get("phoneNumber") == expected


def test_explicit_field_beats_alias_even_when_missing():
    config = {"fields": {"phoneNumber": "contact.phone"}}
    assert mapped({"phone": "1", "contact": {"phone": "2"}}, config) == {"phoneNumber": "2"}
    assert mapped({"phone": "1", "contact": {}}, config) == {}


def test_key_used_by_explicit_path_is_not_auto_mapped_again():
    config = {"fields": {"externalId": "email", "city": "address.city"}}
    record = {"email": "a@b.c", "address": {"city": "Chicago"}, "zip": "60614"}
    lead = mapped(record, config)
    assert lead == {"city": "Chicago", "postalCode": "60614", "externalId": "a@b.c"}


def test_crm_export_example():
    config = {
        "fields": {
            "phoneNumber": "contact.phone",
            "postalCode": "address.zip",
            "city": "address.city",
        },
        "external_id": "crm_id",
    }
    record = {
        "crm_id": 98765,
        "first_name": "Ann",
        "contact": {"phone": "(312) 847-1928", "email": "ann@example.com"},
        "address": {"zip": "60614-1234", "city": "Chicago"},
    }
    raw = mapper(config, ["crm_id"]).map_record(record)
    assert raw == {
        "phoneNumber": "(312) 847-1928",
        "postalCode": "60614-1234",
        "city": "Chicago",
        "firstName": "Ann",
        "externalId": "98765",
    }
    assert normalise_lead(raw).lead == {
        "phoneNumber": "+13128471928",
        "postalCode": "60614",
        "city": "Chicago",
        "firstName": "Ann",
        "externalId": "98765",
    }


# --------------------------------------------------------------------------- custom fields


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        (
            {"plan": "Gold", "utm": {"source": "google"}},
            [
                {"fieldKey": "plan_interest", "value": "Gold"},
                {"fieldKey": "utm", "value": "google"},
            ],
        ),
        ({"plan": "Gold"}, [{"fieldKey": "plan_interest", "value": "Gold"}]),
        ({"plan": None, "utm": {"source": None}}, None),
        ({}, None),
        (
            {"plan": 0, "utm": {"source": False}},
            [
                {"fieldKey": "plan_interest", "value": 0},
                {"fieldKey": "utm", "value": False},
            ],
        ),
    ],
)
def test_custom_fields(record, expected):
    config = {"custom_fields": {"plan_interest": "plan", "utm": "utm.source"}}
    assert mapped(record, config).get("customFields") == expected


def test_custom_fields_end_to_end():
    config = {"custom_fields": {"n": "n", "ok": "ok"}}
    raw = mapper(config).map_record({"phone": PHONE, "zip": 60614, "n": Decimal("3"), "ok": True})
    lead = normalise_lead(raw).lead
    assert lead is not None
    assert lead["customFields"] == [
        {"fieldKey": "n", "value": "3"},
        {"fieldKey": "ok", "value": "true"},
    ]


def test_custom_field_path_does_not_block_auto_mapping():
    config = {"custom_fields": {"raw_zip": "zip"}}
    lead = mapped({"zip": "60614"}, config)
    assert lead == {
        "postalCode": "60614",
        "customFields": [{"fieldKey": "raw_zip", "value": "60614"}],
    }


# --------------------------------------------------------------------------- sourceId / leadCost


@pytest.mark.parametrize(
    ("record", "config", "default", "expected"),
    [
        ({"source_id": "rec"}, {"source_id": "stream"}, "target", "rec"),
        ({"src": "rec"}, {"fields": {"sourceId": "src"}, "source_id": "stream"}, "target", "rec"),
        ({}, {"source_id": "stream"}, "target", "stream"),
        ({"source_id": "  "}, {"source_id": "stream"}, "target", "stream"),
        ({"source_id": None}, {}, "target", "target"),
        ({}, {}, "target", "target"),
        ({}, {}, None, None),
    ],
)
def test_source_id_precedence(record, config, default, expected):
    assert mapped(record, config, source_id=default).get("sourceId") == expected


@pytest.mark.parametrize(
    ("record", "config", "default", "expected"),
    [
        ({"lead_cost": "7.5"}, {"lead_cost": 3}, 1, "7.5"),
        ({"cost": 9}, {"fields": {"leadCost": "cost"}, "lead_cost": 3}, 1, 9),
        ({}, {"lead_cost": 3}, 1, 3),
        ({}, {"lead_cost": "2.50"}, 1, 2.5),
        ({}, {"lead_cost": 0}, 1, 0),
        ({"lead_cost": ""}, {}, Decimal("1.25"), Decimal("1.25")),
        ({}, {}, None, None),
    ],
)
def test_lead_cost_precedence(record, config, default, expected):
    assert mapped(record, config, lead_cost=default).get("leadCost") == expected


# --------------------------------------------------------------------------- external IDs


@pytest.mark.parametrize(
    ("record", "config", "keys", "expected", "source"),
    [
        (
            {"uid": "u1", "ext": "e1", "external_id": "c1", "id": 1},
            {"external_id": "uid", "fields": {"externalId": "ext"}},
            ["id"],
            "u1",
            "setting",
        ),
        (
            {"meta": {"uid": 42}},
            {"external_id": "meta.uid"},
            [],
            "42",
            "setting",
        ),
        (
            {"ext": "e1", "external_id": "c1", "id": 1},
            {"external_id": "uid", "fields": {"externalId": "ext"}},
            ["id"],
            "e1",
            "fields",
        ),
        ({"External ID": " c1 ", "id": 1}, {}, ["id"], "c1", "column"),
        ({"externalId": Decimal("77"), "id": 1}, {}, ["id"], "77", "column"),
        ({"external_id": "", "id": 1}, {}, ["id"], "contacts:1", "key_properties"),
        ({"external_id": {"x": 1}, "id": 1}, {}, ["id"], "contacts:1", "key_properties"),
        ({"id": 1}, {"external_id": "uid"}, ["id"], "contacts:1", "key_properties"),
    ],
)
def test_external_id_precedence(record, config, keys, expected, source):
    m = mapper(config, keys)
    assert m.map_record(record)["externalId"] == expected
    assert m.external_id_source == source


@pytest.mark.parametrize(
    ("keys", "record", "expected"),
    [
        (["id"], {"id": 123}, "contacts:123"),
        (["id"], {"id": Decimal("123")}, "contacts:123"),
        (["id"], {"id": Decimal("123.000")}, "contacts:123"),
        (["id"], {"id": 123.0}, "contacts:123"),
        (["id"], {"id": "123"}, "contacts:123"),
        (["id"], {"id": "abc-1"}, "contacts:abc-1"),
        (["id", "org"], {"id": 123, "org": "abc"}, "contacts:123:abc"),
        (["org", "id"], {"id": 123, "org": "abc"}, "contacts:abc:123"),
        (["id", "org"], {"id": "a:b", "org": "c"}, "contacts:a%3Ab:c"),
        (["id", "org"], {"id": "a", "org": "b:c"}, "contacts:a:b%3Ac"),
        (["id"], {"id": "50%"}, "contacts:50%25"),
        (["id", "active"], {"id": 1, "active": True}, "contacts:1:true"),
    ],
)
def test_key_properties_ids(keys, record, expected):
    m = mapper(key_properties=keys)
    assert m.map_record(record)["externalId"] == expected
    assert m.external_id_source == "key_properties"


def test_key_properties_ids_are_stable_and_unique():
    m = mapper(key_properties=["id", "org"])
    ids = {m.map_record({"id": i, "org": o})["externalId"] for i in range(20) for o in "ab"}
    assert len(ids) == 40
    again = mapper(key_properties=["id", "org"]).map_record({"id": 3, "org": "a"})["externalId"]
    assert again in ids


def test_long_key_properties_id_is_hashed():
    m = mapper(key_properties=["id"])
    ident = m.map_record({"id": "x" * 300})["externalId"]
    assert re.fullmatch(r"contacts:sha256:[0-9a-f]{32}", ident)
    assert m.map_record({"id": "x" * 300})["externalId"] == ident
    assert m.map_record({"id": "x" * 301})["externalId"] != ident


def test_long_own_id_is_hashed():
    m = mapper({"external_id": "uid"})
    ident = m.map_record({"uid": "y" * 256})["externalId"]
    assert re.fullmatch(r"contacts:sha256:[0-9a-f]{32}", ident)
    assert m.map_record({"uid": "y" * 255})["externalId"] == "y" * 255


def test_stream_name_is_escaped_in_ids():
    m = mapper(key_properties=["id"], stream="db:public.leads")
    assert m.map_record({"id": 1})["externalId"] == "db%3Apublic.leads:1"


CONTENT_RECORD = {"phone": PHONE, "zip": "60614", "n": Decimal("5"), "tags": ["a", {"b": 1}]}


def content_id(record: dict[str, Any], stream: str = "web") -> str:
    m = mapper(stream=stream)
    ident = str(m.map_record(record)["externalId"])
    assert m.external_id_source == "content_hash"
    return ident


def test_content_hash_id_format():
    assert re.fullmatch(r"web:sha256:[0-9a-f]{32}", content_id(CONTENT_RECORD))


@pytest.mark.parametrize(
    "same",
    [
        dict(CONTENT_RECORD),
        dict(reversed(list(CONTENT_RECORD.items()))),
        {**CONTENT_RECORD, "n": 5},
        {**CONTENT_RECORD, "_sdc_extracted_at": "2024-01-01T00:00:00Z"},
        {**CONTENT_RECORD, "_sdc_batched_at": "2025-06-01T00:00:00Z", "_sdc_sequence": 9},
    ],
)
def test_content_hash_is_stable(same):
    assert content_id(same) == content_id(CONTENT_RECORD)


@pytest.mark.parametrize(
    "different",
    [
        {**CONTENT_RECORD, "zip": "60615"},
        {**CONTENT_RECORD, "extra": None},
        {**CONTENT_RECORD, "n": "5"},
        {k: v for k, v in CONTENT_RECORD.items() if k != "tags"},
        {**CONTENT_RECORD, "n": Decimal("1e999999999")},  # hashed without writing it out
        {**CONTENT_RECORD, "n": Decimal("1e999999998")},
    ],
)
def test_content_hash_differs_for_different_records(different):
    assert content_id(different) != content_id(CONTENT_RECORD)


def test_content_hash_is_prefixed_with_the_stream():
    assert content_id(CONTENT_RECORD, "a").startswith("a:sha256:")
    assert content_id(CONTENT_RECORD, "a") != content_id(CONTENT_RECORD, "b")


def test_content_hash_when_key_properties_missing():
    m = mapper(key_properties=["id"])
    assert m.map_record({"id": None, "phone": PHONE})["externalId"].startswith("contacts:sha256:")
    assert m.external_id_source == "content_hash"
    assert m.map_record({"id": 9})["externalId"] == "contacts:9"
    assert m.external_id_source == "key_properties"


@pytest.mark.parametrize(
    ("config", "keys", "source"),
    [
        ({"external_id": "uid"}, ["id"], "setting"),
        ({"fields": {"externalId": "uid"}}, ["id"], "fields"),
        ({}, ["id"], "key_properties"),
        ({}, [], "content_hash"),
    ],
)
def test_initial_external_id_source(config, keys, source):
    assert mapper(config, keys).external_id_source == source


# --------------------------------------------------------------------------- per-stream settings


def test_settings_for_stream_exact_then_star_then_defaults():
    streams = parse_streams_setting(
        {"contacts": {"source_id": "crm"}, "*": {"source_id": "other"}, "Leads": {}}
    )
    assert settings_for_stream(streams, "contacts").source_id == "crm"
    assert settings_for_stream(streams, "orders").source_id == "other"
    assert settings_for_stream(streams, "leads").source_id == "other"  # names are exact
    assert settings_for_stream(parse_streams_setting(None), "x") == StreamSettings()


def test_enabled_false():
    streams = parse_streams_setting({"audit": {"enabled": False}, "*": {}})
    assert settings_for_stream(streams, "audit").enabled is False
    assert settings_for_stream(streams, "contacts").enabled is True
    m = StreamMapper(
        "audit",
        streams["audit"],
        [],
        default_source_id=None,
        default_lead_cost=None,
    )
    assert m.enabled is False


def test_parsed_settings():
    settings = parse_streams_setting(
        {
            "web": {
                "fields": {"phoneNumber": "form.phone"},
                "custom_fields": {"plan": "answers.0.value"},
                "source_id": " web ",
                "lead_cost": "12.50",
                "external_id": "submission.id",
                "enabled": True,
            }
        }
    )["web"]
    assert settings == StreamSettings(
        enabled=True,
        fields={"phoneNumber": ("form", "phone")},
        custom_fields={"plan": ("answers", "0", "value")},
        source_id="web",
        lead_cost=12.5,
        external_id=("submission", "id"),
    )


def test_streams_setting_as_json_text():
    parsed = parse_streams_setting('{"web": {"source_id": "s"}}')
    assert parsed["web"].source_id == "s"
    assert parse_streams_setting("") == {}


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ([1], "streams: must be an object keyed by stream name"),
        ("{not json", "streams: must be an object keyed by stream name"),
        ({"": {}}, "streams: stream names must be non-empty strings"),
        ({"contacts": []}, "streams.contacts: must be an object"),
        ({"contacts": "phone"}, "streams.contacts: must be an object"),
        (
            {"contacts": {"field": {}}},
            "streams.contacts: unknown setting 'field' (did you mean 'fields'?); allowed: "
            "fields, custom_fields, source_id, lead_cost, external_id, enabled",
        ),
        (
            {"contacts": {"mapping": {}}},
            "streams.contacts: unknown setting 'mapping'; allowed: "
            "fields, custom_fields, source_id, lead_cost, external_id, enabled",
        ),
        (
            {"contacts": {"fields": []}},
            "streams.contacts.fields: must be an object {leadField: 'dotted.path'}",
        ),
        (
            {"contacts": {"fields": {"phone": "contact.phone"}}},
            "streams.contacts.fields: 'phone' is not a careCycle lead field "
            "(did you mean 'phoneNumber'?)",
        ),
        (
            {"contacts": {"fields": {"zip": "a"}}},
            "streams.contacts.fields: 'zip' is not a careCycle lead field "
            "(did you mean 'postalCode'?)",
        ),
        (
            {"contacts": {"fields": {"firstname": "a"}}},
            "streams.contacts.fields: 'firstname' is not a careCycle lead field "
            "(did you mean 'firstName'?)",
        ),
        (
            {"contacts": {"fields": {"lastNmae": "a"}}},
            "streams.contacts.fields: 'lastNmae' is not a careCycle lead field "
            "(did you mean 'lastName'?)",
        ),
        (
            {"contacts": {"fields": {"favouriteColour": "a"}}},
            "streams.contacts.fields: 'favouriteColour' is not a careCycle lead field",
        ),
        (
            {"contacts": {"fields": {"customFields": "a"}}},
            "streams.contacts.fields: 'customFields' is set with custom_fields",
        ),
        (
            {"contacts": {"fields": {"phoneNumber": ""}}},
            "streams.contacts.fields.phoneNumber: must be a non-empty dotted path string",
        ),
        (
            {"contacts": {"fields": {"phoneNumber": 3}}},
            "streams.contacts.fields.phoneNumber: must be a non-empty dotted path string",
        ),
        (
            {"contacts": {"fields": {"phoneNumber": "a..b"}}},
            "streams.contacts.fields.phoneNumber: path 'a..b' has an empty segment",
        ),
        (
            {"contacts": {"fields": {"phoneNumber": "a."}}},
            "streams.contacts.fields.phoneNumber: path 'a.' has an empty segment",
        ),
        (
            {"contacts": {"custom_fields": "plan"}},
            "streams.contacts.custom_fields: must be an object {fieldKey: 'dotted.path'}",
        ),
        (
            {"contacts": {"custom_fields": {f"k{i}": "x" for i in range(51)}}},
            "streams.contacts.custom_fields: 51 custom fields, careCycle takes at most 50",
        ),
        (
            {"contacts": {"custom_fields": {" ": "x"}}},
            "streams.contacts.custom_fields: field keys must be non-empty strings",
        ),
        (
            {"contacts": {"custom_fields": {"plan": ".plan"}}},
            "streams.contacts.custom_fields.plan: path '.plan' has an empty segment",
        ),
        ({"contacts": {"enabled": "no"}}, "streams.contacts.enabled: must be true or false"),
        ({"contacts": {"enabled": 0}}, "streams.contacts.enabled: must be true or false"),
        ({"contacts": {"source_id": 5}}, "streams.contacts.source_id: must be a non-empty string"),
        (
            {"contacts": {"source_id": " "}},
            "streams.contacts.source_id: must be a non-empty string",
        ),
        (
            {"contacts": {"lead_cost": "abc"}},
            "streams.contacts.lead_cost: must be a non-negative number",
        ),
        (
            {"contacts": {"lead_cost": -1}},
            "streams.contacts.lead_cost: must be a non-negative number",
        ),
        (
            {"contacts": {"lead_cost": True}},
            "streams.contacts.lead_cost: must be a non-negative number",
        ),
        (
            {"contacts": {"lead_cost": "NaN"}},
            "streams.contacts.lead_cost: must be a non-negative number",
        ),
        (
            {"contacts": {"lead_cost": [1]}},
            "streams.contacts.lead_cost: must be a non-negative number",
        ),
        (
            {"contacts": {"lead_cost": "1e400"}},
            "streams.contacts.lead_cost: must be a non-negative number",
        ),
        (
            {"contacts": {"lead_cost": 10**400}},
            "streams.contacts.lead_cost: must be a non-negative number",
        ),
        (
            {"contacts": {"external_id": ""}},
            "streams.contacts.external_id: must be a non-empty dotted path string",
        ),
        (
            {"contacts": {"external_id": "a..id"}},
            "streams.contacts.external_id: path 'a..id' has an empty segment",
        ),
        ({"*": {"enabled": None}}, "streams.*.enabled: must be true or false"),
    ],
)
def test_config_errors(value, message):
    with pytest.raises(MappingConfigError) as caught:
        parse_streams_setting(value)
    assert str(caught.value) == message
    assert isinstance(caught.value, ValueError)
    assert "\n" not in message


@pytest.mark.parametrize(
    "value",
    [
        None,
        {},
        {"*": {}},
        {"contacts": {"fields": None, "custom_fields": None, "source_id": None, "lead_cost": None}},
        {"contacts": {"lead_cost": Decimal("1.5"), "external_id": None}},
        {"contacts": {"custom_fields": {f"k{i}": "x" for i in range(50)}}},
    ],
)
def test_valid_configs(value):
    parse_streams_setting(value)


# --------------------------------------------------------------------------- plan cache


def test_plan_is_cached_per_key_set():
    m = mapper()
    for i in range(5):
        m.map_record({"Phone": str(i), "ZIP": "60614"})
    m.map_record({"Phone": "1", "ZIP": "60614", "dob": "1950-01-01"})
    assert len(m._plans) == 2
    lead = m.map_record({"Phone": "2", "ZIP": "60614", "dob": "1950-01-01", "other": "x"})
    assert {name: lead[name] for name in ("phoneNumber", "postalCode", "dateOfBirth")} == {
        "phoneNumber": "2",
        "postalCode": "60614",
        "dateOfBirth": "1950-01-01",
    }
    assert "other" not in lead and len(m._plans) == 3


def test_record_is_not_modified():
    record = {"phone": PHONE, "contact": {"zip": "60614"}, "id": 1}
    snapshot = {"phone": PHONE, "contact": {"zip": "60614"}, "id": 1}
    mapper({"fields": {"postalCode": "contact.zip"}}, ["id"]).map_record(record)
    assert record == snapshot


# --------------------------------------------------------------------------- docs stay true

MAPPING_DOC = Path(__file__).resolve().parent.parent / "docs" / "mapping.md"


def mapping_section() -> str:
    """The mapping page (docs/mapping.md), whose tables and examples must stay true."""
    return MAPPING_DOC.read_text(encoding="utf-8")


def doc_configs() -> list[dict[str, Any]]:
    blocks = re.findall(r"```json\n(.*?)```", mapping_section(), re.DOTALL)
    return [json.loads(block) for block in blocks]


def test_docs_list_every_alias():
    text = mapping_section()
    for alias, lead_field in ALIASES.items():
        row = re.search(rf"^\| `{lead_field}` \|(.*)\|$", text, re.MULTILINE)
        assert row is not None and f"`{alias}`" in row.group(1), alias


def test_docs_example_configs_are_valid():
    configs = doc_configs()
    assert len(configs) == 2
    for config in configs:
        assert parse_streams_setting(config["streams"])


def test_docs_web_form_example():
    streams = parse_streams_setting(doc_configs()[1]["streams"])
    m = StreamMapper(
        "web_form",
        settings_for_stream(streams, "web_form"),
        [],
        default_source_id=None,
        default_lead_cost=None,
    )
    record = {
        "submission_id": "f-1042",
        "Phone Number": "312.847.1928",
        "ZIP": 2134,
        "DOB": "3/7/1950",
        "answers": {"plan": "Medicare Advantage", "callback_time": None},
        "tracking": {"utm": {"campaign": "spring"}},
    }
    assert normalise_lead(m.map_record(record)).lead == {
        "phoneNumber": "+13128471928",
        "postalCode": "02134",
        "dateOfBirth": "03-07-1950",
        "customFields": [
            {"fieldKey": "plan_interest", "value": "Medicare Advantage"},
            {"fieldKey": "utm_campaign", "value": "spring"},
        ],
        "sourceId": "website",
        "leadCost": 12.5,
        "externalId": "f-1042",
    }
    assert m.external_id_source == "setting"
    assert settings_for_stream(streams, "other").source_id == "other-sources"
