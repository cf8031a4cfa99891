"""The field registry (target_carecycle/fields.py): each careCycle lead field declared once.

Checked against the contract (docs/carecycle-api.md), against the sandbox's own copy of the
upload rules, and against a name heuristic that fails when a field that looks personal is not
marked personal. The last tests add a field (`middleName`, which the contract does not have)
to a copy of the table and watch every derived list pick it up.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from target_carecycle import fields, leads, mapping
from target_carecycle.client import Scrubber
from target_carecycle.fields import (
    FIELDS,
    LEAD_FIELDS,
    PERSONAL_FIELDS,
    FieldSpec,
    alias_table,
    markdown_table,
    personal_fields,
    upload_fields,
)
from target_carecycle.outcomes import mask_lead
from target_carecycle.sandbox import validation

ROOT = Path(__file__).resolve().parents[1]
CONTRACT = ROOT / "docs" / "carecycle-api.md"
sys.path.insert(0, str(ROOT / "scripts"))
import registry_tables  # noqa: E402  (scripts/ is not a package)

# --------------------------------------------------------------------------- the contract


def contract_rows() -> dict[str, tuple[str, str]]:
    """docs/carecycle-api.md's "Record fields" table: field -> (type, rule)."""
    text = CONTRACT.read_text(encoding="utf-8")
    section = text[text.index("## Record fields") : text.index("## Responses")]
    rows: dict[str, tuple[str, str]] = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split(" | ")]
        if len(cells) < 3 or cells[0] in ("field", "---") or set(cells[0]) <= {"-", "|"}:
            continue
        for name in cells[0].split(","):
            rows[re.sub(r"\s*\(.*\)", "", name).strip()] = (cells[1], " | ".join(cells[2:]))
    return rows


CONTRACT_TYPE = {
    "phone": "string",
    "postal_code": "string",
    "timezone": "string",
    "date": "string",
    "string": "string",
    "enum": "enum",
    "integer": "integer",
    "boolean": "boolean",
    "number": "number",
    "custom_fields": "array",
}


def test_the_upload_fields_are_the_contract_s_fields_with_its_types_limits_and_enums():
    rows = contract_rows()
    assert list(LEAD_FIELDS) == list(rows)  # the contract's order, too
    for name, spec in LEAD_FIELDS.items():
        kind, rule = rows[name]
        assert CONTRACT_TYPE[spec.kind] == kind, name
        limit = re.search(r"at most (\d+) characters", rule)
        assert spec.max_length == (int(limit.group(1)) if limit else None), name
        if spec.kind == "enum":
            assert spec.choices == tuple(re.findall(r"`([^`]+)`", rule)), name
    assert f"at most {fields.MAX_CUSTOM_FIELDS} items" in rows["customFields"][1]
    assert "32-bit signed" in rows["dependentCount"][1]
    assert (fields.INT32_MIN, fields.INT32_MAX) == (-(2**31), 2**31 - 1)


def test_response_only_fields_are_in_the_contract_s_answers_and_never_mapped():
    text = CONTRACT.read_text(encoding="utf-8")
    answers = text[text.index("## Responses") :]
    assert fields.RESPONSE_FIELDS
    for name in fields.RESPONSE_FIELDS:
        assert re.search(rf"\b{name}\b", answers), name
        assert name not in LEAD_FIELDS
        assert name not in mapping.ALIASES.values()
    with pytest.raises(mapping.MappingConfigError, match="'id' is not a careCycle lead field"):
        mapping.parse_streams_setting({"s": {"fields": {"id": "x"}}})


def test_every_derived_constant_comes_from_the_table():
    assert dict(LEAD_FIELDS) == {spec.name: spec for spec in FIELDS if spec.upload}
    assert {spec.name for spec in FIELDS if spec.personal} == PERSONAL_FIELDS
    assert tuple(n for n, s in LEAD_FIELDS.items() if s.kind == "boolean") == fields.BOOLEAN_FIELDS
    assert LEAD_FIELDS["gender"].choices == fields.GENDERS
    assert LEAD_FIELDS["maritalStatus"].choices == fields.MARITAL_STATUSES
    assert dict(fields.ALIASES) == {a: s.name for s in FIELDS if s.upload for a in s.aliases}
    # The modules that read them hold the registry's objects, not copies.
    assert leads.LEAD_FIELDS is LEAD_FIELDS and leads.PERSONAL_FIELDS is PERSONAL_FIELDS
    assert mapping.ALIASES is fields.ALIASES
    assert Scrubber("k").personal_fields is PERSONAL_FIELDS
    with pytest.raises(TypeError):
        LEAD_FIELDS["x"] = FIELDS[0]  # type: ignore[index]
    with pytest.raises(AttributeError):
        FIELDS[0].personal = False  # type: ignore[misc]


def test_every_field_names_a_normaliser_leads_py_has():
    for spec in FIELDS:
        assert spec.normaliser_name in leads.NORMALISER_NAMES, spec.name
        leads.normaliser_for(spec)  # builds


def test_a_field_spec_checks_its_kind_and_choices():
    with pytest.raises(ValueError, match="kind 'text'"):
        FieldSpec("x", "text", personal=False)
    with pytest.raises(ValueError, match="an enum has choices"):
        FieldSpec("x", "enum", personal=False)
    with pytest.raises(ValueError, match="an enum has choices"):
        FieldSpec("x", "string", personal=False, choices=("a",))


def test_one_alias_for_two_fields_is_refused():
    twice = (
        FieldSpec("a", "string", personal=False, aliases=("same",)),
        FieldSpec("b", "string", personal=False, aliases=("same",)),
    )
    with pytest.raises(ValueError, match="alias 'same' is given to a and b"):
        alias_table(twice)


def test_no_two_aliases_of_different_fields_look_alike_once_normalised():
    """Column names match ignoring case and separators: two fields must not share a spelling."""
    seen: dict[str, str] = {}
    for spec in LEAD_FIELDS.values():
        for spelling in (spec.name, *spec.aliases):
            key = mapping.normalise_column_name(spelling)
            assert seen.setdefault(key, spec.name) == spec.name, (spelling, seen[key])


# --------------------------------------------------------------------------- personal data

# Name parts that suggest a field identifies a person (names, contact details, birth dates,
# addresses, government and insurance numbers, customer ids at other companies, and free-form
# custom fields, which can hold any of these).
LOOKS_PERSONAL = re.compile(
    r"name|initial|phone|mobile|e?mail|birth|dob|address|street|city|zip|postal|ssn|social"
    r"|number|custom|mbi|passport|licen[cs]e|taxid|note|comment",
    re.IGNORECASE,
)
# Reviewed: names that match the pattern but whose values identify no one.
REVIEWED_NOT_PERSONAL = {
    "doNotEmail": "a consent flag (true/false), not an address",
    "doNotMail": "a consent flag (true/false), not an address",
    "socialSecurityDisability": "whether the person receives SSDI (true/false), not a number",
}


def unmarked_personal(table: Iterable[FieldSpec]) -> list[str]:
    """Fields whose name looks personal, not marked personal, and not reviewed as safe."""
    return [
        spec.name
        for spec in table
        if LOOKS_PERSONAL.search(spec.name)
        and not spec.personal
        and spec.name not in REVIEWED_NOT_PERSONAL
    ]


def test_every_field_that_looks_personal_is_marked_personal():
    assert unmarked_personal(FIELDS) == []


def test_the_reviewed_list_is_current_and_each_entry_needs_its_review():
    by_name = {spec.name: spec for spec in FIELDS}
    for name in REVIEWED_NOT_PERSONAL:
        assert name in by_name, f"{name} is reviewed but not in the registry"
        assert LOOKS_PERSONAL.search(name), f"{name} does not need a review"
        assert by_name[name].kind == "boolean", name  # every reviewed one is a yes/no flag


def test_the_heuristic_catches_the_fields_that_are_personal_today():
    """Strip the mark from each personal field in turn: the heuristic sees every one."""
    for spec in FIELDS:
        if spec.personal:
            unmarked = FieldSpec(spec.name, spec.kind, personal=False, max_length=spec.max_length)
            assert unmarked_personal([unmarked]) == [spec.name]


def test_free_form_fields_are_personal():
    """Custom fields can hold anything (an SSN, a spouse's name): their values are personal."""
    free_form = [spec for spec in FIELDS if spec.kind == "custom_fields"]
    assert [spec.name for spec in free_form] == ["customFields"]
    assert all(spec.personal for spec in free_form)


def test_a_field_cannot_be_declared_without_deciding_personal():
    with pytest.raises(TypeError, match="personal"):
        FieldSpec("middleName", "string", max_length=255)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        FieldSpec("middleName", "string", True)  # type: ignore[call-arg]  # keyword only


# --------------------------------------------------------------------------- the sandbox's copy


def test_the_sandbox_accepts_exactly_the_upload_fields():
    assert set(validation.FIELD_VALIDATORS) == set(LEAD_FIELDS)
    assert validation.GENDERS == fields.GENDERS
    assert validation.MARITAL_STATUSES == fields.MARITAL_STATUSES
    assert validation.MAX_CUSTOM_FIELDS == fields.MAX_CUSTOM_FIELDS
    assert (validation.INT32_MIN, validation.INT32_MAX) == (fields.INT32_MIN, fields.INT32_MAX)


GOOD_VALUE: dict[str, Any] = {
    "phone": "+13128471928",
    "postal_code": "60614",
    "timezone": "America/Chicago",
    "date": "03-07-1950",
    "integer": 7,
    "number": 7.5,
    "boolean": True,
    "custom_fields": [{"fieldKey": "a", "value": "b"}],
}
BAD_VALUE: dict[str, Any] = {
    "phone": "31284",
    "postal_code": "6061",
    "timezone": "Mars/Olympus",
    "date": "1950-03-07",
    "integer": 7.5,
    "number": True,
    "boolean": "true",
    "custom_fields": [{"fieldKey": "a", "value": "b"}] * (fields.MAX_CUSTOM_FIELDS + 1),
    "string": 12,
}


@pytest.mark.parametrize("name", list(LEAD_FIELDS))
def test_the_sandbox_rule_for_each_field_agrees_with_the_registry(name):
    spec = LEAD_FIELDS[name]
    check = validation.FIELD_VALIDATORS[name]
    path = ("records", 0, name)
    if spec.kind == "string":
        longest = spec.max_length or 1000
        assert check("a" * longest, path) == []
        if spec.max_length:
            assert [e.code for e in check("a" * (longest + 1), path)] == ["too_big"]
    elif spec.kind == "enum":
        for choice in spec.choices:
            assert check(choice, path) == []
        assert check(spec.choices[0].lower(), path)
    else:
        assert check(GOOD_VALUE[spec.kind], path) == []
    if spec.kind != "enum":
        assert check(BAD_VALUE[spec.kind], path), name
    if spec.kind == "integer":
        assert check(fields.INT32_MAX, path) == [] and check(fields.INT32_MAX + 1, path)


def test_the_sandbox_keeps_its_own_copy_and_never_imports_the_target():
    """It checks the target independently: importing the registry would confirm its mistakes."""
    for path in sorted((ROOT / "target_carecycle" / "sandbox").glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            for module in names:
                if module.startswith("target_carecycle"):
                    assert module.startswith("target_carecycle.sandbox"), (path.name, module)


# --------------------------------------------------------------------------- the docs table


def test_the_docs_field_table_is_the_registry_s():
    assert registry_tables.stale_pages() == []
    page = (ROOT / "docs" / "mapping.md").read_text(encoding="utf-8")
    assert markdown_table(FIELDS) in page


def test_the_tables_script_check_exits_0():
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "registry_tables.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_check_names_a_drifted_page(tmp_path, monkeypatch):
    page = tmp_path / "mapping.md"
    real = (ROOT / "docs" / "mapping.md").read_text(encoding="utf-8")
    page.write_text(real.replace("| `city` | text, at most 255 | yes |", "| `city` | text | no |"))
    table = registry_tables.TABLES[0]
    moved = registry_tables.Table(page, table.name, table.render)
    monkeypatch.setattr(registry_tables, "TABLES", (moved,))
    (diff,) = registry_tables.stale_pages()
    assert "-| `city` | text | no |" in diff and "+| `city` | text, at most 255 | yes |" in diff


# --------------------------------------------------------------------------- a new field

MIDDLE_NAME = FieldSpec(
    "middleName", "string", personal=True, max_length=255, aliases=("middle_name", "mname")
)


def test_middle_name_is_not_in_the_contract_so_not_in_the_real_registry():
    assert "middleName" not in CONTRACT.read_text(encoding="utf-8")
    assert "middleName" not in LEAD_FIELDS


def test_a_new_field_is_one_registry_entry_and_every_derived_list_picks_it_up():
    """Redo issue 18's change: add middleName (personal) to a copy of the table."""
    table = (*FIELDS, MIDDLE_NAME)
    personal = personal_fields(table)
    assert "middleName" in upload_fields(table)
    assert "middleName" in personal
    assert alias_table(table)["middle_name"] == "middleName"
    assert alias_table(table)["mname"] == "middleName"

    lead = {"phoneNumber": "+13128471928", "middleName": "Bartholomew", "state": "IL"}
    masked = mask_lead(lead, personal)
    assert "Bartholomew" not in str(masked) and masked["state"] == "IL"
    assert mask_lead(lead)["middleName"] == "Bartholomew"  # the real table has no such field

    echo = "careCycle: middleName Bartholomew is not allowed"
    assert "Bartholomew" not in Scrubber("k", [lead], personal_fields=personal)(echo)
    assert "Bartholomew" in Scrubber("k", [lead])(echo)

    row = "| `middleName` | text, at most 255 | yes | `middle_name`, `mname` |"
    assert row in markdown_table(table)
    assert row not in markdown_table(FIELDS)

    normalise = leads.normaliser_for(MIDDLE_NAME)
    assert normalise("Bart") == "Bart"
    with pytest.raises(ValueError, match="longer than 255"):
        normalise("B" * 256)
    assert unmarked_personal(table) == []


def test_forgetting_to_mark_the_new_field_personal_fails_the_heuristic():
    forgot = FieldSpec("middleName", "string", personal=False, max_length=255)
    assert unmarked_personal((*FIELDS, forgot)) == ["middleName"]
