"""Builders and Hypothesis strategies for the report's input model (runs, refused records)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta, timezone

from hypothesis import strategies as st

from target_carecycle.report import (
    COUNT_KEYS,
    REFUSED_OUTCOMES,
    RUN_STATUSES,
    RefusedRecord,
    RunAccount,
    RunRecord,
    StreamHistory,
)

ACCOUNT = RunAccount("https://api.carecycle.ai", "0123456789abcdef")
T0 = datetime(2026, 5, 1, 2, 0, tzinfo=timezone.utc)


def counts(**given: int) -> dict[str, int]:
    """Counts with every key; `received` is the sum of the others unless given."""
    found = {key: given.get(key, 0) for key in COUNT_KEYS}
    if "received" not in given:
        found["received"] = sum(found[key] for key in COUNT_KEYS[1:])
    return found


def stream(
    requests: int = 0,
    rate_limited: int = 0,
    retries: int = 0,
    reasons: Mapping[str, int] | None = None,
    **given: int,
) -> StreamHistory:
    """One stream's history from its counts (keyword per outcome)."""
    return StreamHistory(counts(**given), requests, rate_limited, retries, dict(reasons or {}))


def run(
    index: int,
    streams: Mapping[str, StreamHistory] | None = None,
    *,
    status: str = "succeeded",
    reason: str | None = None,
    sync_log: bool = True,
    run_id: str | None = None,
) -> RunRecord:
    """The `index`th nightly run (a day apart from T0), taking a minute unless unfinished."""
    started = T0 + timedelta(days=index)
    return RunRecord(
        run_id=run_id or f"run-{index}",
        started_at=started,
        ended_at=None if status == "unfinished" else started + timedelta(seconds=61),
        status=status,
        reason=reason,
        target_version="0.4.0",
        account=ACCOUNT,
        streams=dict(streams if streams is not None else {"leads": stream(succeeded=1)}),
        sync_log=sync_log,
    )


def refusal(
    run_id: str,
    external_id: str | None,
    stream_name: str = "leads",
    outcome: str = "failed",
    reason: str = "careCycle: Source not found",
    at: datetime = T0,
) -> RefusedRecord:
    """One refused record of the sync log."""
    return RefusedRecord(run_id, stream_name, external_id, outcome, reason, at)


# -- Hypothesis -----------------------------------------------------------------------------------

# Any text, control, format and line-separator characters, markup and CSV formula starts
# included: these reach the report as stream names, reasons and externalIds.
hostile_text = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        [
            "<script>alert(1)</script>",
            '"><img src=http://127.0.0.1:9/x onerror=alert(1)>',
            '=HYPERLINK("http://127.0.0.1:9/")',
            "\x1b[31mred\x1b[0m",
            "a\u202eb\u2028c\x00d\x7fe\x85f",
            "</style><script>",
            "-1",
            "@SUM(A1)",
            "\tx",
            "\rx",
            "名前の長いストリーム名前の長いストリーム名前の長いストリーム",
        ]
    ),
)
count = st.integers(min_value=0, max_value=10**9)


@st.composite
def stream_histories(draw: st.DrawFn) -> StreamHistory:
    """A stream's history with any counts and reasons."""
    found = {key: draw(count) for key in COUNT_KEYS}
    reasons = draw(st.dictionaries(hostile_text, st.integers(1, 10**6), max_size=4))
    return StreamHistory(found, draw(count), draw(count), draw(count), reasons)


@st.composite
def run_records(draw: st.DrawFn) -> RunRecord:
    """A run at any time this century with any statuses, streams and reasons."""
    started = draw(
        st.datetimes(
            min_value=datetime(2001, 1, 1),
            max_value=datetime(2099, 1, 1),
            timezones=st.just(timezone.utc),
        )
    )
    status = draw(st.sampled_from(RUN_STATUSES))
    took = draw(st.integers(0, 10**6))
    return RunRecord(
        run_id=draw(hostile_text),
        started_at=started,
        ended_at=None if status == "unfinished" else started + timedelta(seconds=took),
        status=status,
        reason=draw(st.none() | hostile_text),
        target_version=draw(hostile_text),
        account=RunAccount(draw(hostile_text), draw(hostile_text)),
        streams=draw(st.dictionaries(hostile_text, stream_histories(), max_size=4)),
        sync_log=draw(st.booleans()),
    )


refused_records = st.builds(
    RefusedRecord,
    run_id=hostile_text,
    stream=hostile_text,
    external_id=st.none() | hostile_text,
    outcome=st.sampled_from(REFUSED_OUTCOMES),
    reason=hostile_text,
    at=st.just(T0),
)
