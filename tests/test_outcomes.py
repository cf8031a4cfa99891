"""RunOutcomes: the account of every record, the files it writes, the summary."""

from __future__ import annotations

import json
import logging
import os
import random
import re
import stat
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest
from target_runner import state_counts

from target_carecycle.outcomes import (
    OUTCOME_REGISTRY,
    OUTCOMES,
    Outcome,
    OutputFileError,
    RunOutcomes,
    StreamTally,
    TooManyRecordErrors,
    markdown_table,
    mask_lead,
)

ROOT = Path(__file__).resolve().parents[1]


def test_every_record_has_exactly_one_outcome_in_state_metrics():
    run = RunOutcomes()
    for _ in range(8):
        run.received("s")
    run.succeeded("s", "s:1", "id-1")
    run.succeeded("s", "s:2", None)
    run.failed("s", 3, "s:3", "careCycle: Source not found", {"a": 1})
    run.rejected("s", 4, "s:4", "phoneNumber: missing", {"a": 2})
    run.merged("s", 5, "s:1")
    run.skipped("s")
    run.unchanged("s", 2)
    counts = run.state_metrics()["s"]
    expected = state_counts(8, succeeded=2, failed=1, rejected=1, merged=1, skipped=1, unchanged=2)
    assert list(counts.items()) == list(expected.items())  # the registry's order, too
    assert run.all_settled()
    run.received("s")
    assert not run.all_settled()
    run.unsent("s", 1)
    assert not run.all_settled()  # delivered nothing for it: a state would lie


def test_reject_file_is_private_appended_per_run_and_holds_the_original_record(tmp_path):
    path = tmp_path / "rejects.jsonl"
    path.write_text('{"from": "an earlier run"}\n')
    os.chmod(path, 0o644)
    run = RunOutcomes(reject_file=str(path))
    run.rejected("web", 7, "web:7", "phoneNumber: missing", {"zip": Decimal("2134"), "n": None})
    run.failed("web", 9, "web:9", "careCycle: Source not found", {"zip": "60614"})
    run.close()

    earlier, *lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert earlier == {"from": "an earlier run"}
    assert {line.pop("run") for line in lines} == {run.run_started_at}
    assert lines == [
        {
            "stream": "web",
            "position": 7,
            "externalId": "web:7",
            "status": "rejected",
            "reason": "phoneNumber: missing",
            "record": {"zip": 2134, "n": None},
        },
        {
            "stream": "web",
            "position": 9,
            "externalId": "web:9",
            "status": "failed",
            "reason": "careCycle: Source not found",
            "record": {"zip": "60614"},
        },
    ]
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_results_file_lists_careCycle_ids_and_is_not_written_in_a_dry_run(tmp_path):
    results = tmp_path / "results.jsonl"
    run = RunOutcomes(results_file=str(results))
    run.succeeded("s", "s:1", "uuid-1")
    run.close()
    assert json.loads(results.read_text()) == {
        "run": run.run_started_at,
        "stream": "s",
        "externalId": "s:1",
        "id": "uuid-1",
    }

    dry = tmp_path / "dry.jsonl"
    RunOutcomes(results_file=str(dry), dry_run=True).close()
    assert not dry.exists()


def test_error_limit_is_checked_after_reporting():
    run = RunOutcomes(max_record_errors=1)
    run.rejected("s", 1, "s:1", "phoneNumber: missing", {})
    run.check_error_limit()
    run.rejected("s", 2, "s:2", "phoneNumber: missing", {})
    with pytest.raises(TooManyRecordErrors, match="more than max_record_errors=1"):
        run.check_error_limit()
    assert run.state_metrics()["s"]["rejected"] == 2


def test_progress_is_logged_at_most_every_30_seconds(monkeypatch, caplog):
    clock = [1000.0]
    # The clock outcomes.py reads (`time` is not an export of the module, so named by path).
    monkeypatch.setattr("target_carecycle.outcomes.time.monotonic", lambda: clock[0])
    run = RunOutcomes()
    run.received("s")
    run.succeeded("s", "s:1", None)
    with caplog.at_level(logging.INFO, logger="target-carecycle.outcomes"):
        run.maybe_log_progress()
        clock[0] += 29
        run.maybe_log_progress()
        clock[0] += 2
        run.maybe_log_progress()
        clock[0] += 10
        run.maybe_log_progress()
    progress = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Progress")]
    assert progress == ["Progress: 1 leads sent, 0 unchanged, 0 failed, 0 rejected, 0 leads/s"]


def test_summary_counts_streams_omissions_and_top_reasons():
    run = RunOutcomes()
    for stream in ("a", "b"):
        run.received(stream)
        run.rejected(stream, 1, None, "phoneNumber: missing", {})
    run.received("a")
    run.omitted("a", {"dateOfBirth": "not a valid date"})
    run.succeeded("a", "a:2", None)
    text = "\n".join(run.summary_lines())
    assert "a: received 2, succeeded 1, failed 0, rejected 1" in text
    assert "1 x dateOfBirth (not a valid date)" in text
    assert "1 x phoneNumber: missing" in text
    assert "all streams: received 3, succeeded 1, failed 0, rejected 2" in text


def test_masked_lead_keeps_no_personal_value():
    lead = {
        "phoneNumber": "+13128471928",
        "firstName": "Ada",
        "lastName": "Lovelace",
        "email": "ada@example.com",
        "dateOfBirth": "12-10-1955",
        "postalCode": "60614",
        "gender": "Female",
    }
    masked = mask_lead(lead)
    for name in ("phoneNumber", "firstName", "lastName", "email", "dateOfBirth"):
        assert masked[name] != lead[name]
        assert len(lead[name]) <= 4 or lead[name][1:-2] not in masked[name]
    assert masked["gender"] == "Female"


def test_output_files_get_their_folders_and_unwritable_ones_name_the_setting(tmp_path):
    nested = tmp_path / "new" / "dir" / "rejects.jsonl"
    RunOutcomes(reject_file=str(nested)).close()
    assert nested.exists()

    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(OutputFileError, match=r"^results_file: cannot write"):
        RunOutcomes(results_file=str(blocker / "results.jsonl"))


# --------------------------------------------------------------------------- the outcome registry


def test_every_list_of_outcomes_is_the_registry_s():
    assert tuple(outcome.name for outcome in OUTCOME_REGISTRY) == OUTCOMES
    assert list(StreamTally().as_state()) == ["received", *OUTCOMES]
    assert list(RunOutcomes().summary_event()["totals"]) == ["received", *OUTCOMES]

    def named(flag: str) -> set[str]:
        return {outcome.name for outcome in OUTCOME_REGISTRY if getattr(outcome, flag)}

    # What the failure policy and the settled check count (docs/failure-policy.md).
    assert named("delivered") == {"succeeded", "unchanged"}
    assert named("refused") == {"failed", "rejected"}
    assert named("judged") == {"succeeded", "unchanged", "failed", "rejected"}
    assert {o.name for o in OUTCOME_REGISTRY if not o.settled} == {"unsent"}


def test_the_summary_words_are_the_registry_s_and_unchanged_from_before():
    run = RunOutcomes()
    for _ in range(6):
        run.received("s")
    run.succeeded("s", "s:1", None)
    run.succeeded("s", "s:2", None)
    run.rejected("s", 3, "s:3", "phoneNumber: missing", {})
    run.merged("s", 4, "s:1")
    line = "  s: received 6, succeeded 2, failed 0, rejected 1, merged 1, skipped 0, unchanged 0"
    assert run.summary_lines()[1] == line
    run.unsent("s", 2)
    assert run.summary_lines()[1] == line + ", not sent (run stopped) 2"
    assert run.summary_event()["streams"]["s"] == state_counts(
        6, succeeded=2, rejected=1, merged=1, unsent=2
    )

    dry = RunOutcomes(dry_run=True)
    dry.received("s")
    dry.succeeded("s", "s:1", None)
    assert dry.summary_lines()[1].startswith("  s: received 1, would send 1, failed 0")
    assert dry.summary_event()["streams"]["s"]["would_send"] == 1
    assert "succeeded" not in dry.summary_event()["streams"]["s"]
    assert dry.state_metrics()["s"]["succeeded"] == 1  # the state's key keeps its name


def test_the_docs_outcome_table_is_the_registry_s():
    page = (ROOT / "docs" / "outcomes.md").read_text(encoding="utf-8")
    assert markdown_table(OUTCOME_REGISTRY) in page
    formula = re.search(r"`received = ([^`]+)`", page)
    assert formula is not None
    assert re.findall(r"[a-z_]+", formula.group(1))[: len(OUTCOMES)] == list(OUTCOMES)
    listed = re.search(r'"target_carecycle": \{"<stream>": \{(.*?)\}\}', page, re.DOTALL)
    assert listed is not None
    assert re.findall(r'"(\w+)": n', listed.group(1)) == ["received", *OUTCOMES]


def test_recording_an_outcome_the_registry_lacks_is_refused():
    run = RunOutcomes()
    with pytest.raises(KeyError, match="'parked' is not an outcome"):
        run.record("s", "parked")


QUARANTINED = Outcome(
    "quarantined",
    "quarantined",
    "held back for review: sent by a later run once released",
    refused=True,
    judged=True,
)
PARKED = Outcome("parked", "parked (run stopped)", "parked", settled=False, shown_when_zero=False)


def test_a_new_outcome_is_one_registry_entry(caplog):
    """Redo issue 18's change: one more Outcome, and every derived list picks it up."""
    registry = (*OUTCOME_REGISTRY, QUARANTINED, PARKED)
    run = RunOutcomes(registry=registry, max_record_errors=1)
    for _ in range(4):
        run.received("s")
    run.succeeded("s", "s:1", None)
    assert not run.all_settled()  # three records have no outcome yet
    run.record("s", "quarantined", 2)
    run.record("s", "parked", 0)
    run.record("s", "parked", 1)

    state = run.state_metrics()["s"]
    assert list(state) == ["received", *OUTCOMES, "quarantined", "parked"]
    assert (state["quarantined"], state["parked"], run.tally("s").pending) == (2, 1, 0)
    assert not run.all_settled()  # parked is not settled: no STATE may claim it

    summary = run.summary_lines()[1]
    assert summary.endswith("unchanged 0, quarantined 2, parked (run stopped) 1")
    assert run.summary_event()["totals"]["quarantined"] == 2

    with pytest.raises(TooManyRecordErrors, match="2 records failed or were rejected"):
        run.check_error_limit()  # refused: counted by the failure policy

    with caplog.at_level(logging.INFO):
        run.close()
    points = [
        json.loads(r.getMessage().split("METRIC: ", 1)[1])
        for r in caplog.records
        if "METRIC: " in r.getMessage()
    ]
    counted = {p["tags"]["outcome"]: p["value"] for p in points if p["metric"] == "record_count"}
    assert counted == {"succeeded": 1, "quarantined": 2, "parked": 1}

    table = markdown_table(registry)
    assert "| `quarantined` | held back for review: sent by a later run once released |" in table
    assert "quarantined" not in markdown_table(OUTCOME_REGISTRY)


def test_the_running_sums_equal_the_registry_s_flags_over_the_counts():
    rng = random.Random(18)
    tally = StreamTally()
    for _ in range(500):
        tally.received += 1
        tally.add(rng.choice(OUTCOMES), rng.randint(0, 3))

    def summed(selected: Callable[[Outcome], bool]) -> int:
        return sum(tally[o.name] for o in OUTCOME_REGISTRY if selected(o))

    assert tally.held == summed(lambda o: o.delivered)
    assert tally.refused == summed(lambda o: o.refused)
    assert tally.judged == summed(lambda o: o.judged)
    assert tally.unsettled == summed(lambda o: not o.settled)
    assert tally.pending == tally.received - sum(tally.counts.values())
