"""Delivery you can trust: faults, 429s, fatal answers, stop signals, and no leaks, end to end."""

from __future__ import annotations

import re
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from target_runner import (
    TargetRun,
    run_target,
    start_target,
    target_config,
    wait_for_stats,
)

from target_carecycle.sandbox import RunningSandbox, SandboxConfig, running_sandbox
from target_carecycle.sandbox.samples import api_leads, singer_lines

LEADS = 2000
TAP_STATE = {"bookmarks": {"leads": {"replication_key_value": 2000}}}
SECRET_KEY = "cc_delivery_test_secret_0123456789"


def distinctive_leads(count: int) -> list[dict[str, Any]]:
    """Leads whose names cannot appear in a log line by accident."""
    leads = api_leads(count)
    for index, lead in enumerate(leads):
        lead["firstName"] = f"Qfirst{index:05d}x"
        lead["lastName"] = f"Zlast{index:05d}y"
    return leads


def assert_nothing_leaked(run: TargetRun, leads: list[dict[str, Any]], *files: Path) -> None:
    """Every byte the target wrote: no API key, no phone number, no name."""
    written = run.stdout + run.stderr + "".join(f.read_text() for f in files if f.exists())
    assert SECRET_KEY not in written
    for lead in leads[:: max(1, len(leads) // 200)]:
        assert lead["phoneNumber"] not in written
        assert lead["phoneNumber"][2:] not in written
        assert lead["firstName"] not in written
        assert lead["lastName"] not in written


def assert_all_delivered_once(
    sandbox: RunningSandbox, run: TargetRun, leads: list[dict[str, Any]]
) -> None:
    assert run.returncode == 0, run.stderr[-3000:]
    stats = sandbox.stats()
    stored = {c["externalId"] for c in sandbox.customers()}
    assert stored == {lead["externalId"] for lead in leads}
    assert stats["created"] == len(leads), stats
    assert stats["customers"] == len(leads)
    final = run.states[-1]
    assert {k: v for k, v in final.items() if k != "target_carecycle"} == TAP_STATE
    assert final["target_carecycle"]["leads"]["succeeded"] == len(leads)


def secret_sandbox(**kwargs) -> SandboxConfig:
    return SandboxConfig(api_keys=(SECRET_KEY,), rate_limit=kwargs.pop("rate_limit", 0), **kwargs)


@pytest.mark.parametrize(
    ("fault", "extra"),
    [
        (dict(fault="500", fault_every=3), {}),
        (dict(fault="503", fault_every=4), {}),
        (dict(fault="drop", fault_every=3), {}),
        (dict(fault="stall", fault_every=4, stall_seconds=2.5), {"request_timeout": 1}),
    ],
    ids=["500-every-3rd", "503-every-4th", "dropped-connections", "stalls-past-timeout"],
)
def test_transient_faults_are_retried_until_every_lead_is_stored_once(tmp_path, fault, extra):
    leads = distinctive_leads(LEADS)
    with running_sandbox(secret_sandbox(**fault)) as sandbox:
        config = target_config(sandbox, **extra)
        run = run_target(tmp_path, config, singer_lines("leads", leads, state=TAP_STATE))
        assert_all_delivered_once(sandbox, run, leads)
        if fault["fault"] == "stall":
            time.sleep(fault["stall_seconds"])  # stalled requests land late: as updates
            assert sandbox.stats()["created"] == LEADS
        assert sandbox.stats()["upload_requests"] > LEADS // 200
    assert "retrying" in run.stderr
    assert_nothing_leaked(run, leads)


@pytest.mark.slow
def test_rate_limited_sandbox_slows_the_target_down_without_losing_leads(tmp_path):
    leads = distinctive_leads(LEADS)
    with running_sandbox(secret_sandbox(rate_limit=120, rate_burst=2)) as sandbox:
        config = target_config(sandbox, max_requests_per_minute=6000, batch_size_rows=100)
        run = run_target(tmp_path, config, singer_lines("leads", leads, state=TAP_STATE))
        assert_all_delivered_once(sandbox, run, leads)
        assert sandbox.stats()["requests"].get("429", 0) >= 1
    assert "rate limit hit (429)" in run.stderr
    assert_nothing_leaked(run, leads)


@pytest.mark.parametrize("kind", ["unknown-key", "read-only-key"])
def test_a_refused_key_stops_the_run_at_once_without_state(tmp_path, kind):
    leads = distinctive_leads(LEADS)
    sandbox_config = SandboxConfig(
        api_keys=("cc_sandbox_other_key",),
        read_only_keys=(SECRET_KEY,) if kind == "read-only-key" else (),
        rate_limit=0,
    )
    with running_sandbox(sandbox_config) as sandbox:
        config = target_config(sandbox, api_key=SECRET_KEY)
        started = time.monotonic()
        run = run_target(tmp_path, config, singer_lines("leads", leads, state=TAP_STATE))
        assert time.monotonic() - started < 15
        assert sandbox.stats()["created"] == 0
    assert run.returncode == 1
    assert run.states == []
    assert "careCycle refused the API key" in run.stderr
    assert "check api_key" in run.stderr
    assert_nothing_leaked(run, leads)


def test_wrong_path_names_the_url(sandbox, tmp_path):
    config = target_config(sandbox, api_url=sandbox.url + "/not-here")
    run = run_target(tmp_path, config, singer_lines("leads", api_leads(5)))
    assert run.returncode == 1
    assert f"{sandbox.url}/not-here/v2/leads/upload" in run.stderr
    assert run.states == []


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]  # socket addresses are typed Any
        return port


def test_unreachable_api_fails_after_the_retries(tmp_path):
    leads = distinctive_leads(LEADS)
    config = {
        "api_url": f"http://127.0.0.1:{free_port()}",
        "api_key": SECRET_KEY,
        "max_retries": 2,
        "request_timeout": 2,
        "max_concurrent_requests": 1,
    }
    run = run_target(tmp_path, config, singer_lines("leads", leads, state=TAP_STATE))
    assert run.returncode == 1
    assert run.states == []
    assert "failed after 3 attempts" in run.stderr
    assert run.stderr.count("retrying in") == 2
    assert_nothing_leaked(run, leads)


def signal_after(
    tmp_path: Path,
    sandbox: RunningSandbox,
    config: dict[str, Any],
    lines: list[str],
    ready: Callable[[dict[str, Any]], bool],
    signum: int,
) -> TargetRun:
    """Feed `lines` (stdin stays open), wait until the sandbox's stats are `ready`, signal."""
    proc = start_target(tmp_path, config, lines)
    wait_for_stats(sandbox, ready)
    proc.send_signal(signum)
    stdout, stderr = proc.communicate(timeout=30)
    return TargetRun(proc.returncode, stdout, stderr)


def summary_counts(stderr: str, stream: str) -> dict[str, int]:
    """The counts on the summary line of `stream`, by label."""
    line = [text for text in stderr.splitlines() if text.strip().startswith(f"{stream}:")][-1]
    return {label.strip(): int(n) for label, n in re.findall(r"([a-z ()]+) (\d+)", line)}


def test_sigterm_mid_run_settles_in_flight_requests_and_reports_truthfully(tmp_path):
    leads = distinctive_leads(LEADS)
    reject_file = tmp_path / "rejects.jsonl"
    with running_sandbox(secret_sandbox(latency=0.6)) as sandbox:
        config = target_config(sandbox, max_concurrent_requests=1, reject_file=str(reject_file))
        lines = list(singer_lines("leads", leads, state=TAP_STATE))
        run = signal_after(
            tmp_path, sandbox, config, lines, lambda s: s["upload_requests"] >= 2, signal.SIGTERM
        )
        stored = sandbox.stats()["created"]

    assert run.returncode == 128 + signal.SIGTERM
    assert 0 < stored < LEADS
    assert run.states == []  # leads were left unsent: no state may claim them
    counts = summary_counts(run.stderr, "leads")
    assert counts["succeeded"] == stored
    assert counts["not sent (run stopped)"] > 0
    assert counts["received"] == counts["succeeded"] + counts["not sent (run stopped)"]
    assert "Traceback" not in run.stderr
    assert_nothing_leaked(run, leads, reject_file)


def test_sigint_when_everything_was_delivered_emits_the_true_state(sandbox, tmp_path):
    lines = list(singer_lines("leads", api_leads(200), state=TAP_STATE))
    run = signal_after(
        tmp_path,
        sandbox,
        target_config(sandbox),
        lines,
        lambda s: s["created"] >= 200,
        signal.SIGINT,
    )

    assert run.returncode == 128 + signal.SIGINT
    assert len(run.states) == 1
    assert {k: v for k, v in run.states[0].items() if k != "target_carecycle"} == TAP_STATE
    assert run.states[0]["target_carecycle"]["leads"]["succeeded"] == 200
    assert "Traceback" not in run.stderr
