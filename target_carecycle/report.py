r"""The sync history report: past runs and refused records as text, JSON, CSV and one HTML page.

Pure functions over plain data (no store, Singer, HTTP or logging), so every format is tested by
tables and properties, and the store side only has to fill the data classes below.

The report only ever receives counts, reason texts and externalIds: never a lead's other fields
and never a key (an account is its API URL and the key's SHA-256 fingerprint). Everything taken
from the input (stream names, reasons, externalIds, run ids) is input data, so every renderer
escapes it for its medium: control and format characters become `\xNN`/`\uNNNN` in text and
HTML, HTML is escaped, CSV cells that a spreadsheet would run as a formula are defused.
"""

from __future__ import annotations

import csv
import html
import io
import json
import math
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlsplit

from target_carecycle import outcomes as _outcomes

# Every outcome the report shows comes from outcomes.OUTCOME_REGISTRY, read once when this
# module is imported: a new outcome there is a count key, a column or part of "other", a
# chart series (its registry label, a default colour) and a run table column here.
_REGISTRY: tuple[_outcomes.Outcome, ...] = tuple(_outcomes.OUTCOME_REGISTRY)
# The counts of one stream in one run: the keys of the state's `target_carecycle` key.
COUNT_KEYS: tuple[str, ...] = ("received", *(outcome.name for outcome in _REGISTRY))
RUN_STATUSES = ("succeeded", "failed", "interrupted", "unfinished")
REFUSED_OUTCOMES: tuple[str, ...] = tuple(o.name for o in _REGISTRY if o.refused)
# The order the report shows outcomes in: delivered ones, refused ones, then the rest.
DELIVERED_OUTCOMES: tuple[str, ...] = tuple(o.name for o in _REGISTRY if o.delivered)
OTHER_OUTCOMES: tuple[str, ...] = tuple(
    o.name for o in _REGISTRY if not o.delivered and not o.refused
)
SHOWN_OUTCOMES: tuple[str, ...] = (*DELIVERED_OUTCOMES, *REFUSED_OUTCOMES, *OTHER_OUTCOMES)
# The HTML page lists at most this many refused records (and repeated refusals); the CSV has all.
HTML_TABLE_LIMIT = 1000
TEXT_WIDTH = 100
# The Content-Security-Policy of the HTML page: nothing may be loaded, nothing may run.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
    "base-uri 'none'; form-action 'none'"
)
# A spreadsheet runs a cell starting with one of these as a formula (OWASP "CSV injection").
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


class ReportDataError(ValueError):
    """Data handed to the report breaks the model (a bug on the caller's side)."""


@dataclass(frozen=True)
class RunAccount:
    """The careCycle account a run sent to: the API URL and the key's SHA-256 fingerprint.

    `key_fingerprint` is what the store keeps (the first 16 hex digits); the key itself never
    reaches the report.
    """

    api_url: str
    key_fingerprint: str


@dataclass(frozen=True)
class StreamHistory:
    """What one run did with one stream.

    `counts` has exactly the keys of COUNT_KEYS (the state's `target_carecycle` counts);
    `reasons` is the run's top reasons for failed and rejected records (reason text -> count,
    possibly fewer than failed + rejected when only the top few are kept).
    """

    counts: Mapping[str, int]
    requests: int = 0
    rate_limited: int = 0
    retries: int = 0
    reasons: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if set(self.counts) != set(COUNT_KEYS):
            raise ReportDataError(f"stream counts need exactly the keys {', '.join(COUNT_KEYS)}")
        for name, value in self.counts.items():
            _check_count(f"counts[{name}]", value)
        for name in ("requests", "rate_limited", "retries"):
            _check_count(name, getattr(self, name))
        for reason, value in self.reasons.items():
            if not isinstance(reason, str):
                raise ReportDataError("reasons: a reason must be text")
            _check_count("reasons", value)
            if value == 0:
                raise ReportDataError("reasons: a reason's count is at least 1")

    @property
    def refused(self) -> int:
        """Records careCycle refused (failed) plus those refused before sending (rejected)."""
        return sum(self.counts[name] for name in REFUSED_OUTCOMES)


@dataclass(frozen=True)
class RunRecord:
    """One run of the target as the run history keeps it.

    `ended_at` is None exactly when `status` is "unfinished" (still running, or killed before
    it could record its end). `reason` is the failure's one line (None when there is none).
    `sync_log` says whether the run kept row-level records (its RefusedRecords are complete).
    """

    run_id: str
    started_at: datetime
    ended_at: datetime | None
    status: str
    reason: str | None
    target_version: str
    account: RunAccount
    streams: Mapping[str, StreamHistory]
    sync_log: bool = False

    def __post_init__(self) -> None:
        if self.status not in RUN_STATUSES:
            raise ReportDataError(f"status must be one of {', '.join(RUN_STATUSES)}")
        if self.started_at.tzinfo is None:
            raise ReportDataError("started_at must carry a time zone")
        if (self.ended_at is None) != (self.status == "unfinished"):
            raise ReportDataError("ended_at is None exactly when the status is unfinished")
        if self.ended_at is not None and self.ended_at.tzinfo is None:
            raise ReportDataError("ended_at must carry a time zone")

    def totals(self) -> dict[str, int]:
        """The counts summed over every stream."""
        return {key: sum(s.counts[key] for s in self.streams.values()) for key in COUNT_KEYS}

    @property
    def requests(self) -> int:
        """Upload requests of the run."""
        return sum(s.requests for s in self.streams.values())

    @property
    def rate_limited(self) -> int:
        """429 answers the run got."""
        return sum(s.rate_limited for s in self.streams.values())

    @property
    def retries(self) -> int:
        """Requests sent again after a transient failure."""
        return sum(s.retries for s in self.streams.values())

    def reasons(self) -> Counter[str]:
        """The top reasons of every stream, added up by reason text."""
        total: Counter[str] = Counter()
        for stream in self.streams.values():
            total.update(stream.reasons)
        return total

    @property
    def duration_seconds(self) -> int | None:
        """Whole seconds from start to end (None while unfinished)."""
        if self.ended_at is None:
            return None
        return max(0, int((self.ended_at - self.started_at).total_seconds()))


@dataclass(frozen=True)
class RefusedRecord:
    """A record the sync log saw failed (by careCycle) or rejected (before sending).

    `external_id` is None for a record rejected because it had none.
    """

    run_id: str
    stream: str
    external_id: str | None
    outcome: str
    reason: str
    at: datetime

    def __post_init__(self) -> None:
        if self.outcome not in REFUSED_OUTCOMES:
            raise ReportDataError("a refused record's outcome is failed or rejected")


@dataclass(frozen=True)
class RepeatedRefusal:
    """An externalId refused in `runs` runs in a row, up to the newest run that says anything."""

    external_id: str
    stream: str
    runs: int
    first_at: datetime
    last_at: datetime
    last_outcome: str
    last_reason: str


def counts_known(run: RunRecord) -> bool:
    """False for an unfinished run that recorded no counts (killed, or still running).

    The history keeps no counts for such a run: the report shows "-" for them, never 0 (it
    may well have delivered its leads).
    """
    return run.status != "unfinished" or bool(run.streams)


def _check_count(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ReportDataError(f"{name} must be a whole number of at least 0")


# -- Selection ----------------------------------------------------------------------------------


def newest_first(runs: Iterable[RunRecord]) -> list[RunRecord]:
    """Runs ordered newest first (by start time, then run id so that ties are stable)."""
    return sorted(runs, key=lambda run: (_utc(run.started_at), run.run_id), reverse=True)


def refused_in_run(refused: Iterable[RefusedRecord], run_id: str) -> list[RefusedRecord]:
    """The refused records of one run, in the order given."""
    return [record for record in refused if record.run_id == run_id]


def repeated_refusals(
    runs: Iterable[RunRecord], refused: Iterable[RefusedRecord], min_runs: int = 2
) -> list[RepeatedRefusal]:
    """externalIds refused in at least `min_runs` runs in a row, most runs first.

    Only runs that kept the sync log count. Walking back from the newest run, a run that
    refused the externalId extends its streak; a run that succeeded without refusing it ends the
    streak (it either sent the lead or was not given it); a run that failed, was interrupted or
    is unfinished, and did not refuse it, says nothing (it may have stopped before the record).
    An externalId is keyed across streams (the target merges one externalId across streams);
    the stream shown is the latest refusal's. Records without an externalId cannot be followed.
    """
    logged = [run for run in newest_first(runs) if run.sync_log]
    by_run: dict[str, dict[str, RefusedRecord]] = {}
    for record in refused:
        if record.external_id is None:
            continue
        seen = by_run.setdefault(record.run_id, {})
        known = seen.get(record.external_id)
        if known is None or _utc(record.at) >= _utc(known.at):
            seen[record.external_id] = record
    streaks: dict[str, list[RefusedRecord]] = {}  # newest refusal first
    ended: set[str] = set()
    closed = False  # after a succeeded run, an externalId not yet seen cannot start a streak
    for run in logged:
        here = by_run.get(run.run_id, {})
        for external_id, record in here.items():
            if external_id in ended:
                continue
            if external_id in streaks:
                streaks[external_id].append(record)
            elif not closed:
                streaks[external_id] = [record]
        if run.status == "succeeded":
            ended.update(eid for eid in streaks if eid not in here)
            closed = True
    found = []
    for external_id, records in streaks.items():
        if len(records) < min_runs:
            continue
        last = records[0]
        found.append(
            RepeatedRefusal(
                external_id=external_id,
                stream=last.stream,
                runs=len(records),
                first_at=records[-1].at,
                last_at=last.at,
                last_outcome=last.outcome,
                last_reason=last.reason,
            )
        )
    found.sort(key=lambda item: (-item.runs, item.external_id))
    return found


# -- Escaping -----------------------------------------------------------------------------------

_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def clean_text(text: str) -> str:
    """`text` with control, format and line-separator characters written as escapes.

    So input data cannot move a terminal's cursor, colour it, or reorder a line (bidi
    overrides, zero-width characters).
    """
    if text.isprintable():
        return text
    out = []
    for char in text:
        if unicodedata.category(char) in _UNSAFE_CATEGORIES:
            code = ord(char)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
        else:
            out.append(char)
    return "".join(out)


def _h(text: str) -> str:
    """Escape input data for HTML text and attribute values."""
    return html.escape(clean_text(text), quote=True)


def _char_width(char: str) -> int:
    if unicodedata.combining(char):
        return 0
    return 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1


def display_width(text: str) -> int:
    """Columns `text` takes in a terminal (wide East Asian characters take two)."""
    if text.isascii():
        return len(text)
    return sum(_char_width(char) for char in text)


def _fit(text: str, width: int) -> str:
    """`text` cut to `width` columns, ending in an ellipsis when cut."""
    if display_width(text) <= width:
        return text
    out, used = [], 0
    for char in text:
        step = _char_width(char)
        if used + step > width - 1:
            break
        out.append(char)
        used += step
    return "".join(out) + "…"


def _pad(text: str, width: int, right: bool = False) -> str:
    gap = " " * max(0, width - display_width(text))
    return gap + text if right else text + gap


def defuse_csv_cell(value: str) -> str:
    """A cell a spreadsheet shows as text: one starting with = + - @ tab or CR gets a "'".

    A NUL character, which Python 3.10's csv module cannot write and spreadsheets cut text
    at, becomes U+FFFD (the replacement character).

    Excel, LibreOffice and Google Sheets run such a cell as a formula when the CSV is opened
    (`=HYPERLINK(...)` can send other cells away, `=cmd|...` could start a program on old
    Excel). externalIds and reasons come from the CRM and careCycle, so they are not trusted.
    The apostrophe is visible in the cell: strip it before matching such an id in the CRM.
    """
    value = value.replace("\x00", "\ufffd")
    return "'" + value if value.startswith(FORMULA_STARTS) else value


# -- Formatting ---------------------------------------------------------------------------------

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _utc(moment: datetime) -> datetime:
    return moment.astimezone(timezone.utc)


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return _utc(moment).isoformat(timespec="seconds").replace("+00:00", "Z")


def _minute(moment: datetime) -> str:
    return _utc(moment).strftime("%Y-%m-%d %H:%M")


def _duration(seconds: int | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    if seconds < 86400:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d{seconds % 86400 // 3600:02d}h"


def _compact(value: float) -> str:
    """A count in at most 5 characters: 999, 12k, 1.5M."""
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= limit:
            scaled = value / limit
            text = f"{scaled:.1f}" if scaled < 10 else f"{scaled:.0f}"
            return text.removesuffix(".0") + suffix
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.1f}"


def _number(value: int, width: int) -> str:
    text = str(value)
    return text if len(text) <= width else _compact(value)


def _grouped(value: int) -> str:
    return f"{value:,}"


# -- Text ---------------------------------------------------------------------------------------


def _word(name: str) -> str:
    """An outcome's short word in column heads: "sent" for succeeded, else its name."""
    return "sent" if name == "succeeded" else name


# One column for each delivered and each refused outcome; the other outcomes add up in "other".
_TEXT_COLUMNS: tuple[tuple[str, int], ...] = (
    ("received", 9),
    *((_word(name), max(7, len(_word(name)) + 1)) for name in DELIVERED_OUTCOMES),
    *((_word(name), max(7, len(_word(name)) + 1)) for name in REFUSED_OUTCOMES),
    ("other", 7),
    ("requests", 9),
    ("429s", 7),
)
_TEXT_LEFT = 35  # started (16), took (6), status (11), with a space between


def _text_numbers(counts: Mapping[str, int] | None, requests: int, rate_limited: int) -> str:
    """The count columns; None counts (an unfinished run: not known) show "-"."""
    if counts is None:
        return "".join(_pad("-", width, right=True) for _, width in _TEXT_COLUMNS)
    values = (
        counts["received"],
        *(counts[name] for name in DELIVERED_OUTCOMES),
        *(counts[name] for name in REFUSED_OUTCOMES),
        sum(counts[name] for name in OTHER_OUTCOMES),
        requests,
        rate_limited,
    )
    return "".join(
        _pad(_number(value, width - 1), width, right=True)
        for value, (_, width) in zip(values, _TEXT_COLUMNS, strict=True)
    )


def render_text(runs: Sequence[RunRecord], n: int = 10) -> str:
    """The last `n` runs, newest first, as a table that fits 100 terminal columns.

    One line per run (all streams added up), one indented line per stream when a run had
    several, and the failure's reason under a run that has one. Times are UTC.
    """
    ordered = newest_first(runs)
    if not ordered:
        return "No runs recorded yet.\n"
    shown = ordered[: max(0, n)]
    lines = [
        f"target-carecycle: the last {len(shown)} of {len(ordered)} runs (times in UTC)",
        _pad("started", 17)
        + _pad("took", 6, right=True)
        + " "
        + _pad("status", 11)
        + "".join(_pad(name, width, right=True) for name, width in _TEXT_COLUMNS),
    ]
    for run in shown:
        left = f"{_minute(run.started_at)} {_duration(run.duration_seconds):>6} {run.status}"
        totals = run.totals() if counts_known(run) else None
        lines.append(_pad(left, _TEXT_LEFT) + _text_numbers(totals, run.requests, run.rate_limited))
        if len(run.streams) > 1:
            for name, stream in sorted(run.streams.items()):
                label = "  " + _fit(clean_text(name), _TEXT_LEFT - 3)
                numbers = _text_numbers(stream.counts, stream.requests, stream.rate_limited)
                lines.append(_pad(label, _TEXT_LEFT) + numbers)
        if run.reason:
            lines.append(_fit("  reason: " + clean_text(run.reason), TEXT_WIDTH))
        if run.retries:
            lines.append(f"  {run.retries} requests sent again after a transient failure")
    lines.append(
        f"sent = accepted by careCycle; other = {' + '.join(OTHER_OUTCOMES) or 'none'}; "
        "429s = rate limited"
    )
    if not all(counts_known(run) for run in shown):
        lines.append("- = not known: an unfinished run recorded no counts (killed, or running)")
    return "\n".join(line.rstrip() for line in lines) + "\n"


# -- JSON ---------------------------------------------------------------------------------------


def display_url(url: str) -> str:
    """The API URL without user info, query or fragment (which could hold a secret)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "(unreadable URL)"
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{port}" if port is not None else host
    return f"{parts.scheme}://{netloc}{parts.path}" if parts.scheme else netloc + parts.path


def _sorted_reasons(reasons: Mapping[str, int]) -> dict[str, int]:
    return dict(sorted(reasons.items(), key=lambda item: (-item[1], item[0])))


def run_as_json(run: RunRecord) -> dict[str, Any]:
    """One run as the JSON report writes it (keys in a fixed order)."""
    streams = sorted(run.streams.items())
    return {
        "run_id": run.run_id,
        "started_at": _iso(run.started_at),
        "ended_at": _iso(run.ended_at),
        "duration_seconds": run.duration_seconds,
        "status": run.status,
        "reason": run.reason,
        "target_version": run.target_version,
        "account": {
            "api_url": display_url(run.account.api_url),
            "key_fingerprint": run.account.key_fingerprint,
        },
        "streams": {name: {key: s.counts[key] for key in COUNT_KEYS} for name, s in streams},
        "requests": run.requests,
        "rate_limited": run.rate_limited,
        "retries": run.retries,
        "uploads": {
            name: {"requests": s.requests, "rate_limited": s.rate_limited, "retries": s.retries}
            for name, s in streams
        },
        "reasons": {name: _sorted_reasons(s.reasons) for name, s in streams},
        "sync_log": run.sync_log,
    }


def render_json(runs: Iterable[RunRecord]) -> str:
    """`{"runs": [...]}`, newest first (schema: docs/report.schema.json).

    ASCII only: every other character is a JSON escape, so the output is safe to print to a
    terminal (no C1 control or bidi override from a stream name reaches it raw).
    """
    document = {"runs": [run_as_json(run) for run in newest_first(runs)]}
    return json.dumps(document, indent=2) + "\n"


# -- CSV ----------------------------------------------------------------------------------------

CSV_HEADER = ("externalId", "stream", "outcome", "reason")


def render_csv(refused: Iterable[RefusedRecord]) -> str:
    """The refused records given (the latest run's), one row each, for the CRM owner to fix.

    Cells keep their exact text, except that a cell starting with = + - @ tab or CR is
    prefixed with an apostrophe and NUL becomes U+FFFD (see defuse_csv_cell). RFC 4180: CRLF
    line ends, quoting where needed; a record without an externalId has an empty first cell.
    """
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_HEADER)
    for record in refused:
        cells = (record.external_id or "", record.stream, record.outcome, record.reason)
        writer.writerow([defuse_csv_cell(cell) for cell in cells])
    return out.getvalue()


# -- HTML: charts -------------------------------------------------------------------------------

# Colours and chart words of the outcomes known when this was written; an outcome added to
# the registry later gets its registry label and one of DEFAULT_OUTCOME_COLOURS.
_KNOWN_OUTCOME_COLOURS = {
    "succeeded": "#1b9e77",
    "unchanged": "#c9ced6",
    "failed": "#c0392b",
    "rejected": "#f0a202",
    "merged": "#4f8fd6",
    "skipped": "#a56cc1",
    "unsent": "#3b3b3b",
}
_KNOWN_OUTCOME_LABELS = {
    "succeeded": "sent (accepted)",
    "unchanged": "unchanged (not sent)",
    "failed": "failed (refused by careCycle)",
    "rejected": "rejected (before sending)",
    "unsent": "unsent (run stopped)",
}
DEFAULT_OUTCOME_COLOURS = ("#8c6d31", "#17becf", "#7f7f7f", "#bcbd22", "#e377c2", "#393b79")


def _outcome_colours() -> dict[str, str]:
    colours, spare = {}, iter(DEFAULT_OUTCOME_COLOURS * (1 + len(SHOWN_OUTCOMES)))
    for name in SHOWN_OUTCOMES:
        colours[name] = _KNOWN_OUTCOME_COLOURS.get(name) or next(spare)
    return colours


OUTCOME_COLOURS: dict[str, str] = _outcome_colours()
OUTCOME_LABELS: dict[str, str] = {
    outcome.name: _KNOWN_OUTCOME_LABELS.get(outcome.name, outcome.label) for outcome in _REGISTRY
}
STATUS_COLOURS: dict[str, str] = {
    "succeeded": "#1b9e77",
    "failed": "#c0392b",
    "interrupted": "#f0a202",
    "unfinished": "#8a8f98",
}
REASON_COLOURS = (
    "#0072b2",
    "#e69f00",
    "#009e73",
    "#cc79a7",
    "#56b4e9",
    "#d55e00",
    "#6a3d9a",
    "#b8a100",
)
OTHER_REASONS_COLOUR = "#9aa0a6"
UNRECORDED_REASONS_COLOUR = "#d9dce0"
TRAFFIC_COLOURS = {"requests": "#0072b2", "rate_limited": "#d55e00", "retries": "#e69f00"}

_CHART_WIDTH = 960
_CHART_HEIGHT = 240
_MARGIN_LEFT = 56
_MARGIN_RIGHT = 12
_MARGIN_TOP = 12
_MARGIN_BOTTOM = 40


@dataclass(frozen=True)
class _Series:
    key: str
    label: str
    colour: str


def _nice_step(top: float, ticks: int = 4) -> float:
    rough = max(top, 1) / ticks
    power = 10.0 ** math.floor(math.log10(rough))
    for factor in (1, 2, 5, 10):
        if rough <= factor * power:
            step = factor * power
            return step if step >= 1 else 1
    return 10 * power


def _slot_label(moment: datetime, multi_day: bool) -> str:
    moment = _utc(moment)
    if multi_day:
        return f"{_MONTHS[moment.month - 1]} {moment.day}"
    return moment.strftime("%H:%M")


def _bar_chart(
    runs: Sequence[RunRecord],
    series: Sequence[_Series],
    values: Sequence[Mapping[str, int]],
    tips: Sequence[str],
    *,
    grouped: bool = False,
    label: str,
) -> str:
    """An SVG bar chart, one slot per run (oldest left): stacked, or grouped side by side."""
    n = max(1, len(runs))
    plot_w = _CHART_WIDTH - _MARGIN_LEFT - _MARGIN_RIGHT
    plot_h = _CHART_HEIGHT - _MARGIN_TOP - _MARGIN_BOTTOM
    base = _MARGIN_TOP + plot_h
    if grouped:
        top = max((max(v.get(s.key, 0) for s in series) for v in values), default=0)
    else:
        top = max((sum(v.get(s.key, 0) for s in series) for v in values), default=0)
    step = _nice_step(top)
    y_max = step * max(1, math.ceil(top / step))
    scale = plot_h / y_max
    out = [
        f'<svg class="chart" viewBox="0 0 {_CHART_WIDTH} {_CHART_HEIGHT}" role="img" '
        f'aria-label="{_h(label)}" xmlns="http://www.w3.org/2000/svg">'
    ]
    tick = 0.0
    while tick <= y_max + 1e-9:
        y = base - tick * scale
        out.append(
            f'<line x1="{_MARGIN_LEFT}" x2="{_CHART_WIDTH - _MARGIN_RIGHT}" y1="{y:.1f}" '
            f'y2="{y:.1f}" class="grid"/>'
            f'<text x="{_MARGIN_LEFT - 6}" y="{y + 4:.1f}" class="ylab">{_compact(tick)}</text>'
        )
        tick += step
    slot = plot_w / n
    bar_w = min(slot * 0.75, 48)
    multi_day = bool(runs) and (_utc(runs[-1].started_at).date() != _utc(runs[0].started_at).date())
    every = max(1, math.ceil(n / 12))
    for index, (run, value, tip) in enumerate(zip(runs, values, tips, strict=True)):
        x0 = _MARGIN_LEFT + index * slot + (slot - bar_w) / 2
        out.append(f"<g><title>{_h(tip)}</title>")
        out.append(
            f'<rect x="{_MARGIN_LEFT + index * slot:.1f}" y="{_MARGIN_TOP}" '
            f'width="{slot:.1f}" height="{plot_h}" class="hit"/>'
        )
        if grouped:
            sub_w = bar_w / len(series)
            for position, item in enumerate(series):
                height = value.get(item.key, 0) * scale
                if height > 0:
                    out.append(
                        f'<rect x="{x0 + position * sub_w:.1f}" y="{base - height:.1f}" '
                        f'width="{max(sub_w - 0.5, 0.5):.1f}" height="{height:.1f}" '
                        f'fill="{item.colour}"/>'
                    )
        else:
            y = float(base)
            for item in series:
                height = value.get(item.key, 0) * scale
                if height > 0:
                    y -= height
                    out.append(
                        f'<rect x="{x0:.1f}" y="{y:.1f}" width="{bar_w:.1f}" '
                        f'height="{height:.1f}" fill="{item.colour}"/>'
                    )
        if run.status != "succeeded":
            out.append(
                f'<rect x="{x0:.1f}" y="{base + 3}" width="{bar_w:.1f}" height="5" '
                f'fill="{STATUS_COLOURS[run.status]}"/>'
            )
        out.append("</g>")
        if index % every == 0:
            out.append(
                f'<text x="{_MARGIN_LEFT + (index + 0.5) * slot:.1f}" y="{base + 24}" '
                f'class="xlab">{_h(_slot_label(run.started_at, multi_day))}</text>'
            )
    out.append(
        f'<line x1="{_MARGIN_LEFT}" x2="{_CHART_WIDTH - _MARGIN_RIGHT}" y1="{base}" '
        f'y2="{base}" class="axis"/>'
    )
    if top == 0:
        out.append(
            f'<text x="{_MARGIN_LEFT + plot_w / 2:.1f}" y="{_MARGIN_TOP + plot_h / 2:.1f}" '
            f'class="empty">nothing to draw in these runs</text>'
        )
    out.append("</svg>")
    return "".join(out)


def _legend(series: Iterable[_Series]) -> str:
    items = "".join(
        f'<li><span class="sw" style="background:{item.colour}"></span>'
        f'<span title="{_h(item.label)}">{_h(_fit(clean_text(item.label), 90))}</span></li>'
        for item in series
    )
    return f'<ul class="legend">{items}</ul>'


def _status_legend(runs: Sequence[RunRecord]) -> str:
    statuses = [s for s in RUN_STATUSES[1:] if any(run.status == s for run in runs)]
    if not statuses:
        return ""
    items = "".join(
        f'<li><span class="sw strip" style="background:{STATUS_COLOURS[s]}"></span>'
        f"run {s} (mark under its bar)</li>"
        for s in statuses
    )
    return f'<ul class="legend">{items}</ul>'


def _run_tip(run: RunRecord) -> str:
    head = f"{_minute(run.started_at)} UTC, {run.status}"
    if run.reason:
        head += f": {run.reason}"
    return head


def _outcome_chart(stream: str, runs: Sequence[RunRecord]) -> str:
    series = [_Series(key, OUTCOME_LABELS[key], OUTCOME_COLOURS[key]) for key in OUTCOME_COLOURS]
    values, tips = [], []
    for run in runs:
        history = run.streams.get(stream)
        counts: Mapping[str, int] = history.counts if history else {}
        values.append(counts)
        if history is None:
            tips.append(_run_tip(run) + "\n(stream not in this run)")
        else:
            detail = "\n".join(
                f"{OUTCOME_LABELS[key]}: {_grouped(counts[key])}"
                for key in OUTCOME_COLOURS
                if counts[key]
            )
            tips.append(f"{_run_tip(run)}\nreceived: {_grouped(counts['received'])}\n{detail}")
    chart = _bar_chart(runs, series, values, tips, label=f"outcomes per run, stream {stream}")
    return f"<h3>Stream {_h(stream)}</h3>{_legend(series)}{chart}"


def _reasons_chart(runs: Sequence[RunRecord], top: int = len(REASON_COLOURS)) -> str:
    totals: Counter[str] = Counter()
    for run in runs:
        totals.update(run.reasons())
    ranked = sorted(totals.items(), key=lambda item: (-item[1], item[0]))
    chosen = [reason for reason, _ in ranked[:top]]
    keys = {reason: f"r{index}" for index, reason in enumerate(chosen)}
    series = [
        _Series(keys[reason], reason, REASON_COLOURS[index]) for index, reason in enumerate(chosen)
    ]
    if len(ranked) > top:
        series.append(_Series("other", "other reasons", OTHER_REASONS_COLOUR))
    series.append(
        _Series("unrecorded", "reason not kept (beyond the top reasons)", UNRECORDED_REASONS_COLOUR)
    )
    values, tips = [], []
    for run in runs:
        reasons = run.reasons()
        value: dict[str, int] = {"other": 0}
        for reason, count in reasons.items():
            key = keys.get(reason, "other")
            value[key] = value.get(key, 0) + count
        refused = sum(stream.refused for stream in run.streams.values())
        value["unrecorded"] = max(0, refused - sum(reasons.values()))
        values.append(value)
        detail = "\n".join(
            f"{_grouped(count)} x {reason}" for reason, count in _sorted_reasons(reasons).items()
        )
        tips.append(f"{_run_tip(run)}\nrefused: {_grouped(refused)}\n{detail}".rstrip())
    shown = [item for item in series if any(v.get(item.key, 0) for v in values)]
    chart = _bar_chart(runs, shown or series[:1], values, tips, label="refused records by reason")
    return _legend(shown) + chart


def _traffic_chart(runs: Sequence[RunRecord]) -> str:
    series = [
        _Series("requests", "upload requests", TRAFFIC_COLOURS["requests"]),
        _Series("rate_limited", "429 answers (rate limited)", TRAFFIC_COLOURS["rate_limited"]),
        _Series("retries", "retries after a transient failure", TRAFFIC_COLOURS["retries"]),
    ]
    values = [
        {"requests": r.requests, "rate_limited": r.rate_limited, "retries": r.retries} for r in runs
    ]
    tips = [
        f"{_run_tip(r)}\nrequests: {_grouped(r.requests)}\n429 answers: "
        f"{_grouped(r.rate_limited)}\nretries: {_grouped(r.retries)}"
        for r in runs
    ]
    chart = _bar_chart(runs, series, values, tips, grouped=True, label="requests per run")
    return _legend(series) + chart


# -- HTML: page ---------------------------------------------------------------------------------

_STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",Arial,sans-serif;
margin:0 auto;max-width:1000px;padding:16px 20px 40px;color:#1f2328;background:#fff;
font-size:14px;line-height:1.4}
h1{font-size:22px;margin:4px 0}h2{font-size:18px;margin:28px 0 6px;border-bottom:1px solid #d0d7de;
padding-bottom:4px}h3{font-size:15px;margin:16px 0 2px}
.sub{color:#57606a;margin:0 0 12px}
.cards{display:flex;flex-wrap:wrap;gap:8px;margin:12px 0}
.card{border:1px solid #d0d7de;border-radius:6px;padding:6px 12px;min-width:80px}
.card b{display:block;font-size:20px}.card span{color:#57606a;font-size:12px}
.badge{display:inline-block;border-radius:10px;padding:1px 8px;color:#fff;font-size:12px}
.chart{width:100%;height:auto;display:block}
.chart .grid{stroke:#eaeef2;stroke-width:1}.chart .axis{stroke:#8c959f;stroke-width:1}
.chart .ylab{font-size:11px;fill:#57606a;text-anchor:end}
.chart .xlab{font-size:11px;fill:#57606a;text-anchor:middle}
.chart .empty{font-size:13px;fill:#8c959f;text-anchor:middle}
.chart .hit{fill:transparent}.chart g:hover .hit{fill:#f3f4f6}
.legend{list-style:none;padding:0;margin:4px 0;display:flex;flex-wrap:wrap;gap:4px 14px;
font-size:12px}
.sw{display:inline-block;width:11px;height:11px;border-radius:2px;margin-right:5px;
vertical-align:-1px}.sw.strip{height:5px;vertical-align:2px}
table{border-collapse:collapse;width:100%;font-size:12.5px;margin:6px 0}
th,td{padding:3px 6px;border-bottom:1px solid #eaeef2;text-align:left;vertical-align:top}
th{background:#f6f8fa;position:sticky;top:0}td.n,th.n{text-align:right;
font-variant-numeric:tabular-nums}
td.t{white-space:nowrap}
td.id{font-family:ui-monospace,"DejaVu Sans Mono",monospace;word-break:break-all}
.why{color:#57606a;font-size:12px}.note{color:#57606a}
tr.reason td{border-top:0;padding-top:0}tr:has(+tr.reason) td{border-bottom:0}
.wide{overflow-x:auto}h3,.sub,.legend,.why{overflow-wrap:anywhere}td{overflow-wrap:break-word}
footer{margin-top:32px;color:#57606a;font-size:12px}
"""


def _badge(status: str) -> str:
    return f'<span class="badge" style="background:{STATUS_COLOURS[status]}">{_h(status)}</span>'


def _cards(run: RunRecord) -> str:
    totals = run.totals()
    status = f'<b style="color:{STATUS_COLOURS[run.status]}">{_h(run.status)}</b>'
    known = counts_known(run)
    cards = [
        ("received", totals["received"]),
        *((_word(name), totals[name]) for name in (*DELIVERED_OUTCOMES, *REFUSED_OUTCOMES)),
        ("requests", run.requests),
        ("429 answers", run.rate_limited),
    ]
    shown = [(name, _grouped(value) if known else "-") for name, value in cards]
    body = "".join(
        f'<div class="card"><b>{value}</b><span>{_h(name)}</span></div>' for name, value in shown
    )
    head = (
        f'<p class="sub">Started {_h(_minute(run.started_at))} UTC, '
        f"took {_duration(run.duration_seconds)}, version {_h(run.target_version)}</p>"
    )
    reason = f'<p class="why">Reason: {_h(run.reason)}</p>' if run.reason else ""
    first = f'<div class="card">{status}<span>status</span></div>'
    return f'{head}<div class="cards">{first}{body}</div>{reason}'


_RUN_TABLE_COUNTS = ("received", *SHOWN_OUTCOMES)


def _runs_table(runs: Sequence[RunRecord]) -> str:
    """Every run, newest first; the failure's reason on a line of its own under its run.

    The version gets a column only when the runs used more than one (then it matters).
    """
    versions = len({run.target_version for run in runs}) > 1
    heads = "".join(f'<th class="n">{_h(_word(key))}</th>' for key in _RUN_TABLE_COUNTS)
    columns = 3 + len(_RUN_TABLE_COUNTS) + 3 + versions
    rows = [
        '<div class="wide"><table><thead><tr><th>started (UTC)</th><th>took</th><th>status</th>'
        f'{heads}<th class="n">requests</th><th class="n">429s</th><th class="n">retries</th>'
        f"{'<th>version</th>' if versions else ''}</tr></thead><tbody>"
    ]
    for run in runs:
        totals = run.totals()
        known = counts_known(run)
        numbers = "".join(
            f'<td class="n">{_grouped(totals[key]) if known else "-"}</td>'
            for key in _RUN_TABLE_COUNTS
        )
        version = f"<td>{_h(run.target_version)}</td>" if versions else ""
        tip = f"run {run.run_id}, target-carecycle {run.target_version}"
        rows.append(
            f'<tr><td class="t" title="{_h(tip)}">{_h(_minute(run.started_at))}</td>'
            f'<td class="t">{_duration(run.duration_seconds)}</td><td>{_badge(run.status)}</td>'
            f"{numbers}"
            + "".join(
                f'<td class="n">{_grouped(value) if known else "-"}</td>'
                for value in (run.requests, run.rate_limited, run.retries)
            )
            + f"{version}</tr>"
        )
        if run.reason:
            rows.append(
                f'<tr class="reason"><td></td><td colspan="{columns - 1}" class="why">'
                f"{_h(run.reason)}</td></tr>"
            )
    rows.append("</tbody></table></div>")
    return "".join(rows)


def _capped_note(total: int, what: str) -> str:
    if total <= HTML_TABLE_LIMIT:
        return ""
    return (
        f'<p class="note">Showing the first {_grouped(HTML_TABLE_LIMIT)} of {_grouped(total)} '
        f"{what}: {_grouped(total - HTML_TABLE_LIMIT)} more in the CSV report "
        "(<code>--format csv</code>).</p>"
    )


def _refused_table(refused: Sequence[RefusedRecord] | None) -> str:
    if refused is None:
        return (
            '<p class="note">Row-level detail needs the sync log: set <code>sync_log: true</code> '
            "to see which externalIds were refused and why.</p>"
        )
    if not refused:
        return '<p class="note">No record was refused in the latest run.</p>'
    rows = [
        "<table><thead><tr><th>externalId</th><th>stream</th><th>outcome</th><th>reason</th>"
        "</tr></thead><tbody>"
    ]
    for record in refused[:HTML_TABLE_LIMIT]:
        rows.append(
            f'<tr><td class="id">{_h(record.external_id or "(none)")}</td>'
            f"<td>{_h(record.stream)}</td><td>{_h(record.outcome)}</td>"
            f"<td>{_h(record.reason)}</td></tr>"
        )
    rows.append("</tbody></table>")
    return _capped_note(len(refused), "refused records") + "".join(rows)


def _repeated_table(repeated: Sequence[RepeatedRefusal] | None) -> str:
    if repeated is None:
        return '<p class="note">Needs the sync log (<code>sync_log: true</code>).</p>'
    if not repeated:
        return '<p class="note">No externalId was refused in two or more runs in a row.</p>'
    rows = [
        '<table><thead><tr><th>externalId</th><th>stream</th><th class="n">runs in a row</th>'
        "<th>first refused (UTC)</th><th>latest reason</th></tr></thead><tbody>"
    ]
    for item in repeated[:HTML_TABLE_LIMIT]:
        rows.append(
            f'<tr><td class="id">{_h(item.external_id)}</td><td>{_h(item.stream)}</td>'
            f'<td class="n">{item.runs}</td><td class="t">{_h(_minute(item.first_at))}</td>'
            f"<td>{_h(item.last_outcome)}: {_h(item.last_reason)}</td></tr>"
        )
    rows.append("</tbody></table>")
    return _capped_note(len(repeated), "externalIds") + "".join(rows)


def render_html(
    runs: Sequence[RunRecord],
    refused: Sequence[RefusedRecord] | None = None,
    repeated: Sequence[RepeatedRefusal] | None = None,
) -> str:
    """One self-contained HTML page: charts as inline SVG, no script, nothing fetched.

    `refused` is the latest run's refused records and `repeated` the result of
    repeated_refusals(); None for either means the sync log is off (the page says so).
    The page carries a Content-Security-Policy that forbids loading or running anything, so
    it works offline and as an email attachment, and input data cannot make it call out.
    """
    newest = newest_first(runs)
    oldest = list(reversed(newest))
    parts = [
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{CONTENT_SECURITY_POLICY}">',
        '<meta name="referrer" content="no-referrer">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>careCycle sync report</title>",
        f"<style>{_STYLE}</style></head><body>",
        "<h1>careCycle sync report</h1>",
    ]
    if not newest:
        parts.append('<p class="sub">No runs recorded yet.</p></body></html>\n')
        return "".join(parts)
    accounts = sorted({(display_url(r.account.api_url), r.account.key_fingerprint) for r in newest})
    account_text = "; ".join(f"{url} (key fingerprint {fp})" for url, fp in accounts)
    parts.append(
        f'<p class="sub">{len(newest)} runs from {_h(_minute(oldest[0].started_at))} to '
        f"{_h(_minute(newest[0].started_at))} UTC &middot; account {_h(account_text)}</p>"
    )
    parts.append("<h2>Latest run</h2>" + _cards(newest[0]))
    parts.append(
        '<h2>Refused records per run, by reason</h2><p class="note">One bar per run, oldest '
        "on the left; hover a bar for its counts.</p>" + _status_legend(oldest)
    )
    parts.append(_reasons_chart(oldest))
    parts.append("<h2>Outcomes per run</h2>")
    streams = sorted({name for run in newest for name in run.streams})
    parts.extend(_outcome_chart(stream, oldest) for stream in streams)
    parts.append("<h2>Requests and 429 answers per run</h2>" + _traffic_chart(oldest))
    parts.append("<h2>Refused records of the latest run</h2>" + _refused_table(refused))
    parts.append(
        "<h2>externalIds refused in several runs in a row</h2>" + _repeated_table(repeated)
    )
    parts.append("<h2>Runs</h2>" + _runs_table(newest))
    parts.append(
        "<footer>Written by target-carecycle from its sync store. It holds counts, reason "
        "texts and externalIds only: no other field of a lead and no API key. Times are UTC."
        "</footer></body></html>\n"
    )
    return "".join(parts)
