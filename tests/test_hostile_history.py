"""Hostile outside tests of the run history, the report and the registries (issues 17, 18).

Each test drives the real executables (`target-carecycle`, `carecycle-report`) against the
sandbox. Each finding of the hostile pass is fixed; its test stays as the regression test
(the read-only mount test needs root and says so where it cannot mount).
"""

from __future__ import annotations

import ast
import csv
import io
import json
import re
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import closing
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from target_runner import run_target, start_target, target_config, wait_for_stats
from test_history import SECRET_KEY, leads_of, lines, one_line_error, report, report_json

from target_carecycle.client import Scrubber
from target_carecycle.sandbox import SandboxConfig, running_sandbox
from target_carecycle.sandbox.samples import singer_lines


@pytest.fixture
def sandbox():
    with running_sandbox(SandboxConfig(api_keys=(SECRET_KEY,), rate_limit=0)) as running:
        yield running


def store_runs(tmp_path: Path, sandbox: Any, **extra: Any) -> tuple[dict[str, Any], Path]:
    """A config with a SQLite store and one succeeded run recorded in it."""
    store = tmp_path / "store.sqlite"
    config = target_config(sandbox, sync_store=str(store), **extra)
    done = run_target(tmp_path, config, lines(leads_of(10)))
    assert done.returncode == 0, done.stderr[-3000:]
    return config, store


# -- carecycle-report must never change the store ------------------------------------------


def test_report_out_onto_its_own_store_leaves_the_store_alone(sandbox, tmp_path):
    config, store = store_runs(tmp_path, sandbox)
    before = store.read_bytes()
    done = report(tmp_path, config, "--format", "html", "--out", str(store))
    assert done.returncode == 1, done.stderr
    assert store.read_bytes() == before
    # and the store still works for the target and the report
    assert report_json(tmp_path, config)[0]["status"] == "succeeded"


# -- the report's settings: the same checks as the target's ------------------------------------


def test_report_refuses_a_misspelt_sync_store_in_the_config_file(sandbox, tmp_path):
    config, store = store_runs(tmp_path, sandbox)
    misspelt = {k: v for k, v in config.items() if k != "sync_store"}
    misspelt["sync_stor"] = str(store)
    target = run_target(tmp_path, misspelt, lines(leads_of(1)))
    assert target.returncode == 1 and "sync_stor:" in target.stderr  # the target refuses it
    line = one_line_error(report(tmp_path, misspelt), SECRET_KEY)
    assert re.search(r"sync_stor(?!e)", line), line


def test_report_one_line_errors_for_hostile_inputs(sandbox, tmp_path):
    """What held: every one of these is one line, exit 1, no traceback, no secret."""
    config, store = store_runs(tmp_path, sandbox)
    password = "S3cr3tPwHostile"
    cases: list[tuple[dict[str, Any] | None, list[str]]] = []
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"not sqlite at all " * 10)
    empty = tmp_path / "empty.sqlite"
    empty.write_bytes(b"")
    newer = tmp_path / "newer.sqlite"
    newer.write_bytes(store.read_bytes())
    with closing(sqlite3.connect(newer)) as conn, conn:
        conn.execute("UPDATE carecycle_sync_meta SET value='99' WHERE name='schema_version'")
    for location in (junk, empty, newer, tmp_path / "none.sqlite"):
        cases.append(({**config, "sync_store": str(location)}, []))
    pg = f"postgresql+psycopg://bob:{password}@127.0.0.1:1/db"
    cases.append(({**config, "sync_store": pg}, []))
    cases.append(({**config, "sync_store": "off"}, []))
    (tmp_path / "dir").mkdir()
    cases.append((config, ["--out", str(tmp_path / "dir")]))
    cases.append((config, ["--out", "/dev/full"]))
    cases.append((config, ["--runs", "0"]))
    cases.append((config, ["--runs", "-1"]))
    cases.append((config, ["--runs", "99999999999999999999"]))
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (tmp_path / "link.html").symlink_to(victim)
    cases.append((config, ["--format", "html", "--out", str(tmp_path / "link.html")]))
    for case_config, args in cases:
        one_line_error(report(tmp_path, case_config, *args), SECRET_KEY, password)
    assert victim.read_text() == "precious"
    bad = tmp_path / "bad.json"
    bad.write_text("not json {")
    done = report(tmp_path, None, "--config", str(bad))
    one_line_error(done)


# -- history consistency ---------------------------------------------------------------------


def test_text_report_shows_no_counts_for_a_killed_run(sandbox, tmp_path):
    store = tmp_path / "s.sqlite"
    config = target_config(sandbox, sync_store=str(store), batch_size_rows=5)
    proc = start_target(tmp_path, config, lines(leads_of(20))[:-1], quiet=True)
    wait_for_stats(sandbox, lambda stats: stats["leads_received"] >= 20)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.stdin is not None
    proc.stdin.close()
    assert sandbox.stats()["created"] == 20  # the killed run delivered every lead
    runs = report_json(tmp_path, config)
    assert runs[0]["status"] == "unfinished" and runs[0]["streams"] == {}
    done = report(tmp_path, config)
    assert done.returncode == 0, done.stderr
    row = next(line for line in done.stdout.splitlines() if "unfinished" in line)
    # received, sent, ... must not read as "0": the counts are unknown, not zero
    assert " 0 " not in row + " ", row


# -- reasons carry no personal value of a record ----------------------------------------------


def test_a_failed_reason_carries_no_personal_value_of_the_record(sandbox, tmp_path):
    """Decided (was a finding): careCycle's `Source not found: <sourceId>` names the sourceId.

    A sourceId is the agency's configuration value, not personal data, and the operator needs
    it to fix `source_id`: it may reach the reason. The scrubber removes the record's personal
    values and the key: none of the same lead's may appear anywhere.
    """
    store = tmp_path / "s.sqlite"
    config = target_config(sandbox, sync_store=str(store), sync_log=True)
    leads = leads_of(3)
    marker = "srcZZvalue4711"
    leads[1]["sourceId"] = marker
    done = run_target(tmp_path, config, lines(leads))
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.summary["streams"]["leads"]["failed"] == 1
    csv_out = report(tmp_path, config, "--format", "csv")
    assert csv_out.returncode == 0, csv_out.stderr
    assert marker in csv_out.stdout  # the non-personal sourceId, for the operator
    kept = store.read_bytes().decode("latin-1")
    personal = [leads[1][k] for k in ("firstName", "lastName", "email", "phoneNumber")]
    for output in (done.stderr, csv_out.stdout, kept):
        assert SECRET_KEY not in output
        for value in personal:
            assert value not in output


# -- the registries ---------------------------------------------------------------------------


CUSTOM_RECORD = {
    "id": "c1",
    "phone": "+13122000001",
    "first_name": "Yyfirst",
    "ssn": "123-45-6789",
    "spouse_name": "YySpouseName",
    "zip": "60614",
}


def test_dry_run_sample_masks_custom_field_values(sandbox, tmp_path):
    config = target_config(
        sandbox,
        dry_run=True,
        sync_store="off",
        streams={"contacts": {"custom_fields": {"ssn": "ssn", "spouse": "spouse_name"}}},
    )
    schema = {"type": "object", "properties": {k: {"type": "string"} for k in CUSTOM_RECORD}}
    messages = [
        json.dumps({"type": "SCHEMA", "stream": "contacts", "schema": schema,
                    "key_properties": ["id"]}),
        json.dumps({"type": "RECORD", "stream": "contacts", "record": CUSTOM_RECORD}),
    ]  # fmt: skip
    done = run_target(tmp_path, config, messages)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Dry run sample" in done.stderr
    assert "Yyfirst" not in done.stderr  # a registry personal field: masked (holds)
    for value in ("123-45-6789", "YySpouseName"):
        assert value not in done.stderr


def test_scrubber_strips_echoed_custom_field_values():
    lead = {
        "phoneNumber": "+13122000001",
        "firstName": "Yyfirst",
        "customFields": [{"fieldKey": "ssn", "value": "123-45-6789"}],
    }
    scrub = Scrubber("cc_hostile_key_0123456789", [lead])
    text = scrub("customFields.0.value: '123-45-6789' is not allowed for Yyfirst")
    assert "Yyfirst" not in text  # holds
    assert "123-45-6789" not in text


# -- what held: no personal value, no key, escaped output --------------------------------------


HOSTILE_IDS = [
    "<script>alert(1)</script>",
    "\"'><img src=x onerror=alert(1)>",
    "=cmd|' /C calc'!A0",
    "+SUM(1)",
    "@x",
    "line1\nline2",
    "\x1b[31mred\u202e",
]


def test_report_outputs_escape_hostile_ids_and_hold_no_personal_value(sandbox, tmp_path):
    store = tmp_path / "s.sqlite"
    config = target_config(sandbox, sync_store=str(store), sync_log=True)
    leads = leads_of(len(HOSTILE_IDS) + 40)
    for lead, external_id in zip(leads, HOSTILE_IDS, strict=False):
        lead["externalId"] = external_id
        lead["phoneNumber"] = "12"  # rejected
    stream = "evil</svg><script>alert(2)</script>\x1b[2J"
    done = run_target(tmp_path, config, list(singer_lines(stream, leads, state={"b": 1})))
    assert done.returncode == 0, done.stderr[-3000:]
    outputs = {}
    for fmt in ("text", "json", "html", "csv"):
        got = report(tmp_path, config, "--format", fmt)
        assert got.returncode == 0, got.stderr
        outputs[fmt] = got.stdout
    personal = [lead[k] for lead in leads for k in ("firstName", "lastName", "email")]
    personal += [lead["phoneNumber"] for lead in leads if len(lead["phoneNumber"]) > 4]
    for fmt, text in outputs.items():
        assert SECRET_KEY not in text, fmt
        for value in personal:
            assert value not in text, (fmt, value)
    page = outputs["html"]
    assert "<script" not in page and "<img" not in page and "</svg><script" not in page
    assert "\x1b" not in page and "\x1b" not in outputs["text"]
    table = list(csv.reader(io.StringIO(outputs["csv"])))
    firsts = {row[0] for row in table[1:]}
    assert "'=cmd|' /C calc'!A0" in firsts and "'+SUM(1)" in firsts and "'@x" in firsts


def test_sync_log_off_store_holds_no_external_id(sandbox, tmp_path):
    store = tmp_path / "s.sqlite"
    config = target_config(sandbox, sync_store=str(store))
    leads = leads_of(12)
    for index, lead in enumerate(leads):
        lead["externalId"] = f"hostileExt{index:03d}Z"
    leads[2]["phoneNumber"] = "12"
    leads[3]["sourceId"] = "nope"
    done = run_target(tmp_path, config, lines(leads))
    assert done.returncode == 0, done.stderr[-3000:]
    raw = b"".join(path.read_bytes() for path in tmp_path.glob("s.sqlite*"))
    assert b"hostileExt" not in raw


class _EchoHandler(BaseHTTPRequestHandler):
    """A careCycle that refuses every lead whose externalId ends in 7 with an error echoing
    all the lead's values, custom fields included (a real service's error text may)."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length", 0))
        records = json.loads(self.rfile.read(length))["records"]
        results: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        for record in records:
            if str(record.get("externalId", "")).endswith("7"):
                values = [str(v) for k, v in record.items() if k != "customFields"]
                values += [str(item["value"]) for item in record.get("customFields", [])]
                text = "Rejected " + " ".join(values)
                errors.append({"id": None, "externalId": record["externalId"], "error": text})
            else:
                results.append({"id": f"id-{len(results)}", **record})
        body = json.dumps(
            {"succeeded": len(results), "failed": len(errors), "results": results,
             "errors": errors}
        ).encode()  # fmt: skip
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def echo_server() -> Iterator[ThreadingHTTPServer]:
    """A careCycle stand-in that echoes every value of some records in its errors."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _EchoHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def test_echoed_custom_field_values_reach_no_log_store_or_report(tmp_path, echo_server):
    server = echo_server
    store = tmp_path / "s.sqlite"
    config = {
        "api_url": f"http://127.0.0.1:{server.server_port}",
        "api_key": SECRET_KEY,
        "max_requests_per_minute": 6000,
        "sync_store": str(store),
        "sync_log": True,
        "streams": {"contacts": {"custom_fields": {"ssn": "ssn"}}},
    }
    props = {k: {"type": "string"} for k in ("id", "phone", "first_name", "ssn", "zip")}
    messages = [
        json.dumps({"type": "SCHEMA", "stream": "contacts", "schema":
                    {"type": "object", "properties": props}, "key_properties": ["id"]})
    ]  # fmt: skip
    for index in range(10):
        record = {"id": f"c{index}", "phone": f"+1312200{index:04d}",
                  "first_name": f"Vvfirst{index}", "ssn": f"987-65-43{index:02d}",
                  "zip": "60614"}  # fmt: skip
        messages.append(json.dumps({"type": "RECORD", "stream": "contacts", "record": record}))
    messages.append(json.dumps({"type": "STATE", "value": {"b": 1}}))
    done = run_target(tmp_path, config, messages)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.summary["streams"]["contacts"]["failed"] == 1
    assert "Vvfirst7" not in done.stderr  # a registry personal field: scrubbed (holds)
    outputs = [done.stderr, store.read_bytes().decode("latin-1")]
    for fmt in ("text", "json", "html", "csv"):
        got = report(tmp_path, config, "--format", fmt)
        assert got.returncode == 0, got.stderr
        outputs.append(got.stdout)
    for output in outputs:
        assert "987-65-4307" not in output


@pytest.mark.parametrize(
    "source",
    [
        "def f(target):\n    return vars(target)['_sinks_active']\n",
        "def f(target):\n    return target.__dict__['_latest_state']\n",
        "import operator\ndef f(sink):\n    return operator.attrgetter('_validator')(sink)\n",
    ],
)
def test_the_private_sdk_check_sees_indirect_reads(source: str) -> None:
    from test_architecture import private_sdk_uses

    found = private_sdk_uses(ast.parse(source), {}, own=set())
    assert found, "a private SDK name read indirectly went unnoticed"


NEW_OUTCOME_PROBE = """
import dataclasses, json, re, sys
import target_carecycle.outcomes as outcomes
extra = dataclasses.replace(outcomes.OUTCOME_REGISTRY[3], name="quarantined", label="quarantined")
outcomes.OUTCOME_REGISTRY = (*outcomes.OUTCOME_REGISTRY, extra)
outcomes.OUTCOMES = (*outcomes.OUTCOMES, "quarantined")
from datetime import datetime, timedelta, timezone
from target_carecycle import report
counts = {key: 0 for key in report.COUNT_KEYS}
counts.update(received=47, succeeded=5, quarantined=42)
start = datetime(2026, 5, 1, tzinfo=timezone.utc)
run = report.RunRecord(run_id="r1", started_at=start, ended_at=start + timedelta(seconds=5),
    status="succeeded", reason=None, target_version="x",
    account=report.RunAccount("https://api.carecycle.ai", "0123456789abcdef"),
    streams={"leads": report.StreamHistory(counts, 1, 0, 0, {})}, sync_log=False)
problems = []
try:
    text = report.render_text([run])
    if not re.search(r"(?<![0-9])42(?![0-9s])", text):
        problems.append("text: the 42 quarantined records are in no column")
except Exception as exc:
    problems.append(f"text: {type(exc).__name__} {exc}")
try:
    page = report.render_html([run], None, None)
    if "quarantined" not in page:
        problems.append("html: the new outcome is not shown")
except Exception as exc:
    problems.append(f"html: {type(exc).__name__} {exc}")
print(json.dumps(problems))
"""


def test_a_new_outcome_in_the_registry_reaches_the_report() -> None:
    done = subprocess.run(
        [sys.executable, "-c", NEW_OUTCOME_PROBE],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout) == []


def test_sync_log_without_a_store_is_not_silently_ignored(sandbox, tmp_path):
    config = target_config(sandbox, sync_store="off", sync_log=True)
    done = run_target(tmp_path, config, lines(leads_of(3)))
    assert done.returncode == 0, done.stderr[-3000:]
    said = [line for line in done.stderr.splitlines() if "sync_log" in line]
    assert [line for line in said if "WARNING" in line or "ERROR" in line], said


def test_an_external_id_taken_from_a_personal_column_is_flagged(sandbox, tmp_path):
    store = tmp_path / "s.sqlite"
    config = target_config(
        sandbox,
        sync_store=str(store),
        sync_log=True,
        streams={"contacts": {"external_id": "email"}},
    )
    props = {k: {"type": "string"} for k in ("id", "phone", "first_name", "email", "zip")}
    messages = [
        json.dumps({"type": "SCHEMA", "stream": "contacts", "schema":
                    {"type": "object", "properties": props}, "key_properties": ["id"]})
    ]  # fmt: skip
    for index in range(30):
        record = {"id": f"c{index}", "phone": f"+1312200{index:04d}", "first_name": "Ann",
                  "email": f"xxperson{index}@example.com", "zip": "60614"}  # fmt: skip
        if index == 3:
            record["phone"] = "12"  # rejected: its log line names it by externalId
        messages.append(json.dumps({"type": "RECORD", "stream": "contacts", "record": record}))
    messages.append(json.dumps({"type": "STATE", "value": {"b": 1}}))
    done = run_target(tmp_path, config, messages)
    assert done.returncode == 0, done.stderr[-3000:]
    flagged = [
        line
        for line in done.stderr.splitlines()
        if "external_id" in line and ("WARNING" in line or "ERROR" in line)
    ]
    if flagged:
        return  # the operator was told
    page = report(tmp_path, config, "--format", "html")
    assert page.returncode == 0, page.stderr
    for output in (done.stderr, page.stdout):
        assert "xxperson3@example.com" not in output


def test_sync_log_retention_also_ages_out_a_rotated_keys_rows(tmp_path):
    old_key, new_key = "cc_old_key_aaaaaaaaaaaa1", "cc_new_key_bbbbbbbbbbbb2"
    store = tmp_path / "s.sqlite"
    with running_sandbox(SandboxConfig(api_keys=(old_key, new_key), rate_limit=0)) as box:
        settings = {"sync_store": str(store), "sync_log": True, "sync_log_retention_days": 1}
        first = run_target(tmp_path, {**target_config(box, **settings), "api_key": old_key},
                           lines(leads_of(5)))  # fmt: skip
        assert first.returncode == 0, first.stderr[-3000:]
        with closing(sqlite3.connect(store)) as conn, conn:
            conn.execute("UPDATE carecycle_sync_log SET recorded_at='2020-01-01 00:00:00.000000'")
        second = run_target(tmp_path, {**target_config(box, **settings), "api_key": new_key},
                            lines(leads_of(5)))  # fmt: skip
        assert second.returncode == 0, second.stderr[-3000:]
    with closing(sqlite3.connect(store)) as conn:
        old = conn.execute(
            "SELECT count(*) FROM carecycle_sync_log WHERE recorded_at LIKE '2020-%'"
        ).fetchone()[0]
    assert old == 0, f"{old} sync log rows older than the retention were kept"


def test_report_reads_a_store_in_a_read_only_directory(sandbox, tmp_path):
    config, store = store_runs(tmp_path, sandbox)
    source, mounted = tmp_path / "src", tmp_path / "ro"
    source.mkdir()
    mounted.mkdir()
    store.rename(source / store.name)
    bind = subprocess.run(
        ["mount", "--bind", "-o", "ro", str(source), str(mounted)],
        capture_output=True, check=False,
    )  # fmt: skip
    if bind.returncode != 0:
        pytest.xfail("cannot make a read-only bind mount here (needs root)")
    try:
        done = report(tmp_path, {**config, "sync_store": str(mounted / store.name)})
    finally:
        subprocess.run(["umount", str(mounted)], check=False)
    assert done.returncode == 0, done.stderr


def test_sync_log_off_store_holds_no_external_id_echoed_by_carecycle(tmp_path, echo_server):
    server = echo_server
    store = tmp_path / "s.sqlite"
    config = {
        "api_url": f"http://127.0.0.1:{server.server_port}",
        "api_key": SECRET_KEY,
        "max_requests_per_minute": 6000,
        "sync_store": str(store),
    }
    leads = leads_of(20)
    for index, lead in enumerate(leads):
        lead["externalId"] = f"hostileEcho{index:02d}"
    done = run_target(tmp_path, config, lines(leads))
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.summary["streams"]["leads"]["failed"] == 2  # ...07 and ...17
    raw = b"".join(path.read_bytes() for path in tmp_path.glob("s.sqlite*"))
    assert b"hostileEcho" not in raw


def test_report_combines_a_config_file_with_the_environment_as_advised(sandbox, tmp_path):
    config, _store = store_runs(tmp_path, sandbox)
    without_key = {k: v for k, v in config.items() if k != "api_key"}
    env = {"TARGET_CARECYCLE_API_KEY": SECRET_KEY}
    advice = report(tmp_path, without_key, env=env)
    assert "--config ENV" in one_line_error(advice, SECRET_KEY)
    done = report(tmp_path, without_key, "--config", "ENV", env=env)
    assert done.returncode == 0, done.stderr
