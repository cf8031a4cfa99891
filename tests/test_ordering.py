"""The last version of a lead in the input is what careCycle holds: across batches, sinks
retired by a SCHEMA change, streams and BATCH files, with requests overlapping."""

from __future__ import annotations

import json
import threading
from typing import Any

from target_runner import run_target, target_config

from target_carecycle.client import BatchResult, ClientSettings, LeadUploadClient, UploadDispatcher
from target_carecycle.sandbox import SandboxConfig, running_sandbox
from target_carecycle.sandbox.samples import LEAD_SCHEMA, phone_for

SCHEMA_V1: dict[str, Any] = {
    "type": "object",
    "properties": {**LEAD_SCHEMA["properties"], "language": {"type": ["string", "null"]}},
}
SCHEMA_V2 = {
    "type": "object",
    "properties": {**SCHEMA_V1["properties"], "segment": {"type": ["string", "null"]}},
}
STATE = {"bookmarks": {"leads": {"updated_at": "2026-01-02"}}}


def schema(stream: str, body: dict[str, Any] = SCHEMA_V1) -> str:
    return json.dumps(
        {"type": "SCHEMA", "stream": stream, "schema": body, "key_properties": ["externalId"]}
    )


def record(stream: str, index: int, version: str) -> str:
    """A lead whose `language` carries the version it was sent with."""
    lead = {
        "externalId": f"lead-{index}",
        "phoneNumber": phone_for(index),
        "postalCode": "60614",
        "language": version,
    }
    return json.dumps({"type": "RECORD", "stream": stream, "record": lead})


def state() -> str:
    return json.dumps({"type": "STATE", "value": STATE})


def held_versions(sandbox) -> dict[str, str]:
    return {c["externalId"]: c["language"] for c in sandbox.customers()}


def slow_sandbox() -> SandboxConfig:
    """Answers take 0.3 s, so batches overlap on the wire."""
    return SandboxConfig(rate_limit=0, latency=0.3)


def test_schema_change_mid_stream_keeps_the_newer_versions(tmp_path):
    """150 leads, a SCHEMA with a new column (the SDK retires the sink, drains it at the
    end), then 200 records updating the 150 and 50 more: every lead ends newer."""
    lines = [schema("leads")]
    lines += [record("leads", i, "old") for i in range(150)]
    lines += [schema("leads", SCHEMA_V2)]
    lines += [record("leads", i, "new") for i in range(200)]
    lines += [state()]
    with running_sandbox(slow_sandbox()) as sandbox:
        run = run_target(tmp_path, target_config(sandbox), lines)
        held = held_versions(sandbox)
    assert run.returncode == 0, run.stderr[-2000:]
    assert held == {f"lead-{i}": "new" for i in range(200)}
    counts = run.states[-1]["target_carecycle"]["leads"]
    # The 150 older versions still pending in the retired sink are replaced unsent (merged),
    # so the batches stay full: 350 records, 2 requests of up to 200 leads.
    assert counts["succeeded"] == 200 and counts["merged"] == 150
    assert counts["received"] == 350


def test_two_streams_with_the_same_external_ids_keep_the_later_stream_version(tmp_path):
    """`crm` holds 50 pending leads; `forms` then sends 200 records for the same IDs and more."""
    lines = [schema("crm"), schema("forms")]
    lines += [record("crm", i, "crm") for i in range(50)]
    lines += [record("forms", i, "forms") for i in range(200)]
    lines += [state()]
    with running_sandbox(slow_sandbox()) as sandbox:
        run = run_target(tmp_path, target_config(sandbox), lines)
        held = held_versions(sandbox)
    assert run.returncode == 0, run.stderr[-2000:]
    assert held == {f"lead-{i}": "forms" for i in range(200)}
    counts = run.states[-1]["target_carecycle"]
    assert counts["crm"]["merged"] == 50 and counts["crm"]["succeeded"] == 0
    assert counts["forms"]["succeeded"] == 200


def test_alternating_streams_with_shared_ids_keep_full_batches(tmp_path):
    """Records of one lead alternate between two streams: the older copy is merged away,
    never sent, so 600 records make 2 requests, not one per record."""
    lines = [schema("crm"), schema("forms")]
    for i in range(300):
        lines += [record("crm", i, "crm"), record("forms", i, "forms")]
    lines += [state()]
    with running_sandbox(SandboxConfig(rate_limit=0)) as sandbox:
        run = run_target(tmp_path, target_config(sandbox), lines)
        held = held_versions(sandbox)
        requests = sandbox.stats()["upload_requests"]
    assert run.returncode == 0, run.stderr[-2000:]
    assert held == {f"lead-{i}": "forms" for i in range(300)}
    assert requests == 2
    counts = run.states[-1]["target_carecycle"]
    assert counts["crm"]["merged"] == 300 and counts["forms"]["succeeded"] == 300


def test_interleaved_streams_and_schema_changes_end_with_each_leads_last_version(tmp_path):
    """Versions bounce between two streams and three sinks, in small overlapping batches."""
    lines = [schema("crm"), schema("forms")]
    last: dict[str, str] = {}
    for step in range(120):
        stream = ("crm", "forms")[step % 3 == 0]
        index = (step * 7) % 23
        version = f"v{step}"
        lines.append(record(stream, index, version))
        last[f"lead-{index}"] = version
        if step == 62:  # crm holds 2 pending leads then
            lines.append(schema("crm", SCHEMA_V2))
    config = {"batch_size_rows": 5, "max_concurrent_requests": 4}
    with running_sandbox(slow_sandbox()) as sandbox:
        run = run_target(tmp_path, target_config(sandbox, **config), lines)
        held = held_versions(sandbox)
    assert run.returncode == 0, run.stderr[-2000:]
    assert held == last


def test_after_make_room_every_earlier_batch_sharing_an_id_is_finished():
    """The dispatcher's documented point: make_room(ids) returns once every earlier batch
    sharing an externalId has been handed back; batches with other IDs do not wait."""
    events: list[str] = []
    with running_sandbox(
        SandboxConfig(rate_limit=0, fault="stall", fault_every=1, stall_seconds=2)
    ) as sandbox:
        settings = ClientSettings(api_url=sandbox.url, api_key=sandbox.api_key)
        dispatcher = UploadDispatcher(LeadUploadClient(settings, stop=threading.Event()))
        leads = [
            {"externalId": f"lead-{i}", "phoneNumber": phone_for(i), "postalCode": "60614"}
            for i in range(3)
        ]

        def done(name: str, result: BatchResult) -> None:
            events.append(f"{name} done, {len(result.ids)} ids")

        dispatcher.make_room(frozenset({"lead-0", "lead-1"}))
        dispatcher.enqueue(
            leads[:2],
            frozenset({"lead-0", "lead-1"}),
            on_done=lambda result: done("first", result),
            on_lost=lambda: events.append("first lost"),
        )
        dispatcher.make_room(frozenset({"lead-2"}))  # no shared ID: no waiting
        assert events == []
        assert dispatcher.in_flight == 1
        dispatcher.make_room(frozenset({"lead-1", "lead-2"}))
        assert events == ["first done, 2 ids"]
        assert dispatcher.in_flight == 0
        dispatcher.close()


def run_in_process(config: dict[str, Any], lines: list[str]) -> tuple[int, str]:
    """One run of the target in this process, with the SDK's periodic drain on every check."""
    import io
    from contextlib import redirect_stderr, redirect_stdout

    from target_carecycle.target import TargetCareCycle

    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        target = TargetCareCycle(config=config, validate_config=True)
        # Stands in for a run older than the SDK's 5 minutes: every age check drains all
        # sinks and forgets the retired ones.
        target._MAX_RECORD_AGE_IN_MINUTES = -1.0
        code = target.run(io.StringIO("".join(line + "\n" for line in lines)))
    return code, out.getvalue()


def test_a_stream_aliased_onto_another_never_strands_its_records(tmp_path, sandbox):
    """`forms` mapped onto `crm` with other columns replaces crm's sink; crm's later records
    must reach the new sink, even after the SDK's periodic drain forgot the old one."""
    config = {
        **target_config(sandbox, results_file=str(tmp_path / "results.jsonl")),
        "stream_maps": {"forms": {"__alias__": "crm"}},
    }
    lines = [schema("crm"), schema("forms", SCHEMA_V2)]
    lines += [record("crm", i, "crm") for i in range(10)]
    lines += [state(), record("forms", 100, "forms")]
    lines += [record("crm", i, "crm") for i in range(10, 20)]
    lines.append(state())

    code, stdout = run_in_process(config, lines)

    assert code == 0
    assert len(sandbox.customers()) == 21
    final = json.loads(stdout.splitlines()[-1])["target_carecycle"]["crm"]
    assert final["received"] == final["succeeded"] == 21
