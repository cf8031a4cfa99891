"""Issue 16 under Meltano 4.4.1 with an incremental tap (meltanolabs-tap-postgres).

A dry run moves no bookmark, so the real run after it delivers every row; a run that rejects
everything goes red and stores no state, so the run after the mapping fix delivers every row;
the fatal line is an `error` event; the run summary is one event with its counts as fields;
`meltano invoke target-carecycle --check` checks the key without a lead.
"""

from __future__ import annotations

import json
from typing import Any

from pipeline_helpers import MeltanoProject, PostgresServer, RunResult
from test_postgres import EXPECTED, STREAM, by_phone, new_database

from target_carecycle.sandbox import RunningSandbox

ROWS = 6  # the table test_postgres creates; row 4 has no phone


def target_events(result: RunResult) -> list[dict[str, Any]]:
    """The target's log events as Meltano relayed them (its JSON log)."""
    return [
        record
        for record in result.log
        if record.get("name") == "target-carecycle" and record.get("stdio") == "stderr"
    ]


def run_summary(result: RunResult) -> dict[str, Any]:
    """The `run_summary` field of the target's one summary event (structured, not text)."""
    found = [e["run_summary"] for e in target_events(result) if "run_summary" in e]
    assert len(found) == 1, result.tail()
    summary = found[0]
    assert isinstance(summary, dict)
    return summary


def incremental(
    project: MeltanoProject, env: dict[str, str], suffix: str, check: bool = True
) -> RunResult:
    return project.run(
        "tap-postgres",
        "target-carecycle",
        env=env,
        full_refresh=False,
        state_id_suffix=suffix,
        check=check,
    )


def test_a_dry_run_moves_no_bookmark_so_the_real_run_delivers_every_row(
    meltano_project: MeltanoProject,
    postgres: PostgresServer,
    sandbox: RunningSandbox,
    target_env: dict[str, str],
) -> None:
    url = new_database(postgres)
    env = {**target_env, "TAP_POSTGRES_SQLALCHEMY_URL": url, "TARGET_CARECYCLE_STREAMS": "{}"}
    suffix = "dry-then-real"
    state_id = f"dev:tap-postgres-to-target-carecycle:{suffix}"

    dry = incremental(meltano_project, {**env, "TARGET_CARECYCLE_DRY_RUN": "true"}, suffix)
    assert sum(sandbox.stats()["requests"].values()) == 0
    assert meltano_project.state(state_id) == {}, "a dry run stored a bookmark"
    summary = run_summary(dry)
    assert summary["dry_run"] is True and summary["states_emitted"] == 0
    assert summary["streams"][STREAM]["would_send"] == 5
    said = [json.dumps(e) for e in target_events(dry) if "succeeded" in json.dumps(e)]
    assert not [text for text in said if "batch_processing_time" not in text], said

    real = incremental(meltano_project, env, suffix)
    assert sorted(by_phone(sandbox.customers())) == sorted(
        expected["phoneNumber"] for expected in EXPECTED.values()
    ), real.tail()
    state = meltano_project.state(state_id)["singer_state"]
    assert state["bookmarks"][STREAM]["replication_key"] == "updated_at"
    assert state["target_carecycle"][STREAM]["succeeded"] == 5


def test_a_run_that_rejects_everything_goes_red_and_the_fixed_run_delivers_every_row(
    meltano_project: MeltanoProject,
    postgres: PostgresServer,
    sandbox: RunningSandbox,
    target_env: dict[str, str],
) -> None:
    url = new_database(postgres)
    env = {**target_env, "TAP_POSTGRES_SQLALCHEMY_URL": url}
    suffix = "reject-all-then-fix"
    state_id = f"dev:tap-postgres-to-target-carecycle:{suffix}"
    # The phone mapped from a column the table does not have: every row is rejected.
    broken = json.dumps({STREAM: {"fields": {"phoneNumber": "mobile_phone"}}})

    red = incremental(meltano_project, {**env, "TARGET_CARECYCLE_STREAMS": broken}, suffix, False)
    assert red.returncode != 0, red.tail()
    assert meltano_project.state(state_id) == {}, "a failed run stored a bookmark"
    assert sum(sandbox.stats()["requests"].values()) == 0
    (error,) = [e["event"] for e in target_events(red) if e.get("level") == "error"]
    assert error.startswith(
        "target-carecycle: the run failed on the failure policy: 6 records failed or were "
        "rejected and careCycle accepted none of this run's leads (nothing delivered); fix the "
        "mapping or the data (the reject file "
    )
    summary = run_summary(red)
    assert summary["exit_code"] == 1
    assert summary["streams"][STREAM]["rejected"] == ROWS

    fixed = incremental(meltano_project, {**env, "TARGET_CARECYCLE_STREAMS": "{}"}, suffix)
    assert len(sandbox.customers()) == len(EXPECTED), fixed.tail()
    assert run_summary(fixed)["streams"][STREAM]["received"] == ROWS
    state = meltano_project.state(state_id)["singer_state"]
    assert str(state["bookmarks"][STREAM]["replication_key_value"]).startswith("2024-05-01T10:25")


def test_meltano_invoke_check(meltano_project: MeltanoProject, sandbox: RunningSandbox) -> None:
    env = {"TARGET_CARECYCLE_API_URL": sandbox.url, "TARGET_CARECYCLE_API_KEY": sandbox.api_key}
    good = meltano_project.command("invoke", "target-carecycle", "--check", env=env, timeout=300)
    assert good.returncode == 0, good.stdout[-3000:]
    assert "target-carecycle: check passed (LIVE)" in good.stdout

    wrong = {**env, "TARGET_CARECYCLE_API_KEY": "cc_not_the_sandbox_key_42"}
    bad = meltano_project.command("invoke", "target-carecycle", "--check", env=wrong, timeout=300)
    assert bad.returncode == 1, bad.stdout[-3000:]
    assert "[error" in bad.stdout
    assert "check failed: careCycle refused the API key (HTTP 401): check api_key" in bad.stdout
    assert "cc_not_the_sandbox_key_42" not in bad.stdout
    assert sandbox.customers() == []
