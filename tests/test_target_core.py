"""The target as users run it: the executable, a pipe of Singer messages, the sandbox."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest
from target_runner import TARGET_EXE, run_target, target_config

from target_carecycle.sandbox.samples import api_leads, singer_lines

FAKE_KEY = "cc_test_not_a_real_key_123456"
TAP_STATE = {"bookmarks": {"leads": {"replication_key_value": "2026-11-01T00:00:00Z"}}}


def tap_state_of(state: dict[str, Any]) -> dict[str, Any]:
    """The part of an emitted STATE that came from the tap."""
    return {key: value for key, value in state.items() if key != "target_carecycle"}


def test_450_leads_go_in_three_requests_and_state_passes_through(sandbox, tmp_path):
    leads = api_leads(450)
    run = run_target(
        tmp_path, target_config(sandbox), singer_lines("leads", leads, state=TAP_STATE)
    )

    assert run.returncode == 0, run.stderr
    stats = sandbox.stats()
    assert stats["batch_sizes"] == [200, 200, 50]
    assert stats["created"] == 450
    stored = {c["externalId"]: c for c in sandbox.customers()}
    assert set(stored) == {lead["externalId"] for lead in leads}
    assert stored["leads-7"]["phoneNumber"] == leads[7]["phoneNumber"]
    assert stored["leads-7"]["postalCode"] == leads[7]["postalCode"]
    assert tap_state_of(run.states[-1]) == TAP_STATE
    assert run.states[-1]["target_carecycle"]["leads"]["succeeded"] == 450


def test_state_before_more_records_is_emitted_after_all_of_them_are_delivered(sandbox, tmp_path):
    first, second = api_leads(250), api_leads(100, start=250)
    lines = [
        *singer_lines("leads", first, state={"bookmarks": {"leads": {"n": 1}}}),
        *list(singer_lines("leads", second, state={"bookmarks": {"leads": {"n": 2}}}))[1:],
    ]
    run = run_target(tmp_path, target_config(sandbox), lines)

    assert run.returncode == 0, run.stderr
    assert sandbox.stats()["created"] == 350
    assert tap_state_of(run.states[-1]) == {"bookmarks": {"leads": {"n": 2}}}


@pytest.mark.parametrize(
    ("batch_size_rows", "expected"),
    [(500, [200, 200, 50]), (100, [100, 100, 100, 100, 50]), (None, [200, 200, 50])],
)
def test_batch_size_rows_is_honoured_and_capped_at_200(
    sandbox, tmp_path, batch_size_rows, expected
):
    config = target_config(sandbox)
    if batch_size_rows is not None:
        config["batch_size_rows"] = batch_size_rows
    run = run_target(tmp_path, config, singer_lines("leads", api_leads(450)))

    assert run.returncode == 0, run.stderr
    # Batches travel in parallel, so the server may see them in any order.
    assert sorted(sandbox.stats()["batch_sizes"]) == sorted(expected)
    if batch_size_rows == 500:
        assert "batch_size_rows=500 is above careCycle's limit" in run.stderr


def test_decimal_and_datetime_values_are_serialised(sandbox, tmp_path):
    schema = {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "phone": {"type": "string"},
            "zip": {"type": "integer"},
            "dob": {"type": "string", "format": "date-time"},
            "lead_cost": {"type": "number"},
            "household_income": {"type": "number"},
        },
    }
    record = {
        "id": 1,
        "phone": "(312) 847-1928",
        "zip": 2134,
        "dob": "1950-03-07T00:00:00+00:00",
        "lead_cost": 12.5,
        "household_income": 55000.0,
    }
    lines = singer_lines("crm", [record], schema=schema, key_properties=["id"])
    run = run_target(tmp_path, target_config(sandbox), lines)

    assert run.returncode == 0, run.stderr
    (customer,) = sandbox.customers()
    assert customer["phoneNumber"] == "+13128471928"
    assert customer["postalCode"] == "02134"
    assert customer["dateOfBirth"] == "03-07-1950"
    assert customer["leadCost"] == 12.5
    assert customer["householdIncome"] == 55000
    assert customer["externalId"] == "crm:1"


def test_about_prints_settings_in_text_and_markdown():
    text = subprocess.run([TARGET_EXE, "--about"], capture_output=True, text=True, check=True)
    markdown = subprocess.run(
        [TARGET_EXE, "--about", "--format=markdown"], capture_output=True, text=True, check=True
    )
    as_json = subprocess.run(
        [TARGET_EXE, "--about", "--format=json"], capture_output=True, text=True, check=True
    )
    assert "target-carecycle" in text.stdout
    for setting in ("api_key", "api_url", "max_requests_per_minute", "streams", "reject_file"):
        assert f"| {setting} " in markdown.stdout
    settings = json.loads(as_json.stdout)["settings"]["properties"]
    assert settings["api_key"].get("secret") is True
    assert settings["api_url"]["default"] == "https://api.carecycle.ai"


@pytest.mark.parametrize(
    ("config", "setting"),
    [
        ({}, "api_key"),
        (
            {"api_key": "cc_test_not_a_real_key_123456", "api_url": "http://api.example.com"},
            "api_url",
        ),
        ({"api_key": "cc_test_not_a_real_key_123456", "max_retries": "many"}, "max_retries"),
        (
            {
                "api_key": "cc_test_not_a_real_key_123456",
                "streams": {"x": {"fields": {"phone": "a"}}},
            },
            "streams.x",
        ),
    ],
)
def test_bad_config_gives_one_line_naming_the_setting(tmp_path, config, setting):
    run = run_target(tmp_path, config, singer_lines("leads", api_leads(1)))

    assert run.returncode == 1
    errors = [line for line in run.stderr.splitlines() if "invalid config" in line]
    assert len(errors) == 1, run.stderr
    assert setting in errors[0]
    assert "Traceback" not in run.stderr
    assert "cc_test_not_a_real_key_123456" not in run.stderr + run.stdout
    assert run.stdout == ""


def test_api_key_and_url_both_come_from_the_environment_when_config_has_neither(sandbox, tmp_path):
    config = target_config(sandbox)
    env = {
        "TARGET_CARECYCLE_API_KEY": config.pop("api_key"),
        "TARGET_CARECYCLE_API_URL": config.pop("api_url"),
    }
    run = run_target(tmp_path, config, singer_lines("leads", api_leads(3)), env=env)
    assert run.returncode == 0, run.stderr
    assert sandbox.stats()["created"] == 3


def test_a_key_from_the_environment_and_a_url_from_the_file_stop_the_run(sandbox, tmp_path):
    """Two places for the key and the URL is how leads reach the wrong account."""
    config = target_config(sandbox)
    key = config.pop("api_key")
    run = run_target(
        tmp_path,
        config,
        singer_lines("leads", api_leads(3)),
        env={"TARGET_CARECYCLE_API_KEY": key},
    )
    assert run.returncode == 1
    errors = [line for line in run.stderr.splitlines() if "invalid config" in line]
    assert len(errors) == 1, run.stderr
    assert "api_key and api_url" in errors[0] and "--config ENV" in errors[0]
    assert sum(sandbox.stats()["requests"].values()) == 0


def test_type_error_on_the_key_never_echoes_it(tmp_path):
    run = run_target(tmp_path, {"api_key": ["cc_test_not_a_real_key_123456"]}, [])
    assert run.returncode == 1
    assert "api_key: must be of type" in run.stderr
    assert "cc_test_not_a_real_key_123456" not in run.stderr
