"""The report's renderers (text, JSON, CSV, HTML) and its repeated-refusals rule, by tables and
Hypothesis properties. The browser test of the HTML page is in test_report_browser.py.
"""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import timedelta
from html.parser import HTMLParser
from pathlib import Path

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from report_data import (
    T0,
    counts,
    refusal,
    refused_records,
    run,
    run_records,
    stream,
)

from target_carecycle import outcomes, report
from target_carecycle.report import (
    CONTENT_SECURITY_POLICY,
    COUNT_KEYS,
    HTML_TABLE_LIMIT,
    OUTCOME_COLOURS,
    RefusedRecord,
    ReportDataError,
    RunAccount,
    RunRecord,
    StreamHistory,
    clean_text,
    display_width,
    render_csv,
    render_html,
    render_json,
    render_text,
    repeated_refusals,
)

SCHEMA = json.loads((Path(__file__).parents[1] / "docs" / "report.schema.json").read_text())
UNSAFE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")

# -- The model ------------------------------------------------------------------------------------


def test_the_counts_are_the_state_key_counts_in_the_same_order():
    assert ("received", *outcomes.OUTCOMES) == COUNT_KEYS
    assert list(outcomes.StreamTally().as_state()) == list(COUNT_KEYS)


def test_a_runs_state_metrics_make_stream_histories_as_they_are():
    tally = outcomes.RunOutcomes()
    for _ in range(3):
        tally.received("s")
    tally.succeeded("s", "s:1", "id-1")
    tally.rejected("s", 2, "s:2", "phoneNumber: missing", {})
    tally.unchanged("s", 1)
    history = StreamHistory(tally.state_metrics()["s"], reasons=tally.tally("s").reasons)
    assert history.refused == 1 and dict(history.reasons) == {"phoneNumber: missing": 1}


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: StreamHistory({"received": 1}), "exactly the keys"),
        (lambda: StreamHistory({**counts(), "extra": 1}), "exactly the keys"),
        (lambda: StreamHistory(counts(received=0, failed=-1)), "counts[failed]"),
        (lambda: StreamHistory(counts(failed=True)), "counts[failed]"),
        (lambda: StreamHistory(counts(), requests=-1), "requests"),
        (lambda: StreamHistory(counts(), reasons={"x": 0}), "at least 1"),
        (lambda: replace(run(0), status="done"), "status must be one of"),
        (lambda: replace(run(0), ended_at=None), "ended_at is None exactly"),
        (lambda: replace(run(0, status="unfinished"), ended_at=T0), "ended_at is None exactly"),
        (lambda: replace(run(0), started_at=T0.replace(tzinfo=None)), "time zone"),
        (lambda: refusal("r", "x", outcome="succeeded"), "failed or rejected"),
    ],
)
def test_data_that_breaks_the_model_is_refused_with_a_line_naming_the_field(build, message):
    with pytest.raises(ReportDataError, match=re.escape(message)):
        build()


def test_run_totals_add_up_streams():
    record = run(
        0,
        {
            "a": stream(succeeded=5, failed=1, requests=2, rate_limited=1, reasons={"x": 1}),
            "b": stream(unchanged=7, rejected=2, requests=1, retries=3, reasons={"x": 1, "y": 1}),
        },
    )
    assert record.totals() == counts(succeeded=5, failed=1, unchanged=7, rejected=2)
    assert (record.requests, record.rate_limited, record.retries) == (3, 1, 3)
    assert record.reasons() == {"x": 2, "y": 1}
    assert record.duration_seconds == 61


# -- Repeated refusals ----------------------------------------------------------------------------

# Each row: the runs oldest first as (status, sync_log, externalIds refused), then the
# expected {externalId: runs in a row} with min_runs=2.
STREAK_CASES = [
    pytest.param([("succeeded", True, "a")] * 3, {"a": 3}, id="every-run"),
    pytest.param([("succeeded", True, "a"), ("succeeded", True, "")], {}, id="fixed-since"),
    pytest.param(
        [("succeeded", True, "a"), ("succeeded", True, "a"), ("succeeded", True, "")],
        {},
        id="a-clean-run-ends-it",
    ),
    pytest.param(
        [("succeeded", True, "a"), ("succeeded", True, "a"), ("failed", True, "")],
        {"a": 2},
        id="a-failed-run-says-nothing",
    ),
    pytest.param(
        [("succeeded", True, "a"), ("interrupted", True, "a"), ("unfinished", True, "")],
        {"a": 2},
        id="interrupted-counts-unfinished-says-nothing",
    ),
    pytest.param(
        [("succeeded", True, "a"), ("succeeded", True, ""), ("succeeded", True, "a")],
        {},
        id="not-in-a-row",
    ),
    pytest.param(
        [("succeeded", True, "a"), ("succeeded", False, ""), ("succeeded", True, "a")],
        {"a": 2},
        id="a-run-without-sync-log-says-nothing",
    ),
    pytest.param(
        [("succeeded", True, "b"), ("succeeded", True, "ab"), ("succeeded", True, "ab")],
        {"a": 2, "b": 3},
        id="two-ids",
    ),
    pytest.param(
        [("succeeded", True, "b"), ("succeeded", True, "b"), ("succeeded", True, "a")],
        {},
        id="one-run-is-not-several",
    ),
    pytest.param([], {}, id="no-runs"),
]


StreakRow = tuple[str, bool, Iterable[str]]


def _streak_input(rows: Sequence[StreakRow]) -> tuple[list[RunRecord], list[RefusedRecord]]:
    runs: list[RunRecord] = []
    refused: list[RefusedRecord] = []
    for index, (status, sync_log, ids) in enumerate(rows):
        runs.append(run(index, status=status, sync_log=sync_log))
        at = T0 + timedelta(days=index, seconds=30)
        refused.extend(refusal(f"run-{index}", eid, at=at) for eid in ids)
    return runs, refused


@pytest.mark.parametrize(("rows", "expected"), STREAK_CASES)
def test_repeated_refusals(rows, expected):
    runs, refused = _streak_input(rows)
    found = repeated_refusals(runs, refused)
    assert {item.external_id: item.runs for item in found} == expected


def test_repeated_refusals_name_the_latest_stream_reason_and_the_streaks_first_time():
    runs = [run(i) for i in range(3)]
    refused = [
        refusal("run-0", "x", "crm", "rejected", "phoneNumber: missing", T0),
        refusal("run-1", "x", "crm", "failed", "careCycle: Source not found", T0 + timedelta(1)),
        refusal("run-2", "x", "web", "failed", "careCycle: duplicate", T0 + timedelta(2)),
        refusal("run-2", None, "web", "rejected", "externalId: missing", T0 + timedelta(2)),
        refusal("run-2", "y", "web", "rejected", "a", T0 + timedelta(2)),
        refusal("run-1", "y", "web", "rejected", "a", T0 + timedelta(1)),
    ]
    found = repeated_refusals(runs, refused)
    assert [(r.external_id, r.runs) for r in found] == [("x", 3), ("y", 2)]
    first = found[0]
    assert (first.stream, first.last_outcome, first.last_reason) == (
        "web",
        "failed",
        "careCycle: duplicate",
    )
    assert (first.first_at, first.last_at) == (T0, T0 + timedelta(2))
    assert [r.external_id for r in repeated_refusals(runs, refused, min_runs=1)] == ["x", "y"]


def _reference_streaks(
    runs: list[RunRecord], refused: list[RefusedRecord], min_runs: int
) -> dict[str, int]:
    """The rule as written in repeated_refusals' docstring, one externalId at a time."""
    logged = sorted((r for r in runs if r.sync_log), key=lambda r: (r.started_at, r.run_id))
    ids = {r.external_id for r in refused if r.external_id is not None}
    result = {}
    for eid in ids:
        streak = 0
        for r in reversed(logged):
            if any(x.run_id == r.run_id and x.external_id == eid for x in refused):
                streak += 1
            elif r.status == "succeeded":
                break
        if streak >= min_runs:
            result[eid] = streak
    return result


@given(
    st.lists(
        st.tuples(
            st.sampled_from(report.RUN_STATUSES),
            st.booleans(),
            st.sets(st.sampled_from("abcd")),
        ),
        max_size=8,
    ),
    st.integers(1, 3),
)
def test_repeated_refusals_follow_the_rule_for_any_history(rows, min_runs):
    runs, refused = _streak_input(rows)
    found = repeated_refusals(runs, refused, min_runs)
    assert {r.external_id: r.runs for r in found} == _reference_streaks(runs, refused, min_runs)


# -- Text -----------------------------------------------------------------------------------------


def test_text_table_example():
    runs = [
        run(0, {"leads": stream(succeeded=120, requests=1)}),
        run(
            1,
            {
                "crm": stream(succeeded=3, unchanged=100, failed=2, requests=1, rate_limited=2),
                "web": stream(rejected=1, merged=1, skipped=1),
            },
            status="failed",
            reason="careCycle answered 503 five times in a row",
        ),
        run(2, {"leads": stream(received=50, succeeded=10)}, status="unfinished"),
    ]
    expected = """\
target-carecycle: the last 2 of 3 runs (times in UTC)
started            took status      received   sent unchanged failed rejected  other requests   429s
2026-05-03 02:00      - unfinished        50     10         0      0        0      0        0      0
2026-05-02 02:00  1m01s failed           108      3       100      2        1      2        1      2
  crm                                    105      3       100      2        0      0        1      2
  web                                      3      0         0      0        1      2        0      0
  reason: careCycle answered 503 five times in a row
sent = accepted by careCycle; other = merged + skipped + unsent; 429s = rate limited
"""
    assert render_text(runs, n=2) == expected


def test_text_with_no_runs_says_so():
    assert render_text([], 10) == "No runs recorded yet.\n"


def test_text_shows_huge_counts_and_long_names_within_100_columns():
    huge = stream(received=123_456_789_012, succeeded=9_876_543_210, requests=10**8)
    long_name = "stream_" + "x" * 200
    text = render_text([run(0, {long_name: huge, "名前" * 40: huge})], 5)
    assert max(display_width(line) for line in text.splitlines()) <= 100
    assert "123G" in text and "9.9G" in text and "…" in text


def test_text_escapes_control_and_bidi_characters_from_stream_names_and_reasons():
    name = "le\x1b[2Jads\u202e"
    text = render_text([run(0, {name: stream(), "b": stream()}, status="failed", reason="x\ry")], 5)
    assert "le\\x1b[2Jads\\u202e" in text and "reason: x\\x0dy" in text
    assert not UNSAFE.search(text)


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(run_records(), max_size=4), st.integers(0, 6))
def test_text_never_holds_a_control_character_and_fits_100_columns(runs, n):
    text = render_text(runs, n)
    assert not UNSAFE.search(text)
    assert all(display_width(line) <= 100 for line in text.splitlines())


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("plain", "plain"),
        ("tab\there", "tab\\x09here"),
        ("nul\x00", "nul\\x00"),
        ("c1\x85", "c1\\x85"),
        ("zero\u200bwidth", "zero\\u200bwidth"),
        ("line\u2028sep", "line\\u2028sep"),
        ("émoji 🎉 名前", "émoji 🎉 名前"),
    ],
)
def test_clean_text(raw, shown):
    assert clean_text(raw) == shown


# -- JSON -----------------------------------------------------------------------------------------


def test_json_example_is_newest_first_in_a_fixed_key_order_and_valid():
    runs = [
        run(0, {"b": stream(succeeded=2, requests=1), "a": stream(rejected=1, reasons={"r": 1})}),
        run(1, {"a": stream(failed=3, requests=2, rate_limited=1, retries=1, reasons={"x": 3})}),
    ]
    document = json.loads(render_json(runs))
    jsonschema.validate(document, SCHEMA)
    assert [r["run_id"] for r in document["runs"]] == ["run-1", "run-0"]
    newest = document["runs"][0]
    assert list(newest) == list(SCHEMA["$defs"]["run"]["required"])
    assert newest["streams"] == {"a": counts(failed=3)}
    assert list(newest["streams"]["a"]) == list(COUNT_KEYS)
    assert (newest["requests"], newest["rate_limited"], newest["retries"]) == (2, 1, 1)
    assert newest["started_at"] == "2026-05-02T02:00:00Z"
    assert newest["ended_at"] == "2026-05-02T02:01:01Z" and newest["duration_seconds"] == 61
    assert list(document["runs"][1]["streams"]) == ["a", "b"]
    assert document["runs"][1]["reasons"] == {"a": {"r": 1}, "b": {}}


def test_json_shows_an_unfinished_run_with_no_end():
    document = json.loads(render_json([run(0, status="unfinished")]))
    jsonschema.validate(document, SCHEMA)
    assert document["runs"][0]["ended_at"] is None
    assert document["runs"][0]["duration_seconds"] is None


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://api.carecycle.ai", "https://api.carecycle.ai"),
        ("http://127.0.0.1:8123/", "http://127.0.0.1:8123/"),
        ("https://user:s3cret@api.example/v2?token=s3cret#s3cret", "https://api.example/v2"),
        ("http://[::1]:9/", "http://[::1]:9/"),
        ("http://[::1", "(unreadable URL)"),
    ],
)
def test_the_account_url_never_carries_user_info_or_a_query(url, shown):
    record = replace(run(0), account=RunAccount(url, "ab"))
    assert json.loads(render_json([record]))["runs"][0]["account"]["api_url"] == shown
    page = render_html([record])
    assert "s3cret" not in page and "s3cret" not in render_text([record])


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(run_records(), max_size=4))
def test_json_round_trips_to_the_input_counts(runs):
    written = render_json(runs)
    assert written.isascii()
    document = json.loads(written)
    jsonschema.validate(document, SCHEMA)
    ordered = report.newest_first(runs)
    assert len(document["runs"]) == len(ordered)
    for shown, given_run in zip(document["runs"], ordered, strict=True):
        assert shown["run_id"] == given_run.run_id
        assert shown["streams"] == {n: dict(s.counts) for n, s in given_run.streams.items()}
        assert shown["reasons"] == {n: dict(s.reasons) for n, s in given_run.streams.items()}
        assert shown["requests"] == sum(s.requests for s in given_run.streams.values())
        assert shown["rate_limited"] == sum(s.rate_limited for s in given_run.streams.values())


# -- CSV ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cell", "written"),
    [
        ("crm-1", "crm-1"),
        ("=1+1", "'=1+1"),
        ("+31", "'+31"),
        ("-5", "'-5"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("a=b", "a=b"),
        ("'quoted", "'quoted"),
        ("nul\x00", "nul\ufffd"),
        ("\x00=1", "\ufffd=1"),
        ("", ""),
    ],
)
def test_csv_defuses_cells_a_spreadsheet_would_run(cell, written):
    text = render_csv([refusal("r", cell, cell or "s", "rejected", cell or "why")])
    rows = list(csv.reader(io.StringIO(text, newline="")))
    assert rows[0] == ["externalId", "stream", "outcome", "reason"]
    assert rows[1] == [written, written or "s", "rejected", written or "why"]


def test_csv_example():
    refused = [
        refusal("r", "crm-1", "crm", "failed", "careCycle: Source not found"),
        refusal("r", None, "web", "rejected", "externalId: missing"),
        refusal("r", 'say "hi", then\nleave', "web", "rejected", "phoneNumber: bad, really"),
    ]
    assert render_csv(refused) == (
        "externalId,stream,outcome,reason\r\n"
        "crm-1,crm,failed,careCycle: Source not found\r\n"
        ",web,rejected,externalId: missing\r\n"
        '"say ""hi"", then\nleave",web,rejected,"phoneNumber: bad, really"\r\n'
    )


@given(st.lists(refused_records, max_size=6))
def test_csv_cells_never_start_with_a_formula_character_and_keep_their_text(refused):
    rows = list(csv.reader(io.StringIO(render_csv(refused), newline="")))
    assert rows[0] == list(report.CSV_HEADER) and len(rows) == len(refused) + 1
    for row, record in zip(rows[1:], refused, strict=True):
        assert not any(cell.startswith(report.FORMULA_STARTS) for cell in row)
        given_cells = [record.external_id or "", record.stream, record.outcome, record.reason]
        for cell, original in zip(row, given_cells, strict=True):
            text = original.replace("\x00", "\ufffd")  # NUL: see defuse_csv_cell
            assert cell == text or cell == "'" + text


# -- HTML -----------------------------------------------------------------------------------------

ALLOWED_TAGS = {
    "html", "head", "meta", "title", "style", "body", "h1", "h2", "h3", "p", "div", "span", "b",
    "ul", "li", "table", "thead", "tbody", "tr", "th", "td", "code", "footer", "svg", "g", "rect",
    "line", "text",
}  # fmt: skip
URL_ATTRIBUTES = {"src", "href", "xlink:href", "action", "formaction", "srcset", "poster", "data"}


class _Page(HTMLParser):
    """Tags, attributes and text of a page, as a browser's parser splits them."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_startendtag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def _parse(page: str) -> _Page:
    parsed = _Page()
    parsed.feed(page)
    parsed.close()
    return parsed


def _assert_inert(page: str) -> _Page:
    """Nothing in the page can load or run anything."""
    parsed = _parse(page)
    assert "<script" not in page.lower()
    assert "url(" not in page.lower()
    for tag, attrs in parsed.tags:
        assert tag in ALLOWED_TAGS, tag
        assert not URL_ATTRIBUTES & set(attrs), (tag, attrs)
        assert not any(name.startswith("on") for name in attrs), (tag, attrs)
    metas = [attrs for tag, attrs in parsed.tags if tag == "meta"]
    assert metas[0] == {"charset": "utf-8"}
    assert metas[1] == {"http-equiv": "Content-Security-Policy", "content": CONTENT_SECURITY_POLICY}
    return parsed


def test_the_page_has_a_strict_csp_and_nothing_that_loads_or_runs():
    assert "default-src 'none'; style-src 'unsafe-inline'; img-src data:" in CONTENT_SECURITY_POLICY
    runs = [
        run(i, {"leads": stream(succeeded=i + 1, failed=1, reasons={"x": 1})}) for i in range(3)
    ]
    _assert_inert(render_html(runs, [refusal("run-2", "a")], repeated_refusals(runs, [])))


def test_hostile_names_reasons_and_ids_are_text_on_the_page():
    evil = '<script>alert(1)</script>"><img src=http://127.0.0.1:9/x onerror=alert(1)>'
    runs = [
        run(0, {evil: stream(failed=1, reasons={evil: 1})}, status="failed", reason=evil),
        run(1, {evil: stream(failed=1, reasons={evil: 1})}),
    ]
    refused = [refusal("run-1", evil, evil, "failed", evil, T0)]
    repeated = repeated_refusals(runs, [*refused, refusal("run-0", evil, evil)])
    assert len(repeated) == 1
    parsed = _assert_inert(render_html(runs, refused, repeated))
    assert sum(evil in chunk for chunk in parsed.text) >= 5


@settings(max_examples=40, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(run_records(), max_size=3), st.lists(refused_records, max_size=4))
def test_html_never_holds_markup_or_a_control_character_from_input(runs, refused):
    page = render_html(runs, refused, repeated_refusals(runs, refused, min_runs=1))
    _assert_inert(page)
    assert not UNSAFE.search(page.replace("\n", ""))


def test_empty_history_page():
    page = render_html([])
    _assert_inert(page)
    assert "No runs recorded yet." in page


def test_the_page_says_when_the_sync_log_is_off_or_nothing_was_refused():
    runs = [run(0)]
    off = render_html(runs, None, None)
    assert off.count("sync_log: true") == 2
    nothing = render_html(runs, [], [])
    assert "No record was refused in the latest run." in nothing
    assert "No externalId was refused in two or more runs in a row." in nothing


def test_a_huge_refused_list_is_capped_on_the_page_and_says_where_the_rest_is():
    rows = 100_000
    refused = [refusal("run-0", f"crm-{i}", reason="phoneNumber: not valid") for i in range(rows)]
    page = render_html([run(0, {"leads": stream(rejected=rows)})], refused, [])
    assert page.count('<td class="id">crm-') == HTML_TABLE_LIMIT
    assert "crm-999</td>" in page and "crm-1000</td>" not in page
    assert "Showing the first 1,000 of 100,000 refused records: 99,000 more in the CSV" in page
    assert len(page.encode()) < 1_000_000


def test_a_hundred_runs_of_five_streams_make_a_page_of_reasonable_size():
    def streams(i: int) -> dict[str, StreamHistory]:
        return {
            f"s{k}": stream(succeeded=i * k, unchanged=1000, failed=k + 1, reasons={f"r{k}": k + 1})
            for k in range(5)
        }

    runs = [run(i, streams(i)) for i in range(100)]
    page = render_html(runs, [], [])
    _assert_inert(page)
    assert page.count("<svg") == 5 + 2
    assert len(page.encode()) < 1_500_000


def _bars(svg: str) -> dict[str, float]:
    """Height of each coloured rect of a chart with one run, by colour."""
    heights: dict[str, float] = {}
    for match in re.finditer(r'<rect [^>]*height="([\d.]+)" fill="(#[0-9a-f]{6})"', svg):
        heights[match.group(2)] = heights.get(match.group(2), 0) + float(match.group(1))
    return heights


def test_outcome_bars_are_stacked_in_proportion_to_the_counts():
    history = stream(succeeded=300, unchanged=500, failed=100, rejected=50, merged=50)
    page = render_html([run(0, {"leads": history})])
    chart = page[page.index("<h3>Stream leads</h3>") :]
    chart = chart[: chart.index("</svg>")]
    heights = _bars(chart)
    unit = heights[OUTCOME_COLOURS["succeeded"]] / 300
    for key in ("unchanged", "failed", "rejected", "merged"):
        assert heights[OUTCOME_COLOURS[key]] == pytest.approx(history.counts[key] * unit, abs=0.2)
    assert OUTCOME_COLOURS["skipped"] not in heights  # zero: no bar


def test_reasons_chart_shows_the_refused_records_no_reason_was_kept_for():
    history = stream(failed=10, rejected=5, reasons={"a": 6, "b": 4})
    page = render_html([run(0, {"leads": history})])
    start = page.index("Refused records per run")
    heights = _bars(page[start : page.index("</svg>", start)])
    unit = heights[report.REASON_COLOURS[0]] / 6
    assert heights[report.REASON_COLOURS[1]] == pytest.approx(4 * unit, abs=0.2)
    assert heights[report.UNRECORDED_REASONS_COLOUR] == pytest.approx(5 * unit, abs=0.2)


def test_the_sample_script_writes_an_inert_page(tmp_path):
    page = tmp_path / "sample.html"
    script = Path(__file__).parents[1] / "scripts" / "report_sample.py"
    subprocess.run([sys.executable, str(script), "--out", str(page)], check=True, timeout=120)
    parsed = _assert_inert(page.read_text(encoding="utf-8"))
    text = "".join(parsed.text)
    assert "30 runs from 2026-04-01" in text and "crm-4700" in text


# -- Unknown counts and the outcome registry ----------------------------------------------------


def test_an_unfinished_run_without_counts_shows_dashes_never_zeros():
    killed = run(2, {}, status="unfinished")
    text = render_text([killed, run(1)])
    row = next(line for line in text.splitlines() if "unfinished" in line)
    numbers = row.split("unfinished", 1)[1].split()
    assert numbers and set(numbers) == {"-"}, row
    assert "- = not known" in text
    page = render_html([killed, run(1)])
    assert '<td class="n">0</td>' not in page.split("<h2>Runs</h2>", 1)[1].split("</tr>", 2)[1]
    assert "- = not known" not in render_text([run(1)])  # no note without such a run


def test_every_outcome_of_the_registry_is_shown_and_only_those():
    registry = {outcome.name for outcome in outcomes.OUTCOME_REGISTRY}
    assert set(OUTCOME_COLOURS) == registry
    assert set(report.OUTCOME_LABELS) == registry
    assert set(report.SHOWN_OUTCOMES) == registry and len(report.SHOWN_OUTCOMES) == len(registry)
    assert set(report.REFUSED_OUTCOMES) == {o.name for o in outcomes.OUTCOME_REGISTRY if o.refused}
    # every outcome's count reaches the text table: its own column or "other"
    for name in registry:
        history = StreamHistory({**dict.fromkeys(COUNT_KEYS, 0), name: 4321})
        text = render_text([run(1, {"leads": history})])
        assert "4321" in text.splitlines()[2], name
