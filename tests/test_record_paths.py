"""The lean record path (plain streams) and the SDK's record path give the same results.

The same input runs twice through the real executable against two fresh sandboxes: once as a
plain stream (lean path), once with an identity stream map (which sends every record through
the SDK's own path). Reject and results files, the state's counts and what careCycle stored
must be equal, for records with `_sdc_*` metadata columns, nested values and odd types.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from target_runner import run_target, target_config

from target_carecycle.sandbox import SandboxConfig, running_sandbox
from target_carecycle.target import TargetCareCycle

IDENTITY_MAP: dict[str, Any] = {"stream_maps": {"leads": {}, "no_keys": {}}}
SCHEMA_KEYS = {
    "type": "SCHEMA",
    "stream": "leads",
    "key_properties": ["id"],
    "schema": {"type": "object", "properties": {"id": {"type": "integer"}}},
}
SCHEMA_NO_KEYS = {**SCHEMA_KEYS, "stream": "no_keys", "key_properties": []}
METADATA: dict[str, Any] = {
    "_sdc_extracted_at": "2026-11-26T08:00:00Z",
    "_sdc_received_at": "2026-11-26T08:00:01Z",
    "_sdc_batched_at": "2026-11-26T08:00:02Z",
    "_sdc_deleted_at": None,
    "_sdc_sequence": 1764144000000,
    "_sdc_table_version": 3,
    "_sdc_sync_started_at": 1764144000,
}


def records(extracted_at: str) -> list[dict[str, Any]]:
    """Leads with metadata columns, nested values and odd types; some rejected."""
    base: list[dict[str, Any]] = [
        {"id": 1, "phone": "(312) 847-1928", "zip": "02134", "first_name": "Ada"},
        {"id": 2, "phone": "3128471929", "zip": 2134.0, "dob": "1950-03-07", "tags": ["a", 1]},
        {"id": 3, "phone": "+1 312 847 1930", "contact": {"email": "x@example.com"}, "zip": "x"},
        {"id": 4, "phone": None, "zip": "02134"},
        {"id": 5, "phone": "312-847-1931", "timezone": "EST", "householdIncome": "55,000.00"},
        {"id": 6, "phone": "312.847.1932", "zip": "60601", "veteran": "yes", "gender": "F"},
        {"id": 2, "phone": "3128471929", "zip": "60601", "extra": {"deep": {"deeper": [1, 2]}}},
    ]
    with_metadata = []
    for number, record in enumerate(base):
        row = {**record, **METADATA, "_sdc_extracted_at": extracted_at}
        row["_sdc_sequence"] = METADATA["_sdc_sequence"] + number
        with_metadata.append(row)
    return with_metadata


def lines(extracted_at: str = "2026-11-26T08:00:00Z") -> list[str]:
    out = [json.dumps(SCHEMA_KEYS), json.dumps(SCHEMA_NO_KEYS)]
    for stream in ("leads", "no_keys"):
        out += [
            json.dumps({"type": "RECORD", "stream": stream, "record": record})
            for record in records(extracted_at)
        ]
    out.append(json.dumps({"type": "STATE", "value": {"bookmarks": {"leads": 7}}}))
    return out


def takes_lean_path(config: dict[str, Any]) -> set[str]:
    """The streams whose records would take the lean path under `config`."""
    target = TargetCareCycle(config={**config, "dry_run": True}, validate_config=True)
    target.listen(io.StringIO(json.dumps(SCHEMA_KEYS) + "\n" + json.dumps(SCHEMA_NO_KEYS) + "\n"))
    return set(target._lean_sinks)


def without_run_stamp(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    for row in rows:
        row.pop("run", None)
        row.pop("id", None)  # careCycle's own id differs between two sandboxes
    return rows


def stored(customers: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    volatile = {"id", "createdAt", "updatedAt"}
    return {c["externalId"]: {k: v for k, v in c.items() if k not in volatile} for c in customers}


def run_once(
    tmp_path: Path, extra: dict[str, Any], extracted_at: str = "2026-11-26T08:00:00Z"
) -> dict[str, Any]:
    tmp_path.mkdir()
    with running_sandbox(SandboxConfig(rate_limit=0)) as sandbox:
        config = target_config(
            sandbox,
            reject_file=str(tmp_path / "rejects.jsonl"),
            results_file=str(tmp_path / "results.jsonl"),
            **extra,
        )
        run = run_target(tmp_path, config, lines(extracted_at))
        customers = sandbox.customers()
    assert run.returncode == 0, run.stderr[-2000:]
    return {
        "rejects": without_run_stamp(tmp_path / "rejects.jsonl"),
        "results": without_run_stamp(tmp_path / "results.jsonl"),
        "state": run.states[-1],
        "stored": stored(customers),
    }


def test_the_identity_map_really_takes_the_sdk_path(sandbox):
    plain = target_config(sandbox)
    assert takes_lean_path(plain) == {"leads", "no_keys"}
    assert takes_lean_path({**plain, **IDENTITY_MAP}) == set()


@pytest.mark.parametrize("part", ["rejects", "results", "state", "stored"])
def test_lean_and_sdk_paths_give_equal_results(tmp_path, part):
    lean = run_once(tmp_path / "lean", {})
    sdk = run_once(tmp_path / "sdk", IDENTITY_MAP)
    if part in ("rejects", "results"):
        assert by_stream(lean[part]) == by_stream(sdk[part])
    else:
        assert lean[part] == sdk[part]


def by_stream(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """File lines grouped by stream, each stream's in file order.

    The two streams' sinks drain side by side, so which stream's lines come first in a file
    depends on timing (a busy machine changes it); within one stream the order is the
    target's and is compared as it is. Every line is compared.
    """
    grouped: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        grouped.setdefault(row["stream"], []).append(row)
    return grouped


def test_grouping_by_stream_keeps_every_line_and_each_stream_s_order():
    a1, a2, b1 = ({"stream": "a", "n": 1}, {"stream": "a", "n": 2}, {"stream": "b", "n": 1})
    assert by_stream([a1, b1, a2]) == by_stream([b1, a1, a2]) == {"a": [a1, a2], "b": [b1]}
    assert by_stream([a2, a1, b1]) != by_stream([a1, a2, b1])  # a stream's order still counts
    assert by_stream([a1, b1]) != by_stream([a1, a2, b1])  # and every line


def test_metadata_columns_never_reach_a_lead_or_the_reject_file(tmp_path):
    lean = run_once(tmp_path / "lean", {})
    for row in lean["rejects"]:
        assert not any(name.startswith("_sdc_") for name in row["record"])
    # Without key properties the externalId is a content hash: metadata must not feed it,
    # or every run (new _sdc_ values) would make new leads.
    no_keys = [row for row in lean["results"] if row["stream"] == "no_keys"]
    assert no_keys
    again = run_once(tmp_path / "again", {}, extracted_at="2026-11-27T08:00:00Z")
    assert no_keys == [row for row in again["results"] if row["stream"] == "no_keys"]
