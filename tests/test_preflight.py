"""`target-carecycle --check`: settings, URL, DNS, TLS and the key, and never a lead.

The key is checked by uploading nothing (`{"records": []}`): careCycle (and the sandbox)
answers 401/403 for a bad key and a VALIDATION_ERROR for a good one.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import requests
from target_runner import TARGET_EXE, assert_no_key_in, fatal_lines, stop_line

from target_carecycle.client import Scrubber, _key_verdict
from target_carecycle.sandbox import SandboxConfig, running_sandbox
from target_carecycle.sandbox.server import DEFAULT_API_KEY

READ_ONLY_KEY = "cc_sandbox_read_only_key"


def check(tmp_path: Path, config: dict[str, Any], env: dict[str, str] | None = None) -> Any:
    """Run `--check` with stdin left open: it must answer without reading any input."""
    path = tmp_path / "check-config.json"
    path.write_text(json.dumps(config))
    run_env = {"PATH": "/usr/bin:/bin", **(env or {})}
    with subprocess.Popen(
        [TARGET_EXE, "--check", "--config", str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=run_env,
    ) as proc:
        try:
            stdout, stderr = _wait(proc)
        finally:
            proc.kill()
    assert_no_key_in(config, env, stdout, stderr)
    return proc.returncode, stdout, stderr


def _wait(proc: subprocess.Popen[str]) -> tuple[str, str]:
    """Wait for the process while its stdin stays open (a run would block reading it)."""
    proc.wait(timeout=60)
    assert proc.stdout is not None and proc.stderr is not None
    return proc.stdout.read(), proc.stderr.read()


def verdict(stderr: str) -> str:
    """The check's one line (INFO when it passes, ERROR when it fails)."""
    found = [
        line.split(" | ", 3)[3]
        for line in stderr.splitlines()
        if line.count(" | ") >= 3 and "target-carecycle: check " in line.split(" | ", 3)[3]
    ]
    assert len(found) == 1, stderr[-3000:]
    return found[0]


@pytest.fixture
def sandbox_with_read_only_key():
    config = SandboxConfig(rate_limit=0, read_only_keys=(READ_ONLY_KEY,))
    with running_sandbox(config) as sandbox:
        yield sandbox


def test_a_valid_key_passes_without_reading_input_or_sending_a_lead(
    sandbox_with_read_only_key, tmp_path
):
    sandbox = sandbox_with_read_only_key
    config = {"api_url": sandbox.url, "api_key": sandbox.api_key, "source_id": "web"}
    code, stdout, stderr = check(tmp_path, config)

    assert code == 0, stderr[-3000:]
    line = verdict(stderr)
    assert line.startswith(f"target-carecycle: check passed (LIVE): settings valid; {sandbox.url}")
    assert "careCycle accepted the API key sha256:" in line
    assert "HTTP 422 VALIDATION_ERROR for an empty upload" in line
    assert "not checked: that source_id exists in careCycle" in line
    assert stdout == ""
    stats = sandbox.stats()
    assert stats["upload_requests"] == 1 and stats["leads_received"] == 0
    assert sandbox.customers() == []
    assert fatal_lines(stderr) == []


@pytest.mark.parametrize(
    ("key", "says"),
    [
        ("cc_wrong_key_0123456789", "careCycle refused the API key (HTTP 401): check api_key"),
        (READ_ONLY_KEY, "careCycle refused the API key (HTTP 403): check api_key"),
    ],
)
def test_a_refused_key_fails_in_one_error_line(sandbox_with_read_only_key, tmp_path, key, says):
    sandbox = sandbox_with_read_only_key
    code, _, stderr = check(tmp_path, {"api_url": sandbox.url, "api_key": key})
    assert code == 1
    (line,) = fatal_lines(stderr)
    assert line.startswith(f"target-carecycle: check failed: {says} (key sha256:")
    assert sandbox.customers() == []


def test_a_wrong_url_path_is_a_404(sandbox, tmp_path):
    code, _, stderr = check(tmp_path, {"api_url": sandbox.url + "/api", "api_key": "cc_x_123456"})
    assert code == 1
    (line,) = fatal_lines(stderr)
    assert f"careCycle answered 404 NOT_FOUND for POST {sandbox.url}/api/v2/leads/upload" in line


def test_a_name_that_does_not_resolve_is_a_dns_failure(tmp_path):
    config = {"api_url": "https://carecycle-check.invalid", "api_key": "cc_x_123456"}
    code, _, stderr = check(tmp_path, config)
    assert code == 1
    (line,) = fatal_lines(stderr)
    assert line.startswith("target-carecycle: check failed: cannot resolve carecycle-check.invalid")
    assert line.endswith(": check api_url and DNS (key sha256:" + line.rsplit("sha256:", 1)[1])


def test_nothing_listening_is_a_connection_failure(tmp_path):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    code, _, stderr = check(tmp_path, {"api_url": f"http://127.0.0.1:{port}", "api_key": "cc_x_1"})
    assert code == 1
    assert "cannot connect to http://127.0.0.1:" in fatal_lines(stderr)[0]


def test_a_server_error_says_the_key_was_not_checked(tmp_path):
    with running_sandbox(SandboxConfig(rate_limit=0, fault="503", fault_every=1)) as sandbox:
        code, _, stderr = check(tmp_path, {"api_url": sandbox.url, "api_key": sandbox.api_key})
    assert code == 1
    assert (
        "careCycle answered HTTP 503 SERVICE_UNAVAILABLE (a server error): the key was not "
        "checked; try later" in fatal_lines(stderr)[0]
    )


def test_a_rate_limited_key_says_when_to_try_again(tmp_path):
    with running_sandbox(SandboxConfig(rate_limit=1)) as sandbox:
        config = {"api_url": sandbox.url, "api_key": sandbox.api_key}
        first, _, _ = check(tmp_path, config)
        code, _, stderr = check(tmp_path, config)
    assert (first, code) == (0, 1)
    line = fatal_lines(stderr)[0]
    assert (
        "careCycle answered 429 RATE_LIMIT_EXCEEDED: the key was not checked; try again in" in line
    )


def test_a_dry_run_config_without_a_key_checks_all_but_the_key(sandbox, tmp_path):
    code, _, stderr = check(tmp_path, {"dry_run": True, "api_url": sandbox.url})
    assert code == 0, stderr[-3000:]
    line = verdict(stderr)
    assert line.startswith("target-carecycle: check passed (dry run, nothing would be sent): ")
    assert f"{sandbox.url} reached over HTTP; no api_key, so the key was not checked" in line
    assert sandbox.stats()["upload_requests"] == 0


def test_a_dry_run_config_with_a_key_checks_the_key(sandbox, tmp_path):
    code, _, stderr = check(
        tmp_path, {"dry_run": True, "api_url": sandbox.url, "api_key": sandbox.api_key}
    )
    assert code == 0
    assert "check passed (dry run, nothing would be sent)" in verdict(stderr)


def test_the_key_and_url_may_come_from_the_environment(sandbox, tmp_path):
    env = {"TARGET_CARECYCLE_API_KEY": sandbox.api_key, "TARGET_CARECYCLE_API_URL": sandbox.url}
    code, _, stderr = check(tmp_path, {}, env=env)
    assert code == 0, stderr[-3000:]


def test_the_check_refuses_a_key_and_url_from_two_places(sandbox, tmp_path):
    """The check resolves settings exactly as a run does (docs/settings.md)."""
    code, _, stderr = check(
        tmp_path, {"api_url": sandbox.url}, env={"TARGET_CARECYCLE_API_KEY": sandbox.api_key}
    )
    assert code == 1
    assert "api_key comes from TARGET_CARECYCLE_API_KEY but api_url from the config file" in (
        stop_line(stderr)
    )


@pytest.mark.parametrize(
    ("config", "says"),
    [
        ({"api_url": "http://example.com", "api_key": "cc_x_123456"}, "api_url: must use https"),
        ({}, "api_key: required"),
        ({"api_key": "cc_x_123456", "reject_file": "r-{when}.jsonl"}, "reject_file: the only"),
        (
            {"api_key": "cc_x_123456", "stream_maps": {"leads": {"x": "a.upper("}}},
            "stream_maps.leads.x: the expression does not parse",
        ),
    ],
)
def test_invalid_settings_fail_the_check_before_any_request(tmp_path, config, says):
    code, _, stderr = check(tmp_path, config)
    assert code == 1
    (line,) = fatal_lines(stderr)
    assert line.startswith(f"target-carecycle: invalid config: {says}")


def test_the_check_creates_no_file(sandbox, tmp_path):
    config = {
        "api_url": sandbox.url,
        "api_key": sandbox.api_key,
        "reject_file": str(tmp_path / "out" / "rejects.jsonl"),
        "results_file": str(tmp_path / "out" / "results.jsonl"),
    }
    code, _, _ = check(tmp_path, config)
    assert code == 0
    assert not (tmp_path / "out").exists()


def response(status: int, body: Any = None, headers: dict[str, str] | None = None) -> Any:
    """A requests.Response as careCycle might send it (the classifier's input)."""
    answer = requests.Response()
    answer.status_code = status
    answer._content = b"" if body is None else json.dumps(body).encode()
    answer.headers.update(headers or {})
    return answer


@pytest.mark.parametrize(
    ("status", "body", "accepted", "says"),
    [
        (422, {"code": "VALIDATION_ERROR", "errors": []}, True, "HTTP 422 VALIDATION_ERROR"),
        (400, {"code": "VALIDATION_ERROR"}, True, "HTTP 400 VALIDATION_ERROR"),
        (200, {"succeeded": 0, "failed": 0, "results": []}, True, "HTTP 200 for an empty upload"),
        (401, {"code": "UNAUTHORIZED"}, False, "careCycle refused the API key (HTTP 401)"),
        (403, None, False, "careCycle refused the API key (HTTP 403)"),
        (404, {"code": "NOT_FOUND"}, False, "careCycle answered 404 NOT_FOUND for POST"),
        (
            400,
            {"code": "BAD_REQUEST", "message": f"bad {DEFAULT_API_KEY}"},
            False,
            "careCycle answered HTTP 400 BAD_REQUEST bad <api key>: neither a valid nor an invalid",
        ),
        (302, None, False, "careCycle redirected POST"),
    ],
)
def test_the_answer_to_an_empty_upload_is_read_as_the_contract_says(status, body, accepted, says):
    headers = {"Location": "https://elsewhere.example/"} if status == 302 else None
    found = _key_verdict(
        response(status, body, headers),
        "https://api.example/v2/leads/upload",
        Scrubber(DEFAULT_API_KEY),
    )
    assert found.accepted is accepted
    assert says in found.message
    assert DEFAULT_API_KEY not in found.message
