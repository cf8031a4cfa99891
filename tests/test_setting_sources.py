"""One resolution of settings: config file, environment, `--config ENV` (docs/settings.md).

Unit tables call `resolve_settings` with an explicit environment; the executable checks the
issue's scenarios end to end: a key and URL in the environment reach the URL they name, a
misspelt variable or key that could send stops the run before anything is sent.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from target_runner import run_target, target_config

from target_carecycle.sandbox.samples import api_leads, singer_lines
from target_carecycle.setting_sources import (
    BOTH,
    ENVIRONMENT,
    FILE,
    provenance_line,
    resolve_settings,
)
from target_carecycle.settings import DEFAULT_API_URL, RunSettings, check_config
from target_carecycle.target import TargetCareCycle

KEY = "cc_test_sources_key_0001"
URL = "http://127.0.0.1:8765"
# What `meltano invoke target-carecycle` (Meltano 4.4.1, this repository's meltano.yml, dev
# environment) put in the plugin's environment next to its generated config file.
MELTANO_ENV = {
    "TARGET_CARECYCLE_API_KEY": "cc_sandbox_demo_key",
    "TARGET_CARECYCLE_API_URL": "http://127.0.0.1:8765",
    "TARGET_CARECYCLE_BATCH_SIZE_ROWS": "200",
    "TARGET_CARECYCLE_MAX_CONCURRENT_REQUESTS": "8",
    "TARGET_CARECYCLE_MAX_REQUESTS_PER_MINUTE": "60",
    "TARGET_CARECYCLE_MAX_RETRIES": "8",
    "TARGET_CARECYCLE_PHONE_VALIDATION": "strict",
    "TARGET_CARECYCLE_REQUEST_TIMEOUT": "30.0",
    "TARGET_CARECYCLE_SKIP_UNCHANGED": "true",
    "TARGET_CARECYCLE_STRICT": "False",
    "TARGET_CARECYCLE_VALIDATE_RECORDS": "false",
    "TARGET_CARECYCLE_STREAMS": json.dumps(
        {"crm_leads.external_id": "lead_id", "web_forms.fields.firstName": "contact.first"}
    ),
    "TARGET_CARECYCLE_STREAMS_CRM_LEADS_EXTERNAL_ID": "lead_id",
    "TARGET_CARECYCLE_STREAMS_WEB_FORMS_FIELDS_FIRSTNAME": "contact.first",
    "TARGET_CARECYCLE__DIALECT": "target_carecycle",
    "TARGET_CARECYCLE__KEYWORDS": '["meltano_sdk", "crm", "leads", "api"]',
    "TARGET_CARECYCLE__LOG_PARSER": "singer-sdk",
    "MELTANO_LOAD_API_URL": "http://127.0.0.1:8765",
}
MELTANO_CONFIG: dict[str, Any] = {
    "api_key": "cc_sandbox_demo_key",
    "api_url": "http://127.0.0.1:8765",
    "streams": {
        "crm_leads": {"external_id": "lead_id"},
        "web_forms": {"fields": {"firstName": "contact.first"}},
    },
    "phone_validation": "strict",
    "strict": False,
    "request_timeout": 30.0,
    "max_retries": 8,
    "max_requests_per_minute": 60,
    "max_concurrent_requests": 8,
    "batch_size_rows": 200,
    "validate_records": False,
    "skip_unchanged": True,
}


def full_schema() -> dict[str, Any]:
    schema = copy.deepcopy(TargetCareCycle.config_jsonschema)
    TargetCareCycle.append_builtin_config(schema)
    return schema


def resolve(file_config: dict[str, Any] | None, environ: dict[str, str], *, combine=False):
    return resolve_settings(file_config, full_schema(), combine=combine, environ=environ)


def env(**variables: str) -> dict[str, str]:
    return {f"TARGET_CARECYCLE_{name.upper()}": value for name, value in variables.items()}


# Every variable is read, with or without --config ENV


def test_every_setting_variable_is_read_without_config_env():
    found = resolve({}, env(api_key=KEY, api_url=URL, max_retries="2", strict="yes"))
    assert found.errors == [] and found.warnings == []
    assert found.config == {"api_key": KEY, "api_url": URL, "max_retries": 2, "strict": True}
    assert set(found.sources.values()) == {ENVIRONMENT}


@pytest.mark.parametrize(
    ("setting", "in_file", "in_env"),
    [
        ("api_url", URL, URL + " "),
        ("request_timeout", 30, "30.0"),
        ("request_timeout", 30.0, "30"),
        ("request_timeout", "30", "30.0"),
        ("lead_cost", 0.1, "0.10"),
        ("max_retries", 8, "8"),
        ("strict", False, "False"),
        ("strict", "no", "off"),
        ("skip_unchanged", True, "true"),
        ("streams", {"web": {"enabled": False}}, '{"web": {"enabled": false}}'),
        ("streams", {"web": {"fields": {"email": "e"}}}, '{"web.fields.email": "e"}'),
        ("streams", {"web": {"enabled": False}, "crm": {}}, '{"web": {"enabled": false}}'),
    ],
)
def test_a_setting_in_both_places_with_the_same_meaning_agrees(setting, in_file, in_env):
    found = resolve({"api_key": KEY, setting: in_file}, env(api_key=KEY, **{setting: in_env}))
    assert found.errors == []
    assert found.sources[setting] == BOTH
    assert found.config[setting] == in_file  # the file's form is kept


@pytest.mark.parametrize(
    ("setting", "in_file", "in_env"),
    [
        ("api_url", URL, "https://api.carecycle.ai"),
        ("api_key", KEY, "cc_another_key_0000000"),
        ("sync_store", "/tmp/a.sqlite", "/tmp/b.sqlite"),
        ("request_timeout", 30, "31"),
        ("max_retries", 8, "9"),
        ("strict", True, "false"),
        ("streams", {"web": {"enabled": False}}, '{"web": {"enabled": true}}'),
        ("streams", {"web": {"enabled": False}}, '{"crm": {"enabled": false}}'),
        ("source_id", "s-1", "s-2"),
    ],
)
def test_a_setting_in_both_places_that_disagrees_stops_naming_both_never_a_value(
    setting, in_file, in_env
):
    file_config = {"api_key": KEY, setting: in_file}
    environ = {"TARGET_CARECYCLE_API_KEY": KEY, f"TARGET_CARECYCLE_{setting.upper()}": in_env}
    found = resolve(file_config, environ)
    assert len(found.errors) == 1, found.errors
    line = found.errors[0]
    assert line.startswith(f"{setting}: the config file and TARGET_CARECYCLE_{setting.upper()}")
    for value in (in_file, in_env):
        text = value if isinstance(value, str) else json.dumps(value)
        assert text not in line


@pytest.mark.parametrize(
    ("in_file", "in_env", "dry_run"),
    [(False, "true", True), (True, "false", True), ("yes", "no", True), (False, "0", False)],
)
def test_dry_run_true_in_either_place_makes_a_dry_run_without_an_error(in_file, in_env, dry_run):
    config = {"api_key": KEY, "dry_run": in_file}
    found = resolve(config, env(dry_run=in_env))
    assert found.errors == []
    check = check_config(found.config, full_schema(), environ={})
    assert check.errors == []
    assert RunSettings.from_config(found.config).dry_run is dry_run


# The key and the URL never come from two places unless the user says so


@pytest.mark.parametrize(
    ("file_config", "environ", "stops"),
    [
        ({"api_url": URL}, env(api_key=KEY), True),
        ({"api_key": KEY}, env(api_url=URL), True),
        ({"api_key": KEY, "api_url": URL}, {}, False),
        ({}, env(api_key=KEY, api_url=URL), False),
        ({}, env(api_key=KEY), False),  # the URL is the documented default, not a place
        ({"api_key": KEY}, {}, False),
        ({"api_url": URL, "api_key": KEY}, env(api_key=KEY), False),  # both in both
        ({"api_url": URL, "max_retries": 2}, env(api_key=KEY, api_url=URL), False),
        ({"api_key": "", "api_url": URL}, env(api_key=KEY), True),  # an empty key is no key
    ],
)
def test_key_and_url_from_two_different_places_stop_the_run(file_config, environ, stops):
    found = resolve(file_config, environ)
    stopped = [line for line in found.errors if line.startswith("api_key and api_url:")]
    assert bool(stopped) is stops, found.errors
    if stops:
        assert "--config ENV" in stopped[0]
        assert KEY not in stopped[0] and URL not in stopped[0]


def test_config_env_is_the_user_saying_combine_them():
    found = resolve({"api_url": URL}, env(api_key=KEY), combine=True)
    assert found.errors == []
    assert found.config == {"api_url": URL, "api_key": KEY}


# Misspelt variables


@pytest.mark.parametrize(
    ("variable", "value", "looks_like"),
    [
        ("TARGET_CARECYCLE_DRYRUN", "true", "dry_run"),
        ("TARGET_CARECYCLE_DRY-RUN", "true", "dry_run"),
        ("TARGET_CARECYCLE_DRY_RUNS", "true", "dry_run"),
        ("TARGET_CARECYCLE_TEST_MODE", "1", "dry_run"),
        ("TARGET_CARECYCLE_DRYRUN", "maybe", "dry_run"),
        ("TARGET_CARECYCLE_BASE_URL", URL, "api_url"),
        ("TARGET_CARECYCLE_URL", URL, "api_url"),
        ("TARGET_CARECYCLE_API_ENDPOINT", URL, "api_url"),
        ("TARGET_CARECYCLE_API_HOST", "127.0.0.1", "api_url"),
        ("TARGET_CARECYCLE_APIURL", URL, "api_url"),
        ("TARGET_CARECYCLE_API-URL", URL, "api_url"),
        ("target_carecycle_api_url", URL, "api_url"),
        ("TARGET_CARECYCLE_TOKEN", KEY, "api_key"),
        ("TARGET_CARECYCLE_APIKEY", KEY, "api_key"),
        ("TARGET_CARECYCLE_KEY", KEY, "api_key"),
        ("TARGET_CARECYCLE_STORE", "/tmp/s.sqlite", "sync_store"),
        ("TARGET_CARECYCLE_SYNC_DB", "/tmp/s.sqlite", "sync_store"),
        ("TARGET_CARECYCLE_SYNCSTORE", "off", "sync_store"),
    ],
)
def test_a_variable_that_looks_like_a_guarded_setting_stops_the_run(variable, value, looks_like):
    found = resolve({"api_key": KEY}, {variable: value})
    assert len(found.errors) == 1, found.errors
    line = found.errors[0]
    assert line.startswith(f"{variable}: not a setting, and it looks like {looks_like} ")
    assert value not in line


@pytest.mark.parametrize(
    ("environ", "warning"),
    [
        (
            {"TARGET_CARECYCLE_DRYRUN": "false"},
            "TARGET_CARECYCLE_DRYRUN is not a setting and is ignored "
            "(did you mean TARGET_CARECYCLE_DRY_RUN?)",
        ),
        ({"TARGET_CARECYCLE_COLOUR": "blue"}, "TARGET_CARECYCLE_COLOUR is not a setting"),
        (
            {"TARGET_CARECYCLE_STREAMS_WEB_ENABLED": "false"},
            "TARGET_CARECYCLE_STREAMS_WEB_ENABLED is ignored: nested settings are read from "
            "TARGET_CARECYCLE_STREAMS (JSON)",
        ),
    ],
)
def test_other_unknown_variables_are_warnings(environ, warning):
    found = resolve({"api_key": KEY}, environ)
    assert found.errors == []
    assert len(found.warnings) == 1 and found.warnings[0].startswith(warning), found.warnings


def test_what_meltano_sets_is_neither_an_error_nor_a_warning():
    found = resolve(copy.deepcopy(MELTANO_CONFIG), MELTANO_ENV)
    assert found.errors == [] and found.warnings == []
    check = check_config(found.config, full_schema(), environ=MELTANO_ENV)
    assert check.errors == [] and check.warnings == []
    assert found.sources["api_url"] == found.sources["api_key"] == BOTH


def test_meltano_merging_nested_settings_into_the_file_still_agrees():
    """TARGET_CARECYCLE_STREAMS set by the user; Meltano adds meltano.yml's streams to the file."""
    environ = {**MELTANO_ENV, "TARGET_CARECYCLE_STREAMS": '{"web": {"enabled": false}}'}
    config = copy.deepcopy(MELTANO_CONFIG)
    config["streams"]["web"] = {"enabled": False}
    assert resolve(config, environ).errors == []


# Unknown keys in a config file, the same rule


@pytest.mark.parametrize(
    ("name", "looks_like"),
    [
        ("apiurl", "api_url"),
        ("api-url", "api_url"),
        ("API_URL", "api_url"),
        ("base_url", "api_url"),
        ("endpoint", "api_url"),
        ("apikey", "api_key"),
        ("token", "api_key"),
        ("dryrun", "dry_run"),
        ("sync-store", "sync_store"),
        ("store", "sync_store"),
        ("TARGET_CARECYCLE_API_URL", "api_url"),  # a variable's name pasted into a file
        ("carecycle_api_key", "api_key"),
    ],
)
def test_a_config_key_that_looks_like_a_guarded_setting_stops_the_run(name, looks_like):
    check = check_config({"api_key": KEY, name: "x"}, full_schema(), environ={})
    assert check.errors == [
        f"{name}: unknown setting that looks like {looks_like}; nothing is sent while a "
        f"setting that could change where or whether leads go is misspelt: rename it to "
        f"{looks_like} or remove it"
    ]


# What the run says about its settings


def test_the_provenance_line_names_places_never_values():
    found = resolve({"max_retries": 2, "streams": {}}, env(api_key=KEY))
    line = provenance_line(found.sources)
    assert "from the config file: max_retries, streams" in line
    assert "from the environment: api_key" in line
    assert f"api_url: not set, the default ({DEFAULT_API_URL})" in line
    assert "The API key comes from TARGET_CARECYCLE_API_KEY, while other settings" in line
    assert KEY not in line and "\n" not in line


def test_run_settings_carry_what_the_start_line_needs():
    found = resolve({"max_retries": 2}, env(api_key=KEY, api_url="http://127.0.0.1:8765/"))
    run = RunSettings.from_config(found.config, found.sources)
    assert run.destination == "http://127.0.0.1:8765"
    assert run.destination_is_default is False
    assert run.key_fingerprint is not None and len(run.key_fingerprint) == 12
    assert run.key_fingerprint not in KEY
    assert run.source_of("api_key") == ENVIRONMENT
    assert run.source_of("max_retries") == FILE
    assert run.source_of("dry_run") == "default"
    default = RunSettings.from_config({"api_key": KEY})
    assert default.destination == "https://api.carecycle.ai:443"
    assert default.destination_is_default is True


@settings(max_examples=200, deadline=None)
@given(
    setting=st.sampled_from(["api_url", "api_key", "source_id", "sync_store", "reject_file"]),
    # Marked values: plain words such as "config" are in the messages themselves.
    in_file=st.text(st.characters(min_codepoint=33, max_codepoint=0x2FF), min_size=6).map(
        lambda text: "Vq7" + text
    ),
    in_env=st.text(st.characters(min_codepoint=33, max_codepoint=0x2FF), min_size=6).map(
        lambda text: "Wk3" + text
    ),
)
def test_no_resolution_line_echoes_a_value(setting, in_file, in_env):
    found = resolve({setting: in_file}, {f"TARGET_CARECYCLE_{setting.upper()}": in_env})
    out = " ".join([*found.errors, *found.warnings, provenance_line(found.sources)])
    assert in_file.strip() not in out
    assert in_env.strip() not in out


# The executable: the scenarios


def test_key_and_url_in_the_environment_reach_that_url_without_config_env(sandbox, tmp_path):
    """Scenario 1: the URL used to be ignored and the key and leads went to production."""
    run = run_target(
        tmp_path,
        {"max_retries": 0, "request_timeout": 5, "max_requests_per_minute": 6000},
        singer_lines("leads", api_leads(3)),
        env=env(api_key=sandbox.api_key, api_url=sandbox.url),
    )
    assert run.returncode == 0, run.stderr
    assert sandbox.stats()["created"] == 3
    assert "from the environment: api_key, api_url" in run.stderr
    assert "The API key comes from TARGET_CARECYCLE_API_KEY, while other settings" in run.stderr
    assert "api.carecycle.ai" not in run.stderr


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("TARGET_CARECYCLE_DRYRUN", "true"),
        ("TARGET_CARECYCLE_DRY-RUN", "true"),
        ("TARGET_CARECYCLE_DRY_RUNS", "true"),
        ("TARGET_CARECYCLE_BASE_URL", "http://127.0.0.1:9"),
    ],
)
def test_a_misspelt_variable_sends_nothing(sandbox, tmp_path, variable, value):
    run = run_target(
        tmp_path,
        target_config(sandbox),
        singer_lines("leads", api_leads(3)),
        env={variable: value},
    )
    assert run.returncode == 1
    errors = [line for line in run.stderr.splitlines() if "invalid config" in line]
    assert len(errors) == 1 and variable in errors[0], run.stderr
    assert "Traceback" not in run.stderr and run.stdout == ""
    assert sum(sandbox.stats()["requests"].values()) == 0


@pytest.mark.parametrize("name", ["apiurl", "api-url", "API_URL", "base_url"])
def test_a_misspelt_url_key_in_the_config_file_sends_nothing(sandbox, tmp_path, name):
    """Scenario 2: the misspelt key was a warning and the run headed for production."""
    config = target_config(sandbox)
    config[name] = config.pop("api_url")
    run = run_target(tmp_path, config, singer_lines("leads", api_leads(3)))
    assert run.returncode == 1
    errors = [line for line in run.stderr.splitlines() if "invalid config" in line]
    assert len(errors) == 1 and f"{name}: unknown setting that looks like api_url" in errors[0]
    assert sandbox.url not in run.stderr
    assert sum(sandbox.stats()["requests"].values()) == 0


def test_a_url_in_the_file_and_another_in_the_environment_send_nothing(sandbox, tmp_path):
    run = run_target(
        tmp_path,
        target_config(sandbox),
        singer_lines("leads", api_leads(3)),
        env=env(api_url="http://127.0.0.1:9"),
    )
    assert run.returncode == 1
    assert "api_url: the config file and TARGET_CARECYCLE_API_URL give different values" in (
        run.stderr
    )
    assert sandbox.url not in run.stderr and "127.0.0.1:9" not in run.stderr
    assert sum(sandbox.stats()["requests"].values()) == 0
