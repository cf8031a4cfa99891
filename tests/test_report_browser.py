"""The HTML report in a real browser: Debian's chromium, headless.

A screenshot that is not blank (the charts are drawn in their colours), no request leaving the
page and no console error, also with hostile stream names, reasons and externalIds. The
request and console checks use Playwright driving /usr/bin/chromium (never a browser of its
own); negative tests prove they catch a page that does call out, and that the page's
Content-Security-Policy blocks what an injection bug would add.

chromium comes from scripts/ensure-test-deps.sh (`make test` runs it); where it is missing the
tests skip, unless TARGET_CARECYCLE_REQUIRE_BROWSER is set (`make test` sets it), then they fail.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from report_data import T0, refusal, run, stream

from target_carecycle.report import (
    OUTCOME_COLOURS,
    REASON_COLOURS,
    TRAFFIC_COLOURS,
    newest_first,
    refused_in_run,
    render_html,
    repeated_refusals,
)

pytestmark = pytest.mark.browser

# The flags every chromium here starts with: nothing of its own goes on the network.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
EVIL = '<script>fetch("http://127.0.0.1:9/")</script>"><img src=http://127.0.0.1:9/x>\x1b\u202e'
TIMEOUT_MS = 60_000


@pytest.fixture(scope="module")
def chromium() -> str:
    """Debian's chromium, or a skip (a failure where the suite must run it)."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        reason = "Debian's chromium is not installed (bash scripts/ensure-test-deps.sh installs it)"
        if os.environ.get("TARGET_CARECYCLE_REQUIRE_BROWSER"):
            pytest.fail(reason)
        pytest.skip(reason)
    return found


def _history() -> str:
    """A report of 20 nightly runs of three streams, one with a hostile name, reasons and ids."""
    runs, refused = [], []
    for night in range(20):
        status = {13: "failed", 17: "interrupted"}.get(night, "succeeded")
        reason = "careCycle answered 503 five times in a row" if night == 13 else None
        if night == 17:
            reason = EVIL
        streams = {
            "crm_contacts": stream(
                succeeded=200 + night * 3,
                unchanged=5000 + night * 10,
                failed=4 + night % 3,
                rejected=30 if night in (8, 9) else 3,
                merged=2,
                unsent=400 if status != "succeeded" else 0,
                requests=2 + night % 4,
                rate_limited=6 if night == 11 else 0,
                retries=1 if night == 12 else 0,
                reasons={"phoneNumber: not a valid US phone number": 3, EVIL: 4 + night % 3},
            ),
            "web_form": stream(succeeded=40 + night, unchanged=60, rejected=1, requests=1),
            EVIL: stream(succeeded=5, skipped=night, reasons={}),
        }
        runs.append(run(night, streams, status=status, reason=reason))
        at = T0 + timedelta(days=night, minutes=1)
        refused.append(refusal(f"run-{night}", "crm-4711", "crm_contacts", "failed", EVIL, at))
        refused.append(refusal(f"run-{night}", EVIL, EVIL, "rejected", "phoneNumber: missing", at))
        refused.append(refusal(f"run-{night}", '=HYPERLINK("http://127.0.0.1:9")', "web_form"))
    latest = newest_first(runs)[0]
    return render_html(
        runs, refused_in_run(refused, latest.run_id), repeated_refusals(runs, refused)
    )


@pytest.fixture(scope="module")
def report_page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    page = tmp_path_factory.mktemp("report") / "report.html"
    page.write_text(_history(), encoding="utf-8")
    return page


# -- The screenshot -------------------------------------------------------------------------------


def png_pixels(data: bytes) -> tuple[int, int, list[bytes]]:
    """Width, height and rows of RGB(A) bytes of an 8-bit non-interlaced PNG (zlib only)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    position, chunks = 8, []
    width = height = bpp = 0
    while position < len(data):
        length, kind = struct.unpack(">I4s", data[position : position + 8])
        body = data[position + 8 : position + 8 + length]
        position += 12 + length
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and colour in (2, 6) and interlace == 0, (depth, colour, interlace)
            bpp = 3 if colour == 2 else 4
        elif kind == b"IDAT":
            chunks.append(body)
        elif kind == b"IEND":
            break
    raw = zlib.decompress(b"".join(chunks))
    stride = width * bpp
    rows: list[bytes] = []
    previous = bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        if kind == 1:  # Sub
            for i in range(bpp, stride):
                line[i] = (line[i] + line[i - bpp]) & 0xFF
        elif kind == 2:  # Up
            line = bytearray((a + b) & 0xFF for a, b in zip(line, previous, strict=True))
        elif kind == 3:  # Average
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + ((left + previous[i]) >> 1)) & 0xFF
        elif kind == 4:  # Paeth
            for i in range(stride):
                a = line[i - bpp] if i >= bpp else 0
                b = previous[i]
                c = previous[i - bpp] if i >= bpp else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                near = a if pa <= pb and pa <= pc else b if pb <= pc else c
                line[i] = (line[i] + near) & 0xFF
        rows.append(bytes(line))
        previous = line
    return width, height, rows


def _colours(width: int, rows: list[bytes]) -> set[tuple[int, int, int]]:
    bpp = len(rows[0]) // width
    found = set()
    for row in rows:
        for x in range(0, len(row), bpp):
            found.add((row[x], row[x + 1], row[x + 2]))
    return found


def _rgb(hex_colour: str) -> tuple[int, int, int]:
    value = int(hex_colour.lstrip("#"), 16)
    return value >> 16, (value >> 8) & 0xFF, value & 0xFF


def _has(colours: set[tuple[int, int, int]], hex_colour: str) -> bool:
    want = _rgb(hex_colour)
    return any(all(abs(a - b) <= 3 for a, b in zip(c, want, strict=True)) for c in colours)


def test_png_decoder_reads_every_filter():
    """The decoder against a PNG made here, each row with another filter type."""
    width, rows = 3, [bytes([10, 20, 30, 200, 100, 50, 0, 255, 128]) for _ in range(5)]
    encoded = bytearray()
    previous = bytes(9)
    for kind, row in enumerate(rows):
        filtered = bytearray(row)
        for i in range(9):
            a = row[i - 3] if i >= 3 else 0
            b, c = previous[i], previous[i - 3] if i >= 3 else 0
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            paeth = a if pa <= pb and pa <= pc else b if pb <= pc else c
            guess = (0, a, b, (a + b) >> 1, paeth)[kind]
            filtered[i] = (row[i] - guess) & 0xFF
        encoded += bytes([kind]) + filtered
        previous = row

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    png = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, 5, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(bytes(encoded)))
        + chunk(b"IEND", b"")
    )
    assert png_pixels(png) == (3, 5, rows)


def test_the_report_renders_its_charts_in_chromium(chromium, report_page, tmp_path):
    shot = tmp_path / "report.png"
    subprocess.run(
        [
            chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}",
            "--hide-scrollbars", "--window-size=1000,2200", f"--screenshot={shot}",
            report_page.as_uri(),
        ],
        check=True, capture_output=True, timeout=180, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    width, height, rows = png_pixels(shot.read_bytes())
    assert (width, height) == (1000, 2200)
    colours = _colours(width, rows)
    assert len(colours) > 200, f"only {len(colours)} colours: a blank or broken page"
    for drawn in (
        OUTCOME_COLOURS["succeeded"],
        OUTCOME_COLOURS["unchanged"],
        REASON_COLOURS[0],
        REASON_COLOURS[1],
        TRAFFIC_COLOURS["requests"],
    ):
        assert _has(colours, drawn), f"no pixel of {drawn}: a chart is missing"


# -- Requests and console -------------------------------------------------------------------------


@dataclass
class Visit:
    """What a page did while it loaded."""

    requests: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    scripts: int = -1
    text: str = ""


def visit(chromium: str, url: str, profile: Path) -> Visit:
    """Load `url` in chromium through Playwright; record every request and console error."""
    from playwright.sync_api import sync_playwright

    seen = Visit()
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=chromium,
            headless=True,
            args=CHROMIUM_FLAGS,
            timeout=TIMEOUT_MS,
        )
        try:
            context.on("request", lambda request: seen.requests.append(request.url))
            page = context.pages[0] if context.pages else context.new_page()
            page.on(
                "console",
                lambda message: (
                    seen.problems.append(f"console {message.type}: {message.text}")
                    if message.type in ("error", "warning", "assert")
                    else None
                ),
            )
            page.on("pageerror", lambda error: seen.problems.append(f"page error: {error}"))
            page.goto(url, wait_until="load", timeout=TIMEOUT_MS)
            seen.scripts = page.evaluate("document.scripts.length")
            seen.text = page.inner_text("body")
        finally:
            context.close()
    return seen


class _Recorder(BaseHTTPRequestHandler):
    hits: list[str]

    def do_GET(self) -> None:
        self.hits.append(self.path)
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture
def listener() -> Iterator[tuple[str, list[str]]]:
    """A local HTTP server on a free loopback port that records each path asked for."""
    hits: list[str] = []
    handler = type("Recorder", (_Recorder,), {"hits": hits})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", hits
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_the_report_makes_no_request_and_logs_no_error(chromium, report_page, tmp_path):
    seen = visit(chromium, report_page.as_uri(), tmp_path / "profile")
    assert seen.requests == [report_page.as_uri()]
    assert seen.problems == []
    assert seen.scripts == 0
    # The hostile names are on the page as text, and the charts' headings are there.
    assert "crm-4711" in seen.text and "<script>fetch(" in seen.text
    assert "Refused records per run, by reason" in seen.text


def test_a_page_that_calls_out_is_caught(chromium, tmp_path, listener):
    """The checks above can fail: a page without the CSP and with an image from a server."""
    base, hits = listener
    page = tmp_path / "calls-out.html"
    page.write_text(f'<!DOCTYPE html><html><body><p>x</p><img src="{base}/x.png"></body></html>')
    seen = visit(chromium, page.as_uri(), tmp_path / "profile")
    assert f"{base}/x.png" in seen.requests
    assert hits == ["/x.png"]


@pytest.mark.parametrize(
    "injected",
    [
        '<img src="{base}/img.png">',
        '<script>fetch("{base}/script")</script>',
        '<link rel="stylesheet" href="{base}/style.css">',
        '<div style="background:url({base}/css.png)">x</div>',
        '<iframe src="{base}/frame"></iframe>',
    ],
)
def test_the_reports_csp_blocks_what_an_injection_bug_would_add(
    chromium, report_page, tmp_path, listener, injected
):
    """Markup that escaped escaping is blocked by the page's policy, and the block is logged.

    (Chromium reports a blocked load as a request too, so `visit` would also list it.)
    """
    base, hits = listener
    page = tmp_path / "injected.html"
    html = report_page.read_text(encoding="utf-8")
    page.write_text(html.replace("</body>", injected.format(base=base) + "</body>"))
    seen = visit(chromium, page.as_uri(), tmp_path / "profile")
    assert hits == []  # nothing reached the server
    # ... and the attempt does not go unnoticed: the policy's refusal is a console error.
    assert any("Content Security Policy" in problem for problem in seen.problems), seen.problems
