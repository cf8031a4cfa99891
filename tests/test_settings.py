"""Settings: bounds, strict booleans from config and environment, unknown names, the URL rule.

Unit tables check `check_config` and `check_api_url`; the executable checks that each bad
setting stops the run with one line naming it, before any input is read or anything sent.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

import pytest
from target_runner import TARGET_EXE, assert_no_key_in, fatal_lines, run_target, target_config

from target_carecycle.client import (
    ClientSettings,
    FatalApiError,
    LeadUploadClient,
    check_api_url,
    is_loopback_host,
)
from target_carecycle.sandbox.samples import api_leads, singer_lines
from target_carecycle.settings import (
    RunSettings,
    UnreadableEnvValue,
    check_config,
    parse_boolean,
    read_env_settings,
)
from target_carecycle.target import TargetCareCycle

KEY = "cc_test_settings_key_0001"


def full_schema() -> dict[str, Any]:
    schema = copy.deepcopy(TargetCareCycle.config_jsonschema)
    TargetCareCycle.append_builtin_config(schema)
    return schema


def checked(config: dict[str, Any], environ: dict[str, Any] | None = None):
    return check_config(config, full_schema(), environ=environ or {})


# Plain http only to loopback, decided by parsing


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("https://api.carecycle.ai", None),
        ("https://api.carecycle.ai/", None),
        ("https://staging.example.com:8443/base", None),
        ("http://127.0.0.1:8765", None),
        ("http://127.9.9.9", None),
        ("http://localhost:8765", None),
        ("http://LOCALHOST", None),
        ("http://[::1]:8765", None),
        ("http://[::ffff:127.0.0.1]:8765", None),
        ("http://127.evil.example", "must use https"),
        ("http://127.0.0.1.nip.io", "must use https"),
        ("http://localhost.evil.example", "must use https"),
        ("http://localhost.", "must use https"),
        ("http://127.1", "must use https"),  # not an IP literal ipaddress accepts
        ("http://2130706433", "must use https"),
        ("http://0x7f.0.0.1", "must use https"),
        ("http://0.0.0.0", "must use https"),
        ("http://10.0.0.1", "must use https"),
        ("http://[::ffff:10.0.0.1]", "must use https"),
        ("http://api.carecycle.ai", "must use https"),
        ("http://user:pw@127.0.0.1", "user name or password"),
        ("http://127.0.0.1@evil.example", "user name or password"),
        ("https://evil.example#@127.0.0.1", "query or fragment"),
        ("http://127.0.0.1/?to=evil.example", "query or fragment"),
        ("http://127.0.0.1\\@evil.example", "backslashes"),
        ("http://127.0.0.1 .evil.example", "spaces"),
        ("http://127.0.0.1:99999", "not a valid URL"),
        ("http://[::1", "not a valid URL"),
        ("http://[::1%2eevil.example]", "not a valid URL"),
        ("https://[::1%25lo]", "not a valid URL"),
        ("ftp://127.0.0.1", "http(s) URL"),
        ("127.0.0.1:8765", "http(s) URL"),
        ("", "http(s) URL"),
    ],
)
def test_api_url_rule(url, problem):
    found = check_api_url(url)
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("localhost", True),
        ("127.0.0.1", True),
        ("127.255.255.254", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        ("::ffff:7f00:1", True),
        ("128.0.0.1", False),
        ("::2", False),
        ("::1%lo", False),
        ("127.0.0.1.nip.io", False),
        ("localhost.localdomain", False),
        ("", False),
    ],
)
def test_loopback_is_decided_without_resolving_names(host, loopback):
    assert is_loopback_host(host) is loopback


def test_the_client_refuses_a_remote_plain_http_url_before_sending():
    settings = ClientSettings(api_url="http://127.0.0.1.nip.io", api_key=KEY)
    with pytest.raises(FatalApiError, match=r"^api_url: must use https"):
        LeadUploadClient(settings)


# Strict booleans


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (True, True),
        (False, False),
        ("true", True),
        ("TRUE", True),
        (" Yes ", True),
        ("on", True),
        ("1", True),
        (1, True),
        ("false", False),
        ("No", False),
        ("OFF", False),
        ("0", False),
        (0, False),
        ("y", None),
        ("t", None),
        ("n", None),
        ("maybe", None),
        ("", None),
        (2, None),
        (None, None),
        ([], None),
    ],
)
def test_boolean_spellings(value, expected):
    assert parse_boolean(value) is expected


@pytest.mark.parametrize("setting", ["dry_run", "strict", "validate_records"])
@pytest.mark.parametrize(("value", "expected"), [("yes", True), ("Off", False), (1, True)])
def test_config_booleans_accept_the_usual_spellings(setting, value, expected):
    config = {"api_key": KEY, setting: value}
    check = checked(config)
    assert check.errors == []
    assert config[setting] is expected


@pytest.mark.parametrize("setting", ["dry_run", "strict", "validate_records"])
@pytest.mark.parametrize("value", ["maybe", "y", 2, [True]])
def test_config_booleans_refuse_anything_else_naming_the_setting(setting, value):
    check = checked({"api_key": KEY, setting: value})
    assert len(check.errors) == 1
    assert check.errors[0].startswith(f"{setting}: must be true or false")


# Bounds


@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [
        ("request_timeout", 0, "request_timeout: must be greater than 0"),
        ("request_timeout", -1.5, "request_timeout: must be greater than 0"),
        ("request_timeout", float("nan"), "request_timeout: must be a finite number"),
        ("request_timeout", float("inf"), "request_timeout: must be a finite number"),
        ("request_timeout", 1e300, "request_timeout: must be at most 3600"),
        ("request_timeout", Decimal("1e999"), "request_timeout: must be a finite number"),
        ("lead_cost", Decimal("1e999"), "lead_cost: must be a finite number"),
        ("lead_cost", Decimal("Infinity"), "lead_cost: must be a finite number"),
        ("lead_cost", 10**400, "lead_cost: must be a finite number"),
        ("max_requests_per_minute", 10**400, "max_requests_per_minute: must be a finite number"),
        ("max_retries", 10**400, "max_retries: must be a finite number"),
        ("max_record_errors", 10**400, "max_record_errors: must be a finite number"),
        ("batch_size_rows", -(10**400), "batch_size_rows: must be a finite number"),
        ("flattening_max_depth", 10**400, "flattening_max_depth: must be a finite number"),
        ("max_requests_per_minute", 0, "max_requests_per_minute: must be at least 1"),
        ("max_concurrent_requests", 0, "max_concurrent_requests: must be at least 1"),
        ("max_concurrent_requests", 10000, "max_concurrent_requests: must be at most 32"),
        ("max_retries", -1, "max_retries: must be at least 0"),
        ("max_record_errors", -1, "max_record_errors: must be at least 0"),
        ("lead_cost", -3, "lead_cost: must be at least 0"),
        ("source_id", "", "source_id: must not be empty"),
        ("source_id", "   ", "source_id: must not be empty"),
        ("batch_size_rows", 0, "batch_size_rows: must be at least 1"),
        ("max_retries", "many", "max_retries: must be of type integer"),
        ("api_key", " cc_a b", "api_key: must be printable ASCII without spaces"),
        ("api_key", "cc_abc\ndef", "api_key: must be printable ASCII without spaces"),
        ("api_key", "cc_abc\x00def", "api_key: must be printable ASCII without spaces"),
        ("api_key", "cc_abc\u20acdef", "api_key: must be printable ASCII without spaces"),
    ],
)
def test_each_setting_is_bounded(setting, value, message):
    check = checked({"api_key": KEY, setting: value})
    assert check.errors == [message]


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("request_timeout", 0.001),
        ("request_timeout", 3600),
        ("max_requests_per_minute", 1),
        ("max_concurrent_requests", 1),
        ("max_concurrent_requests", 32),
        ("max_retries", 0),
        ("max_record_errors", 0),
        ("lead_cost", 0),
        ("source_id", "web"),
        ("batch_size_rows", 1),
        ("batch_size_rows", 5000),  # capped at 200 with a warning
    ],
)
def test_the_edge_of_each_bound_is_accepted(setting, value):
    assert checked({"api_key": KEY, setting: value}).errors == []


def test_surrounding_whitespace_of_the_key_is_dropped():
    config = {"api_key": f"  {KEY}\n"}
    assert checked(config).errors == []
    assert config["api_key"] == KEY


# Unknown settings


@pytest.mark.parametrize(
    ("name", "nearest"),
    [("max_retry", "max_retries"), ("reject_fle", "reject_file"), ("sorce_id", "source_id")],
)
def test_an_unknown_setting_is_a_warning_with_the_nearest_name(name, nearest):
    check = checked({"api_key": KEY, name: 3})
    assert check.errors == []
    assert check.warnings == [f"unknown setting {name!r} is ignored (did you mean {nearest}?)"]


def test_an_unknown_setting_far_from_any_name_is_a_plain_warning():
    check = checked({"api_key": KEY, "zzz_unrelated": 1})
    assert check.warnings == ["unknown setting 'zzz_unrelated' is ignored"]


@pytest.mark.parametrize("value", [True, "yes", "maybe"])
def test_a_misspelt_dry_run_that_is_not_clearly_false_stops_the_run(value):
    check = checked({"api_key": KEY, "dryrun": value})
    assert len(check.errors) == 1
    assert check.errors[0].startswith("dryrun: unknown setting that looks like dry_run; ")


def test_a_misspelt_dry_run_set_to_false_is_only_a_warning():
    check = checked({"api_key": KEY, "dry-run": False})
    assert check.errors == []
    assert check.warnings == ["unknown setting 'dry-run' is ignored (did you mean dry_run?)"]


# Environment values, parsed strictly


@pytest.mark.parametrize(
    ("variable", "raw", "setting", "expected"),
    [
        ("TARGET_CARECYCLE_DRY_RUN", "YES", "dry_run", True),
        ("TARGET_CARECYCLE_DRY_RUN", "off", "dry_run", False),
        ("TARGET_CARECYCLE_MAX_RETRIES", " 3 ", "max_retries", 3),
        ("TARGET_CARECYCLE_REQUEST_TIMEOUT", "2.5", "request_timeout", 2.5),
        ("TARGET_CARECYCLE_REQUEST_TIMEOUT", "7", "request_timeout", 7),
        ("TARGET_CARECYCLE_LEAD_COST", "0.75", "lead_cost", 0.75),
        ("TARGET_CARECYCLE_STREAMS", '{"web": {"enabled": false}}', "streams", None),
        ("TARGET_CARECYCLE_API_URL", "http://127.0.0.1:1", "api_url", "http://127.0.0.1:1"),
    ],
)
def test_env_values_that_parse(monkeypatch, variable, raw, setting, expected):
    monkeypatch.setenv(variable, raw)
    found = read_env_settings(full_schema())
    assert found[setting] == (json.loads(raw) if expected is None else expected)


@pytest.mark.parametrize(
    ("variable", "raw", "message"),
    [
        ("TARGET_CARECYCLE_DRY_RUN", "maybe", "dry_run: TARGET_CARECYCLE_DRY_RUN must be true"),
        ("TARGET_CARECYCLE_DRY_RUN", "y", "dry_run: TARGET_CARECYCLE_DRY_RUN must be true"),
        ("TARGET_CARECYCLE_DRY_RUN", "t", "dry_run: TARGET_CARECYCLE_DRY_RUN must be true"),
        ("TARGET_CARECYCLE_STRICT", "", "strict: TARGET_CARECYCLE_STRICT must be true"),
        (
            "TARGET_CARECYCLE_MAX_RETRIES",
            "abc",
            "max_retries: TARGET_CARECYCLE_MAX_RETRIES must be a whole number",
        ),
        (
            "TARGET_CARECYCLE_MAX_RETRIES",
            "2.5",
            "max_retries: TARGET_CARECYCLE_MAX_RETRIES must be a whole number",
        ),
        (
            "TARGET_CARECYCLE_MAX_REQUESTS_PER_MINUTE",
            "1" + "0" * 400,
            "max_requests_per_minute: TARGET_CARECYCLE_MAX_REQUESTS_PER_MINUTE must be a finite",
        ),
        (
            "TARGET_CARECYCLE_MAX_RETRIES",
            "9" * 5000,  # int() refuses more than 4,300 digits: was a traceback
            "max_retries: TARGET_CARECYCLE_MAX_RETRIES must be a finite number",
        ),
        (
            "TARGET_CARECYCLE_LEAD_COST",
            "1e400",
            "lead_cost: TARGET_CARECYCLE_LEAD_COST must be a finite number",
        ),
        (
            "TARGET_CARECYCLE_REQUEST_TIMEOUT",
            "nan",
            "request_timeout: TARGET_CARECYCLE_REQUEST_TIMEOUT must be a finite number",
        ),
        (
            "TARGET_CARECYCLE_STREAMS",
            "{not json",
            "streams: TARGET_CARECYCLE_STREAMS must be a JSON object",
        ),
    ],
)
def test_env_values_that_do_not_parse_give_one_line_naming_the_setting(
    monkeypatch, variable, raw, message
):
    monkeypatch.setenv(variable, raw)
    config = {"api_key": KEY, **read_env_settings(full_schema())}
    assert any(isinstance(v, UnreadableEnvValue) for v in config.values())
    check = checked(config, environ=dict(os.environ))
    assert len(check.errors) == 1
    assert check.errors[0].startswith(message)
    if len(raw.strip()) > 2:
        assert raw.strip() not in check.errors[0]


@pytest.mark.parametrize(
    ("environ", "config_dry_run", "errors", "dry_run"),
    [
        ({"TARGET_CARECYCLE_DRY_RUN": "true"}, False, 0, True),
        ({"TARGET_CARECYCLE_DRY_RUN": "false"}, True, 0, True),
        ({"TARGET_CARECYCLE_DRY_RUN": "false"}, False, 0, False),
        ({"TARGET_CARECYCLE_DRY_RUN": "maybe"}, False, 1, False),
        ({}, False, 0, False),
    ],
)
def test_the_dry_run_variable_is_read_even_without_config_env(
    environ, config_dry_run, errors, dry_run
):
    """Meltano passes its environment on: the variable can only make a run safer."""
    config = {"api_key": KEY, "dry_run": config_dry_run}
    check = checked(config, environ=environ)
    assert len(check.errors) == errors
    if not errors:
        assert RunSettings.from_config(config).dry_run is dry_run


@pytest.mark.parametrize(
    ("value", "dry_run"),
    [
        ("maybe", True),
        ("false", True),  # a string that skipped the checks is not a clear false
        (1.5, True),
        (UnreadableEnvValue("TARGET_CARECYCLE_DRY_RUN", "must be true or false"), True),
        (True, True),
        (False, False),
        (None, False),
    ],
)
def test_a_dry_run_setting_that_skipped_the_checks_is_never_a_send(value, dry_run):
    config = {"api_key": KEY, "dry_run": value}
    assert RunSettings.from_config(config).dry_run is dry_run


# The executable: one line, before reading, nothing sent


def run_with_env_config(
    tmp_path, config: dict[str, Any], env: dict[str, str], lines: Iterable[str]
):
    """The executable with `--config file --config ENV`, as `meltano invoke` may run it."""
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    run_env = {k: v for k, v in os.environ.items() if not k.startswith("TARGET_CARECYCLE_")}
    run_env.update(env)
    done = subprocess.run(
        [TARGET_EXE, "--config", str(path), "--config", "ENV"],
        input="\n".join(lines) + "\n",
        capture_output=True,
        text=True,
        env=run_env,
        timeout=120,
        check=False,
    )
    assert_no_key_in(config, env, done.stdout, done.stderr)
    return done


@pytest.mark.parametrize(
    ("env", "setting"),
    [
        ({"TARGET_CARECYCLE_DRY_RUN": "maybe"}, "TARGET_CARECYCLE_DRY_RUN"),
        ({"TARGET_CARECYCLE_DRY_RUN": "y"}, "TARGET_CARECYCLE_DRY_RUN"),
        ({"TARGET_CARECYCLE_MAX_RETRIES": "abc"}, "max_retries"),
        ({"TARGET_CARECYCLE_REQUEST_TIMEOUT": "0"}, "request_timeout"),
        ({"TARGET_CARECYCLE_MAX_CONCURRENT_REQUESTS": "10000"}, "max_concurrent_requests"),
        ({"TARGET_CARECYCLE_API_URL": "http://127.0.0.1.nip.io"}, "api_url"),
    ],
)
def test_bad_env_values_stop_the_run_before_anything_is_sent(sandbox, tmp_path, env, setting):
    done = run_with_env_config(
        tmp_path, target_config(sandbox), env, singer_lines("leads", api_leads(3))
    )
    assert done.returncode == 1
    errors = [line for line in done.stderr.splitlines() if "invalid config" in line]
    assert len(errors) == 1 and setting in errors[0], done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout == ""
    assert sum(sandbox.stats()["requests"].values()) == 0


def test_env_values_that_parse_are_used(sandbox, tmp_path):
    config = target_config(sandbox)
    env = {"TARGET_CARECYCLE_API_KEY": config.pop("api_key"), "TARGET_CARECYCLE_MAX_RETRIES": "2"}
    done = run_with_env_config(tmp_path, config, env, singer_lines("leads", api_leads(3)))
    assert done.returncode == 0, done.stderr
    assert sandbox.stats()["created"] == 3


@pytest.mark.parametrize("spelling", ["true", "YES", "On", "1"])
def test_a_dry_run_from_the_environment_never_sends(sandbox, tmp_path, spelling):
    """Even without `--config ENV`: the SDK would ignore the variable and send."""
    run = run_target(
        tmp_path,
        target_config(sandbox),
        singer_lines("leads", api_leads(3)),
        env={"TARGET_CARECYCLE_DRY_RUN": spelling},
    )
    assert run.returncode == 0, run.stderr
    assert "dry run: nothing was sent" in run.stderr
    assert sum(sandbox.stats()["requests"].values()) == 0


@pytest.mark.parametrize(
    ("overrides", "setting"),
    [
        ({"request_timeout": 0}, "request_timeout"),
        ({"max_requests_per_minute": 0}, "max_requests_per_minute"),
        ({"max_concurrent_requests": 0}, "max_concurrent_requests"),
        ({"max_concurrent_requests": 10000}, "max_concurrent_requests"),
        ({"max_record_errors": -1}, "max_record_errors"),
        ({"lead_cost": -3}, "lead_cost"),
        ({"source_id": ""}, "source_id"),
        ({"dry_run": "maybe"}, "dry_run"),
        ({"dryrun": True}, "dryrun"),
        ({"api_url": "http://127.evil.example"}, "api_url"),
        ({"max_requests_per_minute": 10**400}, "max_requests_per_minute"),  # crashed after input
        ({"lead_cost": 10**400}, "lead_cost"),  # sent as null
        ({"streams": {"leads": {"lead_cost": 10**400}}}, "streams.leads.lead_cost"),
    ],
)
def test_impossible_settings_stop_the_run_with_one_line(sandbox, tmp_path, overrides, setting):
    run = run_target(
        tmp_path, target_config(sandbox, **overrides), singer_lines("leads", api_leads(3))
    )
    assert run.returncode == 1
    errors = [line for line in run.stderr.splitlines() if "invalid config" in line]
    assert len(errors) == 1 and errors[0].count(setting) >= 1, run.stderr
    assert "Traceback" not in run.stderr
    assert run.stdout == ""
    assert sum(sandbox.stats()["requests"].values()) == 0


def test_a_misspelt_setting_is_a_warning_and_the_run_goes_on(sandbox, tmp_path):
    run = run_target(
        tmp_path, target_config(sandbox, max_retry=3), singer_lines("leads", api_leads(2))
    )
    assert run.returncode == 0, run.stderr
    assert "unknown setting 'max_retry' is ignored (did you mean max_retries?)" in run.stderr
    assert sandbox.stats()["created"] == 2


@pytest.mark.parametrize(
    ("content", "says"),
    [
        ("{nope", "a --config file is not JSON at line 1 column 2"),
        (
            '{"api_key": "cc_x", "request_timeout": NaN}',
            "a --config file is not JSON at line 1 column 40",
        ),
        (None, "a --config file cannot be read (FileNotFoundError)"),
    ],
    ids=["not JSON", "NaN literal", "missing file"],
)
def test_an_unreadable_config_file_is_one_line(tmp_path, content, says):
    path = tmp_path / "config.json"
    if content is not None:
        path.write_text(content)
    done = subprocess.run(
        [TARGET_EXE, "--config", str(path)], input="", capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1
    assert fatal_lines(done.stderr) == [f"target-carecycle: invalid config: {says}"]
    assert "Traceback" not in done.stderr
