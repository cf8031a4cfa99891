"""BATCH messages (SDK batch files) take the same path as RECORD messages: counted, mapped,
validated, uploaded, in the reject/results files and state, in input order."""

from __future__ import annotations

import gzip
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from target_runner import TARGET_EXE, run_target, stop_line, target_config

from target_carecycle.sandbox.samples import LEAD_SCHEMA, phone_for

SCHEMA = {
    "type": "object",
    "properties": {**LEAD_SCHEMA["properties"], "language": {"type": ["string", "null"]}},
}
STATE = {"bookmarks": {"leads": {"id": 349}}}


def lead(index: int, version: str) -> dict[str, Any]:
    return {
        "externalId": f"lead-{index}",
        "phoneNumber": phone_for(index),
        "postalCode": "60614",
        "firstName": f"Qbatch{index:04d}x",
        "language": version,
    }


def schema_line() -> str:
    return json.dumps(
        {"type": "SCHEMA", "stream": "leads", "schema": SCHEMA, "key_properties": ["externalId"]}
    )


def record_line(record: object) -> str:
    return json.dumps({"type": "RECORD", "stream": "leads", "record": record})


def batch_line(urls: list[str], compression: str | None = "gzip", fmt: str = "jsonl") -> str:
    encoding = {"format": fmt, "compression": compression}
    return json.dumps({"type": "BATCH", "stream": "leads", "encoding": encoding, "manifest": urls})


def write_jsonl(path: Path, records: list[object], *, gzipped: bool) -> str:
    data = "".join(json.dumps(r) + "\n" for r in records).encode()
    path.write_bytes(gzip.compress(data) if gzipped else data)
    return path.as_uri()


def test_batch_records_are_uploaded_counted_and_ordered_with_record_messages(tmp_path, sandbox):
    gz_url = write_jsonl(
        tmp_path / "part-1.json.gz", [lead(i, "batch") for i in range(300)], gzipped=True
    )
    plain_records: list[object] = [lead(i, "plain") for i in range(300, 350)]
    plain_records += [None, ["not", "an", "object"]]
    plain_url = write_jsonl(tmp_path / "part-2.jsonl", plain_records, gzipped=False)
    lines = [
        schema_line(),
        record_line(lead(0, "record-before")),
        record_line(lead(1, "record-before")),
        batch_line([gz_url]),
        batch_line([plain_url], compression=None),
        record_line(lead(5, "record-after")),
        json.dumps({"type": "STATE", "value": STATE}),
    ]
    results = tmp_path / "results.jsonl"
    rejects = tmp_path / "rejects.jsonl"
    config = target_config(sandbox, results_file=str(results), reject_file=str(rejects))
    run = run_target(tmp_path, config, lines)

    assert run.returncode == 0, run.stderr[-3000:]
    held = {c["externalId"]: c["language"] for c in sandbox.customers()}
    expected = {f"lead-{i}": "batch" for i in range(300)}
    expected |= {f"lead-{i}": "plain" for i in range(300, 350)}
    expected["lead-5"] = "record-after"
    assert held == expected

    counts = run.states[-1]["target_carecycle"]["leads"]
    assert counts["received"] == 2 + 300 + 52 + 1
    assert counts["rejected"] == 2
    assert counts["merged"] == 2  # the two RECORDs, replaced by the batch's later versions
    assert counts["succeeded"] == 351
    assert counts["received"] == sum(v for k, v in counts.items() if k != "received")
    assert {k: v for k, v in run.states[-1].items() if k != "target_carecycle"} == STATE

    receipts = [json.loads(line) for line in results.read_text().splitlines()]
    assert len(receipts) == 351
    reasons = [json.loads(line)["reason"] for line in rejects.read_text().splitlines()]
    assert reasons == ["record is null, not an object", "record is an array, not an object"]
    metric = '"metric":"record_count","value":351,"tags":{"outcome":"succeeded","stream":"leads"'
    assert metric in run.stderr  # METRIC lines count batch records too
    assert "received 355, succeeded 351, failed 0, rejected 2, merged 2" in run.stderr
    assert "Qbatch0001x" not in run.stderr


def test_batch_records_go_through_lead_validation(tmp_path, sandbox):
    bad = {**lead(7, "batch"), "phoneNumber": "12"}
    url = write_jsonl(tmp_path / "bad.json.gz", [lead(6, "batch"), bad], gzipped=True)
    run = run_target(tmp_path, target_config(sandbox), [schema_line(), batch_line([url])])
    assert run.returncode == 0, run.stderr[-3000:]
    assert [c["externalId"] for c in sandbox.customers()] == ["lead-6"]
    assert "position=2 externalId=lead-7" in run.stderr


def unreadable_cases(tmp_path: Path) -> dict[str, tuple[str, str, str]]:
    """name -> (BATCH line, what the stop line must say, what it must not say)."""
    missing = (tmp_path / "missing.json.gz").as_uri()
    corrupt = tmp_path / "corrupt.json.gz"
    corrupt.write_bytes(gzip.compress(b'{"a": 1}\n' * 100)[:-20])
    bad_json = tmp_path / "bad.json.gz"
    bad_json.write_bytes(gzip.compress(b'{"firstName": "Qsecretx"}\n{"firstName": "Qsecr\n'))
    not_gzip = tmp_path / "plain.jsonl"
    not_gzip.write_text('{"a": 1}\n')
    return {
        "missing": (batch_line([missing]), f"batch file {missing}: cannot be opened", "Qsecret"),
        "corrupt gzip": (
            batch_line([corrupt.as_uri()]),
            f"batch file {corrupt.as_uri()}: cannot be read",
            "Qsecret",
        ),
        "bad JSON line": (
            batch_line([bad_json.as_uri()]),
            f"batch file {bad_json.as_uri()}, line 2: not valid JSON",
            "Qsecret",
        ),
        "says gzip, is not": (
            batch_line([not_gzip.as_uri()]),
            f"batch file {not_gzip.as_uri()}: cannot be read",
            "Qsecret",
        ),
        "unknown format": (
            batch_line([not_gzip.as_uri()], fmt="csv"),
            "unsupported format csv",
            "Qsecret",
        ),
        "password in the URL": (
            batch_line(["s3://user:Qsecretpw@bucket.example/leads.json.gz"]),
            "batch file s3://bucket.example/leads.json.gz: cannot be opened",
            "Qsecretpw",
        ),
        "signed URL": (
            batch_line(["https://bucket.example/leads.json.gz?X-Amz-Signature=Qsig#Qfrag"]),
            "batch file https://bucket.example/leads.json.gz: cannot be opened",
            "Qsig",
        ),
    }


CASES = [
    "missing",
    "corrupt gzip",
    "bad JSON line",
    "says gzip, is not",
    "unknown format",
    "password in the URL",
    "signed URL",
]


@pytest.mark.parametrize("case", CASES)
def test_an_unreadable_batch_file_stops_the_run_naming_it(tmp_path, sandbox, case):
    batch, says, never = unreadable_cases(tmp_path)[case]
    lines = [
        schema_line(),
        record_line(lead(0, "x")),
        batch,
        json.dumps({"type": "STATE", "value": STATE}),
    ]
    run = run_target(tmp_path, target_config(sandbox), lines)
    assert run.returncode == 1
    stop = stop_line(run.stderr)
    assert stop.startswith("target-carecycle: line 3: ")
    assert says in stop
    assert never not in run.stderr
    assert "Traceback" not in run.stderr
    assert run.states == []
    summary = [line for line in run.stderr.splitlines() if line.strip().startswith("leads:")][-1]
    counts = {k.strip(): int(v) for k, v in re.findall(r"([a-z ()]+) (\d+)", summary)}
    assert counts["succeeded"] == 0
    assert counts["received"] == sum(v for k, v in counts.items() if k != "received")


def test_parquet_needs_pyarrow_or_is_read(tmp_path, sandbox):
    """Parquet batch files are read when pyarrow is installed, else named as needing it."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        url = (tmp_path / "leads.parquet").as_uri()
        run = run_target(
            tmp_path, target_config(sandbox), [schema_line(), batch_line([url], None, "parquet")]
        )
        assert run.returncode == 1
        assert "parquet needs pyarrow" in run.stderr
        return
    path = tmp_path / "leads.parquet"
    pq.write_table(pa.Table.from_pylist([lead(i, "parquet") for i in range(3)]), path)
    run = run_target(
        tmp_path,
        target_config(sandbox),
        [schema_line(), batch_line([path.as_uri()], None, "parquet")],
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert len(sandbox.customers()) == 3


def test_about_lists_the_batch_capability():
    about = subprocess.run(
        [TARGET_EXE, "--about", "--format", "json"], capture_output=True, text=True, check=True
    )
    info = json.loads(about.stdout)
    assert "batch" in info["capabilities"]
    assert "batch_config" in info["settings"]["properties"]
    project = yaml.safe_load((Path(__file__).parent.parent / "meltano.yml").read_text())
    (loader,) = [p for p in project["plugins"]["loaders"] if p["name"] == "target-carecycle"]
    assert "batch" in loader["capabilities"]
