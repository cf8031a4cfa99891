"""Random Singer input against a faulty sandbox: the target's promises hold for every run.

Each example is a random stream of messages over two streams that share externalIds: RECORDs
(valid, invalid locally, or refused by careCycle for an unknown source), records that are not
objects, SCHEMA changes, STATE at random points and BATCH files (gzip or plain), sent to a
sandbox that answers 500s, drops connections or rate-limits. The target runs in process (a new
one per example, the real code end to end over HTTP; only its backoff base is shortened so
retries cost milliseconds). After each run:

1. every record has exactly one outcome: per stream, the results file (succeeded), the reject
   file (failed, rejected) and the merged log lines name each position 1..received once;
2. for every externalId, careCycle holds the version of the last record, in input order, whose
   outcome is succeeded (and nothing for IDs that never succeeded);
3. every STATE emitted is one the tap sent, and was emitted only once every record ahead of it
   had its outcome (no record pending in its counts, all records before it received), and
   never while the run had failed or rejected records and no lead careCycle holds; a run the
   failure policy fails (exit 1) emits no STATE after its last records;
4. no output (stdout, stderr, logs, results file) holds the API key or a personal value from
   the input. The reject file holds the records it rejects, by design, and is not checked;
5. `record_count` summed by stream equals `received`, every count tagged with its outcome.

Bounded to seconds: few examples, small inputs, no deadline (the sandbox is real HTTP).
"""

from __future__ import annotations

import dataclasses
import gzip
import io
import json
import logging
import re
import signal
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from target_carecycle.sandbox import SandboxConfig, running_sandbox
from target_carecycle.sandbox.samples import phone_for
from target_carecycle.target import TargetCareCycle

SECRET_KEY = "cc_fuzz_secret_key_0123456789abcdef"
STREAMS = ("crm", "forms")
ID_POOL = 6
MERGED = re.compile(r"Merged: stream=(\S+) position=(\d+)")

record_op = st.tuples(
    st.just("record"),
    st.sampled_from(STREAMS),
    st.integers(0, ID_POOL - 1),
    st.sampled_from(["ok", "ok", "ok", "invalid", "unknown_source"]),
)
odd_op = st.tuples(st.just("odd"), st.sampled_from(STREAMS), st.sampled_from([None, [1], "x", 7]))
schema_op = st.tuples(st.just("schema"), st.sampled_from(STREAMS))
state_op = st.tuples(st.just("state"))
batch_op = st.tuples(
    st.just("batch"),
    st.sampled_from(STREAMS),
    st.lists(
        st.tuples(st.integers(0, ID_POOL - 1), st.sampled_from(["ok", "ok", "invalid"])),
        max_size=10,
    ),
    st.booleans(),
)
operations = st.lists(
    st.one_of(record_op, record_op, record_op, odd_op, schema_op, state_op, batch_op),
    min_size=4,
    max_size=40,
)
faults = st.sampled_from([None, "500", "drop", "429"])


@dataclass
class Scenario:
    """The Singer lines of one example and what the checks need to know about them."""

    lines: list[str] = field(default_factory=list)
    # per stream, the record at each position (1-based): (global order, externalId, version)
    records: dict[str, list[tuple[int, str | None, str | None]]] = field(default_factory=dict)
    personal: set[str] = field(default_factory=set)
    # STATE values sent, with the records received per stream before each
    states: list[tuple[dict[str, Any], dict[str, int]]] = field(default_factory=list)


def build(ops: list[tuple[Any, ...]], tmp: Path) -> Scenario:
    """Turn the drawn operations into Singer lines (and batch files under `tmp`)."""
    scenario = Scenario()
    columns = {stream: 0 for stream in STREAMS}
    order = 0

    def schema(stream: str) -> None:
        properties = {
            name: {"type": ["string", "null"]}
            for name in ("externalId", "phoneNumber", "postalCode", "firstName", "language")
        }
        properties |= {f"extra{n}": {"type": ["string", "null"]} for n in range(columns[stream])}
        properties["sourceId"] = {"type": ["string", "null"]}
        message = {
            "type": "SCHEMA",
            "stream": stream,
            "schema": {"type": "object", "properties": properties},
            "key_properties": ["externalId"],
        }
        scenario.lines.append(json.dumps(message))

    def lead(stream: str, index: int, kind: str) -> dict[str, Any]:
        nonlocal order
        order += 1
        version = f"v{order}"
        name = f"Qfuzz{order:04d}x"
        record: dict[str, Any] = {
            "externalId": f"lead-{index}",
            "phoneNumber": phone_for(index) if kind != "invalid" else f"+1{order:03d}",
            "postalCode": "60614",
            "firstName": name,
            "language": version,
        }
        if kind == "unknown_source":
            record["sourceId"] = "no-such-source"
        scenario.personal.update({name, phone_for(index)})
        scenario.records.setdefault(stream, []).append((order, record["externalId"], version))
        return record

    def odd(stream: str) -> None:
        nonlocal order
        order += 1
        scenario.records.setdefault(stream, []).append((order, None, None))

    for stream in STREAMS:
        schema(stream)
    batches = 0
    for op in ops:
        kind = op[0]
        if kind == "record":
            record = lead(op[1], op[2], op[3])
            scenario.lines.append(json.dumps({"type": "RECORD", "stream": op[1], "record": record}))
        elif kind == "odd":
            odd(op[1])
            scenario.lines.append(json.dumps({"type": "RECORD", "stream": op[1], "record": op[2]}))
        elif kind == "schema":
            columns[op[1]] += 1
            schema(op[1])
        elif kind == "state":
            value = {"bookmarks": {"position": len(scenario.states) + 1}}
            seen = {stream: len(scenario.records.get(stream, [])) for stream in STREAMS}
            scenario.states.append((value, seen))
            scenario.lines.append(json.dumps({"type": "STATE", "value": value}))
        else:
            _, stream, items, gzipped = op
            batches += 1
            records = [lead(stream, index, item_kind) for index, item_kind in items]
            data = "".join(json.dumps(r) + "\n" for r in records).encode()
            path = tmp / (f"batch-{batches}.jsonl" + (".gz" if gzipped else ""))
            path.write_bytes(gzip.compress(data) if gzipped else data)
            encoding = {"format": "jsonl", "compression": "gzip" if gzipped else None}
            message = {
                "type": "BATCH",
                "stream": stream,
                "encoding": encoding,
                "manifest": [path.as_uri()],
            }
            scenario.lines.append(json.dumps(message))
    return scenario


def sandbox_config(fault: str | None) -> SandboxConfig:
    base: dict[str, Any] = {"api_keys": (SECRET_KEY,), "rate_limit": 0, "latency": 0.01}
    if fault == "429":
        base.update(rate_limit=600, rate_burst=1)  # 10 requests/s; the target asks for more
    elif fault is not None:
        base.update(fault=fault, fault_every=2)
    return SandboxConfig(**base)


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str
    logs: str


@contextmanager
def captured_logs() -> Iterator[io.StringIO]:
    """Every log record at INFO and above, formatted, while the block runs."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield buffer
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        for sig, previous in handlers.items():
            signal.signal(sig, previous)


def run_target(config: dict[str, Any], lines: list[str]) -> Run:
    """One in-process run of the target on `lines` (the same `run` the executable calls)."""
    out, err = io.StringIO(), io.StringIO()
    with captured_logs() as logs, redirect_stdout(out), redirect_stderr(err):
        target = TargetCareCycle(config=config, validate_config=True)
        client = target.settings.client
        assert client is not None
        fast = dataclasses.replace(client, backoff_base=0.01, backoff_max=0.05)
        target.settings = dataclasses.replace(target.settings, client=fast)
        code = target.run(io.StringIO("".join(line + "\n" for line in lines)))
    return Run(code, out.getvalue(), err.getvalue(), logs.getvalue())


METRIC = re.compile(r"METRIC: (\{.*\})")


def check(scenario: Scenario, run: Run, sandbox, results: Path, rejects: Path) -> None:
    failed_on_policy = "the run failed on the failure policy" in run.logs
    assert run.code == 0 or (run.code == 1 and failed_on_policy), (
        run.stderr[-3000:] + run.logs[-3000:]
    )

    # 1. exactly one outcome per record
    outcome_of: dict[tuple[str, int], list[str]] = {}
    receipts = [json.loads(line) for line in results.read_text().splitlines()]
    for receipt in receipts:
        outcome_of.setdefault((receipt["stream"], receipt["position"]), []).append("succeeded")
    if rejects.exists():
        for line in rejects.read_text().splitlines():
            item = json.loads(line)
            outcome_of.setdefault((item["stream"], item["position"]), []).append(item["status"])
    for stream, position in MERGED.findall(run.logs):
        outcome_of.setdefault((stream, int(position)), []).append("merged")
    expected_keys = {
        (stream, position)
        for stream, records in scenario.records.items()
        for position in range(1, len(records) + 1)
    }
    assert set(outcome_of) == expected_keys
    assert all(len(outcomes) == 1 for outcomes in outcome_of.values()), outcome_of

    # 2. careCycle holds the last succeeded version of each lead
    last: dict[str, tuple[int, str]] = {}
    for receipt in receipts:
        order, external_id, version = scenario.records[receipt["stream"]][receipt["position"] - 1]
        assert external_id == receipt["externalId"]
        assert version is not None
        if external_id not in last or order > last[external_id][0]:
            last[external_id] = (order, version)
    held = {c["externalId"]: c["language"] for c in sandbox.customers()}
    assert held == {external_id: version for external_id, (_, version) in last.items()}

    # 3. STATE only once everything ahead of it is settled
    emitted = [json.loads(line) for line in run.stdout.splitlines() if line.strip()]
    sent = [value for value, _ in scenario.states]
    for state in emitted:
        counts = state.pop("target_carecycle")
        assert state in sent
        seen_before = scenario.states[sent.index(state)][1]
        for stream, tally in counts.items():
            assert tally["received"] >= seen_before.get(stream, 0)
            outcomes = sum(v for k, v in tally.items() if k != "received")
            assert tally["received"] == outcomes, tally
            assert tally["unsent"] == 0
        errors = sum(t["failed"] + t["rejected"] for t in counts.values())
        held = sum(t["succeeded"] + t["unchanged"] for t in counts.values())
        assert held or not errors, "a STATE left while nothing was delivered"
    if sent and run.code == 0:
        assert emitted, "the last STATE must be emitted after a clean run"
        assert emitted[-1] == sent[-1]
    if run.code == 1:
        # Under 100 records the policy judges a run only at its end, where it emits no STATE;
        # mid-run STATEs come only from the SDK's 5-minute drain, which these runs never reach.
        assert emitted == [], "a run the failure policy failed emitted a STATE"
    event(f"exit code {run.code}")

    # 4. no key, no personal value in any output but the reject file
    written = run.stdout + run.stderr + run.logs + results.read_text()
    assert SECRET_KEY not in written
    leaked = [value for value in scenario.personal if value in written]
    assert not leaked

    # 5. one record_count per record, tagged with its outcome
    counted: dict[str, int] = {}
    for text in METRIC.findall(run.logs):
        point = json.loads(text)
        if point["metric"] == "record_count":
            assert "outcome" in point["tags"], point
            stream = point["tags"]["stream"]
            counted[stream] = counted.get(stream, 0) + point["value"]
    received = {s: len(r) for s, r in scenario.records.items() if r}
    assert {s: n for s, n in counted.items() if n} == received


def fuzz_once(
    ops: list[tuple[Any, ...]], fault: str | None, batch_size: int, concurrency: int, tmp: Path
):
    for old in tmp.glob("*"):
        old.unlink()
    scenario = build(ops, tmp)
    results, rejects = tmp / "results.jsonl", tmp / "rejects.jsonl"
    with running_sandbox(sandbox_config(fault)) as sandbox:
        config = {
            "api_url": sandbox.url,
            "api_key": SECRET_KEY,
            "max_requests_per_minute": 60_000,
            "max_concurrent_requests": concurrency,
            "batch_size_rows": batch_size,
            "request_timeout": 10,
            "max_retries": 20,
            "results_file": str(results),
            "reject_file": str(rejects),
        }
        run = run_target(config, scenario.lines)
        check(scenario, run, sandbox, results, rejects)
        stats = sandbox.stats()
        statuses = [*sorted(stats["requests"]), *(["dropped"] if stats["dropped"] else [])]
        event(f"fault {fault}: careCycle answered {', '.join(statuses) or 'nothing'}")


# A newer version arriving in another sink (a sink retired by a SCHEMA change, or another
# stream) while the older one is pending: the case the SDK's drain order got wrong.
SCHEMA_CHANGE_WITH_PENDING = [
    ("record", "crm", 0, "ok"),
    ("schema", "crm"),
    ("record", "crm", 0, "ok"),
    ("record", "crm", 1, "ok"),
]
OTHER_STREAM_WITH_PENDING = [
    ("record", "crm", 0, "ok"),
    ("batch", "forms", [(0, "ok"), (1, "ok")], True),
    ("state",),
]
NEWER_VERSION_REFUSED_BY_CARECYCLE = [
    ("record", "crm", 0, "ok"),
    ("record", "crm", 0, "unknown_source"),
    ("record", "forms", 1, "ok"),
    ("odd", "forms", None),
]


@settings(
    max_examples=30,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    ops=operations,
    fault=faults,
    batch_size=st.integers(1, 5),
    concurrency=st.integers(1, 4),
)
@example(ops=SCHEMA_CHANGE_WITH_PENDING, fault=None, batch_size=2, concurrency=2)
@example(ops=OTHER_STREAM_WITH_PENDING, fault="500", batch_size=2, concurrency=4)
@example(ops=NEWER_VERSION_REFUSED_BY_CARECYCLE, fault="drop", batch_size=1, concurrency=2)
def test_random_singer_streams_keep_every_promise(ops, fault, batch_size, concurrency, tmp_path):
    fuzz_once(ops, fault, batch_size, concurrency, tmp_path)
