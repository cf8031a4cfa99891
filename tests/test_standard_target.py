"""The Meltano Singer SDK's standard target tests, against an in-process careCycle sandbox.

The SDK's test streams (`singer_sdk/testing/target_test_streams/*.singer`) are not leads: they
have no phone number, so every record must be rejected, counted and reported, and no stream may
crash the run or reach careCycle. Extra tests below check exactly that, and that a real lead
sent the same way arrives.

One standard test is replaced, with its reason, in TestTargetCareCycle below:
`record_missing_key_property` (the SDK expects a crash; this target rejects or sends, never
crashes).
"""

from __future__ import annotations

import importlib.resources
import io
import json
import socket
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from typing import TYPE_CHECKING, Any

import pytest
from singer_sdk.testing import get_target_test_class, target_test_streams

from target_carecycle.sandbox import DEFAULT_API_KEY, RunningSandbox, SandboxConfig, running_sandbox
from target_carecycle.target import TargetCareCycle


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# The test class is built at import time with its config, so the sandbox's port is chosen
# now and the sandbox itself started by the module fixture below.
SANDBOX_PORT = _free_port()
SANDBOX_URL = f"http://127.0.0.1:{SANDBOX_PORT}"
CONFIG = {
    "api_url": SANDBOX_URL,
    "api_key": DEFAULT_API_KEY,
    "source_id": "sandbox-source",
    "max_retries": 1,
    "request_timeout": 10,
}


@pytest.fixture(scope="module", autouse=True)
def sandbox() -> Iterator[RunningSandbox]:
    """One sandbox for the module, rate limit off, on the port the config names."""
    with running_sandbox(SandboxConfig(rate_limit=0, port=SANDBOX_PORT)) as sb:
        yield sb


if TYPE_CHECKING:  # a class built at run time cannot be a base class to mypy: its declared type
    from singer_sdk.testing.factory import BaseTestClass as _StandardTargetTests
else:
    _StandardTargetTests = get_target_test_class(TargetCareCycle, config=CONFIG)


class TestTargetCareCycle(_StandardTargetTests):
    """The SDK's standard target tests, with one expectation replaced (see below)."""

    def test_target_record_missing_key_property(self, sandbox: RunningSandbox) -> None:
        """Replaces the SDK's test of the same name, which expects MissingKeyPropertiesError.

        Reason for the exclusion: the target must never crash on a bad record (issue #6 and the
        README's promise: rejected records are counted and reported, the run goes on). A record
        without its key property is therefore not fatal here: it gets a content-hash externalId
        and is validated as a lead like any other. The SDK's input file for this test has no
        phone, so its record is rejected; the same shape with a phone is uploaded.
        """
        messages = [
            {
                "type": "SCHEMA",
                "stream": "missing_key",
                "key_properties": ["id"],
                "schema": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "integer"},
                        "metric": {"type": "integer"},
                        "phone": {"type": "string"},
                        "zip": {"type": "string"},
                    },
                },
            },
            {"type": "RECORD", "stream": "missing_key", "record": {"metric": 8214}},
            {
                "type": "RECORD",
                "stream": "missing_key",
                "record": {"metric": 1, "phone": "813-526-4477", "zip": "33602"},
            },
        ]
        target, _, _ = _run_target("".join(json.dumps(m) + "\n" for m in messages))
        counts = target.outcomes.state_metrics()["missing_key"]
        assert (counts["received"], counts["rejected"], counts["succeeded"]) == (2, 1, 1)
        stored = [c for c in sandbox.customers() if c["phoneNumber"] == "+18135264477"]
        assert len(stored) == 1
        assert stored[0]["externalId"]


def _run_target(
    lines: str, config: dict[str, Any] | None = None
) -> tuple[TargetCareCycle, str, str]:
    """Feed Singer messages to a fresh target the way the SDK's runner does."""
    target = TargetCareCycle(config=config or CONFIG, validate_config=True)
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        target.process_lines(io.StringIO(lines))
        target.process_endofpipe()
    return target, out.getvalue(), err.getvalue()


STANDARD_STREAMS = sorted(
    entry.name.removesuffix(".singer")
    for entry in importlib.resources.files(target_test_streams).iterdir()
    if entry.name.endswith(".singer")
    # These three are meant to make the SDK raise (the standard tests check that it does).
    and entry.name.removesuffix(".singer")
    not in {"invalid_schema", "record_before_schema", "record_missing_key_property"}
)


@pytest.mark.parametrize("name", STANDARD_STREAMS)
def test_non_leads_are_rejected_and_counted(name: str, sandbox: RunningSandbox) -> None:
    """Each SDK test stream: every record rejected (no phone) and counted; nothing uploaded.

    Nothing was delivered, so the failure policy fails the run and no STATE leaves the target
    (the tap would otherwise move past records that were never sent)."""
    before = sandbox.stats()["leads_received"]
    text = (importlib.resources.files(target_test_streams) / f"{name}.singer").read_text(
        encoding="utf-8"
    )
    records = sum(1 for line in text.splitlines() if '"RECORD"' in line)
    target, stdout, _ = _run_target(text)

    metrics = target.outcomes.state_metrics()
    assert sum(m["received"] for m in metrics.values()) == records
    assert sum(m["rejected"] for m in metrics.values()) == records
    assert sum(m["succeeded"] + m["failed"] for m in metrics.values()) == 0
    assert sandbox.stats()["leads_received"] == before
    if records:
        assert "(nothing delivered)" in str(target.outcomes.policy_breach(final=True))
        assert stdout == ""


def test_a_lead_sent_like_the_standard_streams_arrives(sandbox: RunningSandbox) -> None:
    """The same path with a record that is a lead uploads it."""
    messages = [
        {
            "type": "SCHEMA",
            "stream": "leads",
            "key_properties": ["id"],
            "schema": {
                "type": "object",
                "properties": {
                    "id": {"type": "integer"},
                    "phone": {"type": "string"},
                    "zip": {"type": "string"},
                    "external_id": {"type": "string"},
                },
            },
        },
        {
            "type": "RECORD",
            "stream": "leads",
            "record": {"id": 1, "phone": "(602) 254-1187", "zip": "85004", "external_id": "STD-1"},
        },
        {"type": "STATE", "value": {"bookmarks": {"leads": {"id": 1}}}},
    ]
    target, stdout, _ = _run_target("".join(json.dumps(m) + "\n" for m in messages))
    assert target.outcomes.state_metrics()["leads"]["succeeded"] == 1
    stored = [c for c in sandbox.customers() if c.get("externalId") == "STD-1"]
    assert len(stored) == 1
    assert stored[0]["phoneNumber"] == "+16022541187"
    state = json.loads(stdout.splitlines()[-1])
    assert state["bookmarks"] == {"leads": {"id": 1}}
    assert state["target_carecycle"]["leads"]["succeeded"] == 1
