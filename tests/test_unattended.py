"""What a log read the next morning must show: issue 16 ("safe to leave running at 3 a.m.").

A dry run emits no STATE and never says `succeeded`; every fatal condition is one ERROR line
naming the cause and what to do; the start line says where the leads go; `record_count`
counts each record once, tagged with its outcome; one structured summary event; per-record
warnings are capped; reject and results files can be one per run.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from singer_sdk.exceptions import MapExpressionError
from target_runner import (
    TARGET_EXE,
    TargetRun,
    fatal_lines,
    run_target,
    state_counts,
    stop_line,
    target_config,
)

from target_carecycle.fatal import stream_map_failure
from target_carecycle.outcomes import WARNINGS_PER_REASON, TooManyRecordErrors
from target_carecycle.sandbox import RunningSandbox
from target_carecycle.sandbox.samples import api_leads, singer_lines
from target_carecycle.settings import destination, key_fingerprint

STATE = {"bookmarks": {"leads": {"replication_key_value": "2026-11-01"}}}
METRIC = re.compile(r"METRIC: (\{.*\})$")


def metrics(run: TargetRun) -> list[dict[str, Any]]:
    return [
        json.loads(m.group(1)) for line in run.stderr.splitlines() if (m := METRIC.search(line))
    ]


def with_bad(count: int, bad: int) -> list[dict[str, Any]]:
    """`count` leads; the first `bad` have no phone (rejected with one reason)."""
    leads = api_leads(count)
    for lead in leads[:bad]:
        del lead["phoneNumber"]
    return leads


# Dry run


def test_a_dry_run_emits_no_state_and_never_says_succeeded(sandbox, tmp_path):
    config = {"dry_run": True, "api_url": sandbox.url}
    run = run_target(tmp_path, config, singer_lines("leads", with_bad(12, 2), state=STATE))

    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout == ""  # no STATE: Meltano stores no bookmark
    assert "Dry run: no STATE was emitted" in run.stderr
    # Not in the summary, the structured summary or the counts (the SDK's batch timer has a
    # `status` tag of its own: it says the batch was processed, and counts no lead).
    sdk_timer = '"metric":"batch_processing_time"'
    texts = [line for line in run.stderr.splitlines() if sdk_timer not in line]
    assert not [line for line in texts if "succeeded" in line]
    assert "would send 10" in run.stderr
    assert run.summary["streams"]["leads"]["would_send"] == 10
    assert run.summary["dry_run"] is True
    counts = [m for m in metrics(run) if m["metric"] == "record_count"]
    assert {m["tags"]["outcome"] for m in counts} == {"would_send", "rejected"}
    assert sum(sandbox.stats()["requests"].values()) == 0


def test_a_dry_run_with_a_key_and_state_messages_mid_stream_emits_none(sandbox, tmp_path):
    lines = [
        *singer_lines("leads", api_leads(250), state={"n": 1}),
        *list(singer_lines("leads", api_leads(10, start=300), state={"n": 2}))[1:],
    ]
    config = target_config(sandbox, dry_run=True)
    run = run_target(tmp_path, config, lines)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.states == []
    assert sandbox.stats()["upload_requests"] == 0


def test_a_dry_run_of_a_broken_mapping_goes_red(tmp_path):
    """Every record rejected: the dry run fails too, which is what a dry run is for."""
    leads = [{"id": n, "mobile_nr": "3125550100"} for n in range(5)]
    run = run_target(tmp_path, {"dry_run": True}, singer_lines("leads", leads, state=STATE))
    assert run.returncode == 1
    assert "careCycle would have sent none" in stop_line(run.stderr)


# Fatal errors


def fatal_cases(tmp_path: Path, sandbox: RunningSandbox) -> dict[str, tuple[Any, list[str], str]]:
    """name: (config, input lines, the start of the fatal line)."""
    leads = list(singer_lines("leads", api_leads(3), state=STATE))
    store_dir = tmp_path / "a-folder"
    store_dir.mkdir()
    return {
        "invalid setting": (
            {**target_config(sandbox), "api_url": "http://example.com"},
            leads,
            "target-carecycle: invalid config: api_url: must use https",
        ),
        "unusable line": (
            target_config(sandbox),
            [leads[0], "{not json"],
            "target-carecycle: line 2",
        ),
        "stream map": (
            target_config(sandbox, stream_maps={"leads": {"x": "no_such_name + 1"}}),
            leads,
            "target-carecycle: line 2: stream_maps cannot be applied to stream 'leads'",
        ),
        "refused key": (
            target_config(sandbox, api_key="cc_not_the_sandbox_key"),
            leads,
            "target-carecycle: run failed: careCycle refused the API key (HTTP 401): check api_key",
        ),
        "sync store": (
            target_config(sandbox, sync_store=str(store_dir)),
            leads,
            "target-carecycle: sync_store: ",
        ),
        "failure policy": (
            target_config(sandbox),
            list(singer_lines("leads", with_bad(3, 3))),
            "target-carecycle: the run failed on the failure policy: ",
        ),
    }


CASES = [
    "invalid setting",
    "unusable line",
    "stream map",
    "refused key",
    "sync store",
    "failure policy",
]


@pytest.mark.parametrize("case", CASES)
def test_every_fatal_condition_is_one_error_line(sandbox, tmp_path, case):
    config, lines, starts = fatal_cases(tmp_path, sandbox)[case]
    run = run_target(tmp_path, config, lines)

    assert run.returncode == 1
    assert stop_line(run.stderr).startswith(starts), run.stderr[-3000:]
    plain = [line for line in run.stderr.splitlines() if line.startswith("target-carecycle: ")]
    assert plain == [], "a fatal line written past logging"
    assert "Traceback" not in run.stderr
    assert run.states == []


def test_an_unreadable_config_file_is_an_error_line(tmp_path):
    path = tmp_path / "missing.json"
    done = subprocess.run(
        [TARGET_EXE, "--config", str(path)], input="", capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1
    assert fatal_lines(done.stderr) == [
        "target-carecycle: invalid config: a --config file cannot be read (FileNotFoundError)"
    ]


def test_a_stream_map_failure_names_stream_property_and_expression_never_the_record(
    sandbox, tmp_path
):
    """The expression errs on a value (a str plus an int): the line names where, not what."""
    records = [{"id": 1, "phone": "3125550100", "zip": "60614", "nickname": "Zebediah-Quux"}]
    maps = {"leads": {"nickname": "nickname + 1"}}
    run = run_target(
        tmp_path, target_config(sandbox, stream_maps=maps), singer_lines("leads", records)
    )
    line = stop_line(run.stderr)
    assert line == (
        "target-carecycle: line 2: stream_maps cannot be applied to stream 'leads': property "
        "'nickname' expression `nickname + 1` failed (TypeError); fix stream_maps.leads.nickname"
    )
    assert "Zebediah" not in run.stderr


@pytest.mark.parametrize("expression", ["first_name.upper(", "", "a b"])
def test_an_expression_that_does_not_parse_stops_the_run_before_any_input(
    sandbox, tmp_path, expression
):
    maps = {"leads": {"first": expression, "__alias__": "not an expression", "gone": None}}
    run = run_target(
        tmp_path, target_config(sandbox, stream_maps=maps), singer_lines("leads", api_leads(1))
    )
    assert run.returncode == 1
    assert stop_line(run.stderr) == (
        "target-carecycle: invalid config: stream_maps.leads.first: the expression does not parse"
    )
    assert sandbox.stats()["upload_requests"] == 0


# Where the leads go


def start_line(run: TargetRun) -> str:
    found = [line for line in run.stderr.splitlines() if " | INFO " in line and "| Run " in line]
    assert found, run.stderr[-3000:]
    return found[0].split(" | ", 3)[3]


def test_the_start_line_says_where_the_leads_go(sandbox, tmp_path):
    store = tmp_path / "store.sqlite"
    config = target_config(
        sandbox, source_id="web", sync_store=str(store), max_concurrent_requests=3
    )
    run = run_target(tmp_path, config, singer_lines("leads", api_leads(2)))

    fingerprint = hashlib.sha256(sandbox.api_key.encode()).hexdigest()[:12]
    run_id = run.summary["run_id"]
    expected = (
        f"Run {run_id}: LIVE to {sandbox.url} with key sha256:{fingerprint}, source_id web, "
        f"sync store SQLite file {store}, pace 6000 requests/min, 3 concurrent"
    )
    assert start_line(run) == expected
    assert f"  {expected}" in run.stderr.splitlines()  # the same facts in the summary
    assert run.summary["destination"] == sandbox.url
    assert run.summary["key_fingerprint"] == fingerprint


def test_the_start_line_of_a_dry_run_says_so(tmp_path):
    run = run_target(tmp_path, {"dry_run": True}, singer_lines("leads", api_leads(1)))
    line = start_line(run)
    assert "DRY RUN (nothing is sent) to https://api.carecycle.ai:443 with no key" in line
    assert "sync store not consulted (dry run without api_key), no requests" in line


def test_destination_and_fingerprint():
    assert destination("https://api.carecycle.ai") == "https://api.carecycle.ai:443"
    assert destination("https://API.example.com:8443/base/") == "https://api.example.com:8443"
    assert destination("http://[::1]:9000") == "http://[::1]:9000"
    assert key_fingerprint("cc_abc") == hashlib.sha256(b"cc_abc").hexdigest()[:12]


# One honest count, one structured summary


@pytest.mark.parametrize("path", ["lean", "sdk"])
def test_record_count_summed_by_stream_equals_received(sandbox, tmp_path, path):
    """Each record counted once, tagged with its outcome; the SDK's untagged count is silent."""
    maps = {"stream_maps": {"leads": {"extra": "1"}}} if path == "sdk" else {}
    leads = [*with_bad(8, 2), *api_leads(2, start=5)]  # two pending IDs again: merged
    config = target_config(sandbox, **maps)
    run = run_target(tmp_path, config, singer_lines("leads", leads, state=STATE))

    assert run.returncode == 0, run.stderr[-3000:]
    counted: dict[str, int] = {}
    for point in metrics(run):
        if point["metric"] == "record_count":
            assert "outcome" in point["tags"], point
            counted[point["tags"]["outcome"]] = (
                counted.get(point["tags"]["outcome"], 0) + point["value"]
            )
    received = run.states[-1]["target_carecycle"]["leads"]["received"]
    assert sum(counted.values()) == received == 10
    assert counted == {"succeeded": 6, "rejected": 2, "merged": 2}


def test_one_structured_summary_event_carries_every_count(sandbox, tmp_path):
    run = run_target(
        tmp_path, target_config(sandbox), singer_lines("leads", with_bad(10, 1), state=STATE)
    )
    summary = run.summary
    assert summary["streams"]["leads"] == state_counts(10, succeeded=9, rejected=1)
    assert summary["totals"] == summary["streams"]["leads"]
    assert summary["requests"] == 1
    assert (summary["rate_limited_429"], summary["retries"], summary["exit_code"]) == (0, 0, 0)
    assert summary["dry_run"] is False and summary["states_emitted"] == 1
    assert summary["duration_seconds"] >= 0


# Bounded output


def test_per_record_warnings_are_capped_per_reason(sandbox, tmp_path):
    leads = with_bad(60, 40)
    for lead in leads[40:52]:
        lead["postalCode"] = None  # a second reason, 12 times
    run = run_target(
        tmp_path, target_config(sandbox, max_error_rate=1), singer_lines("leads", leads)
    )

    warned = [line for line in run.stderr.splitlines() if "| Lead rejected: stream=" in line]
    assert len(warned) == 2 * WARNINGS_PER_REASON
    rest = [line.split(" | ", 3)[3] for line in run.stderr.splitlines() if "more records" in line]
    assert rest == [
        "Lead rejected: 35 more records with reason=phoneNumber: missing were not logged one by "
        "one; set reject_file to keep every one",
        "Lead rejected: 7 more records with reason=postalCode/timezone: missing (one of them is "
        "required) were not logged one by one; set reject_file to keep every one",
    ]


def test_capped_warnings_say_where_the_rest_are(sandbox, tmp_path):
    reject_file = tmp_path / "rejects.jsonl"
    config = target_config(sandbox, reject_file=str(reject_file), max_error_rate=1)
    run = run_target(tmp_path, config, singer_lines("leads", with_bad(20, 9)))
    assert (
        f"4 more records with reason=phoneNumber: missing were not logged one by one; all are "
        f"in the reject file {reject_file}" in run.stderr
    )
    assert len(reject_file.read_text().splitlines()) == 9


def test_reject_and_results_files_can_be_one_per_run(sandbox, tmp_path):
    config = target_config(
        sandbox,
        reject_file=str(tmp_path / "out" / "rejects-{started_at}-{run_id}.jsonl"),
        results_file=str(tmp_path / "out" / "results-{run_id}.jsonl"),
        max_error_rate=1,
    )
    runs = [run_target(tmp_path, config, singer_lines("leads", with_bad(3, 1))) for _ in range(2)]

    ids = [run.summary["run_id"] for run in runs]
    assert len(set(ids)) == 2
    rejects = sorted((tmp_path / "out").glob("rejects-*.jsonl"))
    assert len(rejects) == 2
    for path in rejects:
        assert re.fullmatch(r"rejects-\d{8}T\d{6}Z-[0-9a-f]{12}\.jsonl", path.name), path.name
        assert len(path.read_text().splitlines()) == 1
    assert {p.name for p in (tmp_path / "out").glob("results-*")} == {
        f"results-{run_id}.jsonl" for run_id in ids
    }


@pytest.mark.parametrize("path", ["rejects-{run}.jsonl", "rejects-{started_at.jsonl", "x}.jsonl"])
def test_an_unknown_placeholder_is_a_config_error(sandbox, tmp_path, path):
    config = target_config(sandbox, reject_file=str(tmp_path / path))
    run = run_target(tmp_path, config, singer_lines("leads", api_leads(1)))
    assert run.returncode == 1
    assert stop_line(run.stderr) == (
        "target-carecycle: invalid config: reject_file: the only placeholders are {run_id} and "
        "{started_at} (no other braces)"
    )
    assert list(tmp_path.glob("rejects*")) == []


@pytest.mark.parametrize(("given", "used"), [("01a2-run", "01a2-run"), ("../../etc/x", "etcx")])
def test_meltanos_run_id_names_the_run_when_set(sandbox, tmp_path, given, used):
    """MELTANO_RUN_ID names the run (filename-safe characters only: it goes into paths)."""
    config = target_config(
        sandbox, reject_file=str(tmp_path / "r-{run_id}.jsonl"), max_error_rate=1
    )
    run = run_target(
        tmp_path, config, singer_lines("leads", with_bad(2, 1)), env={"MELTANO_RUN_ID": given}
    )
    assert run.summary["run_id"] == used
    assert [p.name for p in tmp_path.glob("r-*")] == [f"r-{used}.jsonl"]


def test_only_an_expressions_own_failure_is_named_as_a_stream_map_failure():
    """An error that merely quotes the text of an expression (`1`) is not a stream-map failure;
    neither is a stop signal landing while an expression runs (target.py re-raises those)."""
    maps = {"leads": {"extra": "1"}}
    assert stream_map_failure("leads", TooManyRecordErrors("1 records failed"), maps) is None
    assert stream_map_failure("leads", ValueError("x"), maps) is None
    quoted = stream_map_failure(
        "leads",
        MapExpressionError("Failed to evaluate simpleeval expressions 1 + x."),
        {"leads": {"a": "1", "b": "1 + x"}},
    )
    assert quoted is not None
    assert "property 'b' expression `1 + x` failed (MapExpressionError)" in str(quoted)


def test_a_fatal_line_is_logged_even_when_nothing_configured_logging(tmp_path):
    """Called as a library (no SDK CLI, so no logging set up), a config error is still one
    ERROR line in the SDK's console format, not Python's bare last-resort output."""
    code = (
        "from types import SimpleNamespace\n"
        "from target_carecycle.target import TargetCareCycle\n"
        "TargetCareCycle.invoke(config=SimpleNamespace(config={'api_url': 'http://x.example'},"
        " parse_env=False))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("TARGET_CARECYCLE_")}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env
    )
    assert done.returncode == 1
    assert fatal_lines(done.stderr) == [
        "target-carecycle: invalid config: api_key: required (or set TARGET_CARECYCLE_API_KEY; "
        "only dry_run: true runs without a key); api_url: must use https (plain http only to "
        "localhost or a loopback IP such as 127.0.0.1)"
    ]
