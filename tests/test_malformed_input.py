"""Bad input: one line naming the line number, never its content, never a traceback; what was
on the wire is settled and accounted for; records that are not objects are rejected, not fatal."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from target_runner import (
    TARGET_EXE,
    TargetRun,
    run_target,
    start_target,
    stop_line,
    target_config,
    wait_for_stats,
)

from target_carecycle.sandbox import RunningSandbox, SandboxConfig, running_sandbox
from target_carecycle.sandbox.samples import LEAD_SCHEMA, api_leads

SECRET_KEY = "cc_malformed_input_secret_0123456789"
SECRET_NAME = "Qsecretnamexyz"
SECRET_PHONE = "3125550123"
SECRET_RECORD = {"phoneNumber": f"+1{SECRET_PHONE}", "firstName": SECRET_NAME}
STATE = {"bookmarks": {"leads": {"id": 3}}}


def schema_line(stream: str = "leads") -> str:
    return json.dumps(
        {"type": "SCHEMA", "stream": stream, "schema": LEAD_SCHEMA, "key_properties": []}
    )


def record_line(record: object, stream: str = "leads") -> str:
    return json.dumps({"type": "RECORD", "stream": stream, "record": record})


GOOD = [record_line(lead) for lead in api_leads(3)]
SECRET_JSON = json.dumps(SECRET_RECORD)

BAD_LINES = {
    "truncated": (f'{{"type": "RECORD", "stream": "leads", "record": {SECRET_JSON[:-1]}', "JSON"),
    "not JSON": (f"{SECRET_NAME} {SECRET_PHONE}", "not valid JSON"),
    "no type": (json.dumps({"stream": "leads", "record": SECRET_RECORD}), "has no `type`"),
    "unknown type": (json.dumps({"type": "RECORDZ", "record": SECRET_RECORD}), "RECORDZ"),
    "personal data as type": (json.dumps({"type": SECRET_NAME}), "unknown message type"),
    "an array": (json.dumps([SECRET_RECORD]), "not a Singer message"),
    "a string": (json.dumps(SECRET_NAME), "not a Singer message"),
    "record before schema": (record_line(SECRET_RECORD, "other"), "before its SCHEMA"),
    "record key missing": (json.dumps({"type": "RECORD", "stream": "leads"}), "no `record`"),
    "stream missing": (json.dumps({"type": "RECORD", "record": SECRET_RECORD}), "no `stream`"),
    "schema without properties": (
        json.dumps({"type": "SCHEMA", "stream": "leads", "schema": {"type": "object"}}),
        "`properties`",
    ),
    "key properties not names": (
        json.dumps({"type": "SCHEMA", "stream": "x", "schema": LEAD_SCHEMA, "key_properties": [1]}),
        "key_properties",
    ),
    "state without value": (json.dumps({"type": "STATE", "bookmarks": {}}), "`value`"),
    "state value a list": (json.dumps({"type": "STATE", "value": [1]}), "not an object"),
    "state value a string": (json.dumps({"type": "STATE", "value": SECRET_NAME}), "not an object"),
    "batch without manifest": (
        json.dumps({"type": "BATCH", "stream": "leads", "encoding": {"format": "jsonl"}}),
        "manifest",
    ),
    "batch for unknown stream": (
        json.dumps(
            {"type": "BATCH", "stream": "other", "encoding": {"format": "jsonl"}, "manifest": []}
        ),
        "before its SCHEMA",
    ),
}


def summary_counts(stderr: str, stream: str) -> dict[str, int]:
    line = [text for text in stderr.splitlines() if text.strip().startswith(f"{stream}:")][-1]
    return {label.strip(): int(n) for label, n in re.findall(r"([a-z ()]+) (\d+)", line)}


def assert_accounted(stderr: str, stream: str = "leads") -> dict[str, int]:
    counts = summary_counts(stderr, stream)
    outcomes = sum(v for k, v in counts.items() if k != "received")
    assert counts["received"] == outcomes, counts
    return counts


def assert_no_echo(run: TargetRun) -> None:
    written = run.stdout + run.stderr
    assert "Traceback" not in written
    assert SECRET_NAME not in written
    assert SECRET_PHONE not in written
    assert SECRET_KEY not in written


@pytest.fixture
def secret_sandbox():
    with running_sandbox(SandboxConfig(api_keys=(SECRET_KEY,), rate_limit=0)) as sandbox:
        yield sandbox


@pytest.mark.parametrize(("bad", "reason"), BAD_LINES.values(), ids=BAD_LINES.keys())
def test_a_bad_line_stops_the_run_with_its_line_number_and_no_content(
    tmp_path, secret_sandbox, bad, reason
):
    lines = [schema_line(), *GOOD, bad, *GOOD, json.dumps({"type": "STATE", "value": STATE})]
    run = run_target(tmp_path, target_config(secret_sandbox), lines)
    assert run.returncode == 1
    line = stop_line(run.stderr)
    assert line.startswith("target-carecycle: line 5: ")
    assert reason in line
    assert run.states == []
    assert_no_echo(run)
    counts = assert_accounted(run.stderr)
    assert counts["received"] == 3
    assert secret_sandbox.stats()["upload_requests"] == 0  # nothing new is sent after a stop


def run_bytes(tmp_path: Path, config: dict[str, Any], data: bytes) -> TargetRun:
    config_path = tmp_path / "config.json"
    config_path.write_text(json.dumps(config))
    done = subprocess.run(
        [TARGET_EXE, "--config", str(config_path)], input=data, capture_output=True, timeout=120
    )
    return TargetRun(done.returncode, done.stdout.decode(), done.stderr.decode())


@pytest.mark.parametrize(
    ("tail", "reason"),
    [
        (b'{"type":"RECORD","stream":"leads","record":{"firstName":"\xff\xfe"}}\n', "UTF-8"),
        (b'{"type":"RECORD","stream":"leads","record":{"a":1', "JSON"),  # no newline at the end
        (b"\x00\x01\x02\n", "not valid JSON"),
    ],
    ids=["invalid-utf8", "truncated-last-line", "binary"],
)
def test_undecodable_bytes_stop_the_run_naming_the_line(tmp_path, secret_sandbox, tail, reason):
    head = "\n".join([schema_line(), *GOOD]) + "\n"
    run = run_bytes(tmp_path, target_config(secret_sandbox), head.encode() + tail)
    assert run.returncode == 1
    line = stop_line(run.stderr)
    assert line.startswith("target-carecycle: line 5: ")
    assert reason in line
    assert "Traceback" not in run.stderr
    assert_accounted(run.stderr)


ODD_RECORDS = {
    "null": (None, "record is null, not an object"),
    "array": ([SECRET_RECORD], "record is an array, not an object"),
    "string": (SECRET_NAME, "record is a string, not an object"),
    "number": (3125550123, "record is a number, not an object"),
    "boolean": (True, "record is a boolean, not an object"),
}


def nested(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


def test_records_that_are_not_objects_are_rejected_and_counted(tmp_path, secret_sandbox):
    reject_file = tmp_path / "rejects.jsonl"
    odd = [record_line(value) for value, _ in ODD_RECORDS.values()]
    too_deep = [
        f'{{"type":"RECORD","stream":"leads","record":{nested(depth)}}}'
        for depth in (150, 1000, 50_000)
    ]
    lines = [schema_line(), GOOD[0], *odd, *too_deep, *GOOD[1:]]
    lines.append(json.dumps({"type": "STATE", "value": STATE}))
    # 8 of 11 rejected on purpose: the error rate is not what this test is about.
    config = target_config(secret_sandbox, reject_file=str(reject_file), max_error_rate=1)
    run = run_target(tmp_path, config, lines)

    assert run.returncode == 0, run.stderr[-3000:]
    counts = run.states[-1]["target_carecycle"]["leads"]
    assert counts["received"] == 3 + len(odd) + len(too_deep)
    assert counts["succeeded"] == 3
    assert counts["rejected"] == len(odd) + len(too_deep)
    rejects = [json.loads(line) for line in reject_file.read_text().splitlines()]
    reasons = [r["reason"] for r in rejects]
    assert reasons[: len(odd)] == [reason for _, reason in ODD_RECORDS.values()]
    assert reasons[len(odd) :] == ["record is nested more than 100 levels deep"] * 3
    assert [r["position"] for r in rejects] == list(range(2, 2 + len(rejects)))
    assert "Traceback" not in run.stderr
    assert SECRET_NAME not in run.stderr + run.stdout
    assert len(secret_sandbox.customers()) == 3


def test_activate_version_is_a_warning_even_for_an_unknown_stream(tmp_path, secret_sandbox):
    lines = [
        json.dumps({"type": "ACTIVATE_VERSION", "stream": "unknown", "version": 1}),
        schema_line(),
        *GOOD,
        json.dumps({"type": "ACTIVATE_VERSION", "stream": "leads", "version": 2}),
        json.dumps({"type": "STATE", "value": STATE}),
    ]
    run = run_target(tmp_path, target_config(secret_sandbox), lines)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "ACTIVATE_VERSION for stream 'unknown' (no SCHEMA yet) ignored" in run.stderr
    assert "ACTIVATE_VERSION for stream 'leads' ignored" in run.stderr
    assert run.states[-1]["target_carecycle"]["leads"]["succeeded"] == 3


def feed_then_break(
    tmp_path: Path,
    sandbox: RunningSandbox,
    config: dict[str, Any],
    first: list[str],
    ready: str,
    then: list[str],
) -> tuple[TargetRun, int]:
    """Write `first`, wait until the sandbox has seen an upload request (`ready` stat > 0),
    then write `then` and close stdin. Returns the run and the upload requests seen at the
    moment the bad line was written."""
    proc = start_target(tmp_path, config, first)
    wait_for_stats(sandbox, lambda stats: stats[ready] > 0)
    seen = sandbox.stats()["upload_requests"]
    stdout, stderr = proc.communicate("".join(line + "\n" for line in then), timeout=60)
    return TargetRun(proc.returncode, stdout, stderr), seen


def distinct_leads(count: int) -> list[dict[str, Any]]:
    leads = api_leads(count)
    for index, lead in enumerate(leads):
        lead["firstName"] = f"Qfirst{index:05d}x"
    return leads


def test_a_bad_line_lets_requests_on_the_wire_land_and_records_them(tmp_path):
    """250 records (200 on the wire), then a bad line: the 200 careCycle stores are counted
    succeeded with receipts, the other 50 unsent, no STATE."""
    leads = distinct_leads(250)
    results = tmp_path / "results.jsonl"
    sandbox_config = SandboxConfig(api_keys=(SECRET_KEY,), rate_limit=0, latency=1.0)
    with running_sandbox(sandbox_config) as sandbox:
        config = target_config(sandbox, results_file=str(results))
        first = [schema_line(), *(record_line(lead) for lead in leads)]
        bad = f'{{"type": "RECORD", "stream": "leads", "record": {SECRET_JSON}'
        run, _ = feed_then_break(tmp_path, sandbox, config, first, "upload_requests", [bad])
        stored = sandbox.stats()["created"]

    assert run.returncode == 1
    assert stop_line(run.stderr).startswith("target-carecycle: line 252: not valid JSON")
    assert run.states == []
    assert stored == 200
    counts = assert_accounted(run.stderr)
    assert counts["succeeded"] == 200
    assert counts["not sent (run stopped)"] == 50
    receipts = [json.loads(line) for line in results.read_text().splitlines()]
    assert len(receipts) == 200
    assert {r["externalId"] for r in receipts} == {lead["externalId"] for lead in leads[:200]}
    assert "Traceback" not in run.stderr
    for lead in leads[::25]:
        assert lead["firstName"] not in run.stderr


def test_a_bad_line_against_a_failing_api_stops_without_more_retries(tmp_path):
    """careCycle answers 503: after the bad line no further attempt starts."""
    leads = distinct_leads(201)
    sandbox_config = SandboxConfig(api_keys=(SECRET_KEY,), rate_limit=0, fault="503", fault_every=1)
    with running_sandbox(sandbox_config) as sandbox:
        config = target_config(sandbox, max_retries=8)
        first = [schema_line(), *(record_line(lead) for lead in leads)]
        run, seen = feed_then_break(
            tmp_path, sandbox, config, first, "upload_requests", ["not json"]
        )
        after = sandbox.stats()["upload_requests"]

    assert run.returncode == 1
    assert stop_line(run.stderr).startswith("target-carecycle: line 203: not valid JSON")
    assert after <= seen + 1  # at most the attempt that was already starting
    counts = assert_accounted(run.stderr)
    assert counts["succeeded"] == 0
    assert counts["not sent (run stopped)"] == 201
    assert run.states == []


def test_input_file_with_invalid_utf8_names_the_line(tmp_path, secret_sandbox):
    """`--input FILE` is read as bytes too, so the bad line is named exactly."""
    input_file = tmp_path / "input.singer"
    head = "\n".join([schema_line(), *GOOD]) + "\n"
    input_file.write_bytes(head.encode() + b'{"type":"RECORD","stream":"leads","record":"\xff"}\n')
    config_path = tmp_path / "config.json"
    config_path.write_text(json.dumps(target_config(secret_sandbox)))
    done = subprocess.run(
        [TARGET_EXE, "--config", str(config_path), "--input", str(input_file)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert stop_line(done.stderr).startswith("target-carecycle: line 5: not valid UTF-8; ")


def test_a_non_object_record_on_a_disabled_stream_is_skipped(tmp_path, secret_sandbox):
    config = target_config(secret_sandbox, streams={"leads": {"enabled": False}})
    lines = [
        schema_line(),
        GOOD[0],
        record_line(None),
        json.dumps({"type": "STATE", "value": STATE}),
    ]
    run = run_target(tmp_path, config, lines)
    assert run.returncode == 0, run.stderr[-3000:]
    counts = run.states[-1]["target_carecycle"]["leads"]
    assert (counts["received"], counts["skipped"], counts["rejected"]) == (2, 2, 0)


@pytest.mark.parametrize("bom", [b"\xef\xbb\xbf", b""], ids=["utf-8 BOM", "no BOM"])
def test_a_byte_order_mark_before_the_first_line_is_not_data(tmp_path, secret_sandbox, bom):
    lines = [schema_line(), *GOOD, json.dumps({"type": "STATE", "value": STATE})]
    data = bom + "\r\n".join(lines).encode() + b"\r\n"
    run = run_bytes(tmp_path, target_config(secret_sandbox), data)
    assert run.returncode == 0, run.stderr[-2000:]
    assert len(secret_sandbox.customers()) == 3
    assert run.states[-1]["target_carecycle"]["leads"]["succeeded"] == 3


def test_a_byte_order_mark_after_the_first_line_is_bad_input(tmp_path, secret_sandbox):
    data = (schema_line() + "\n").encode() + b"\xef\xbb\xbf" + GOOD[0].encode() + b"\n"
    run = run_bytes(tmp_path, target_config(secret_sandbox), data)
    assert run.returncode == 1
    assert stop_line(run.stderr).startswith("target-carecycle: line 2: ")
