"""Every input bounded: line length (stdin and BATCH files), stop signals while a batch file is
read, numbers beyond a double, names from the input printed escaped (docs/security.md)."""

from __future__ import annotations

import gzip
import json
import resource
import signal
import subprocess
import unicodedata
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from target_runner import TARGET_EXE, run_target, stop_line, target_config

from target_carecycle.printable import printable
from target_carecycle.sandbox.samples import LEAD_SCHEMA, api_leads, singer_lines
from target_carecycle.singer_input import MAX_LINE_BYTES, LineTooLong, bounded_lines

ADDRESS_SPACE = 1024 * 1024 * 1024  # the target must finish inside 1 GiB of address space


def schema_line(stream: str = "leads") -> str:
    message = {"type": "SCHEMA", "stream": stream, "schema": LEAD_SCHEMA, "key_properties": []}
    return json.dumps(message)


def batch_line(url: str) -> str:
    encoding = {"format": "jsonl", "compression": None}
    return json.dumps({"type": "BATCH", "stream": "leads", "encoding": encoding, "manifest": [url]})


def limited_address_space() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))


def run_limited(tmp_path: Path, config: dict[str, Any], stdin: bytes) -> tuple[int, str, str]:
    """The executable inside ADDRESS_SPACE bytes of memory (a runaway read ends in MemoryError)."""
    (tmp_path / "config.json").write_text(json.dumps(config))
    done = subprocess.run(
        [TARGET_EXE, "--config", str(tmp_path / "config.json")],
        input=stdin,
        capture_output=True,
        timeout=300,
        preexec_fn=limited_address_space,
        check=False,
    )
    return done.returncode, done.stdout.decode(), done.stderr.decode(errors="replace")


# Line length


def test_a_batch_file_without_line_breaks_stops_the_run_in_bounded_memory(tmp_path):
    """`file:///dev/zero` grew to 24 GB until the kernel killed the process."""
    lines = [schema_line(), batch_line("file:///dev/zero")]
    code, stdout, stderr = run_limited(
        tmp_path, {"dry_run": True, "sync_store": "off"}, ("\n".join(lines) + "\n").encode()
    )
    assert code == 1, stderr[-2000:]
    assert stop_line(stderr).startswith(
        "target-carecycle: line 2: batch file file:///dev/zero, line 1: longer than 16 MiB, "
        "the longest line read"
    )
    assert "MemoryError" not in stderr and "Traceback" not in stderr
    assert stdout == ""


def test_a_standard_input_line_longer_than_the_limit_stops_the_run(tmp_path):
    head = schema_line() + "\n"
    endless = b'{"type": "RECORD", "stream": "leads", "record": {"firstName": "' + b"x" * (
        MAX_LINE_BYTES + 10
    )
    code, _, stderr = run_limited(
        tmp_path, {"dry_run": True, "sync_store": "off"}, head.encode() + endless
    )
    assert code == 1
    assert (
        "target-carecycle: line 2: longer than 16 MiB, the longest line read (no line break: "
        "a broken or binary input?)"
    ) in stderr
    assert "xxxxxxxx" not in stderr and "Traceback" not in stderr


def test_a_line_at_the_limit_is_read(tmp_path):
    """The limit is on the line, not the message: a record just under it is still mapped."""
    record = {**api_leads(1)[0], "notes": ""}
    line = json.dumps({"type": "RECORD", "stream": "leads", "record": record})
    record["notes"] = "n" * (MAX_LINE_BYTES - len(line))
    line = json.dumps({"type": "RECORD", "stream": "leads", "record": record})
    assert len(line) == MAX_LINE_BYTES
    code, _, stderr = run_limited(
        tmp_path,
        {"dry_run": True, "sync_store": "off"},
        (schema_line() + "\n" + line + "\n").encode(),
    )
    assert code == 0, stderr[-2000:]
    assert "would send 1" in stderr


@settings(max_examples=300, deadline=None)
@given(
    data=st.binary(max_size=300).map(lambda b: b.replace(b"\x00", b"\n")),
    chunk=st.integers(1, 17),
    limit=st.integers(0, 40),
)
def test_bounded_lines_are_the_lines_or_a_refusal(data, chunk, limit):
    """Whatever the pieces a stream hands back, the lines are the lines (or too long)."""
    expected = data.split(b"\n")
    if expected[-1] == b"":
        expected.pop()
    source = iter(data[i : i + chunk] for i in range(0, len(data), chunk))
    read = lambda _size: next(source, b"")  # noqa: E731
    if any(len(line) > limit for line in expected):
        with pytest.raises(LineTooLong):
            list(bounded_lines(read, limit))
    else:
        assert list(bounded_lines(read, limit)) == expected


# A stop signal while a batch file is read


def test_a_stop_signal_is_honoured_while_a_batch_file_is_read(tmp_path):
    """SIGTERM in the middle of a large batch file ends the run: the file is not read to its end."""
    total = 300_000
    path = tmp_path / "batch.jsonl.gz"
    template = api_leads(1)[0]
    with gzip.open(path, "wt") as out:
        for n in range(total):
            out.write(json.dumps({**template, "externalId": f"lead-{n}"}) + "\n")
    config_path = tmp_path / "config.json"
    config_path.write_text(json.dumps({"dry_run": True, "sync_store": "off"}))
    proc = subprocess.Popen(
        [TARGET_EXE, "--config", str(config_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdin is not None and proc.stderr is not None
    encoding = {"format": "jsonl", "compression": "gzip"}
    batch = {"type": "BATCH", "stream": "leads", "encoding": encoding, "manifest": [path.as_uri()]}
    proc.stdin.write(schema_line() + "\n" + json.dumps(batch) + "\n")
    proc.stdin.close()
    seen: list[str] = []
    try:
        for line in proc.stderr:  # the first leads of the file were read and counted
            seen.append(line)
            if "Dry run sample" in line:
                proc.send_signal(signal.SIGTERM)
                break
        seen += proc.stderr.readlines()
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
    stderr = "".join(seen)
    assert proc.returncode == 128 + signal.SIGTERM, stderr[-2000:]
    assert "Received signal 15: stopping without reading more input" in stderr
    summary = [line for line in seen if line.startswith("  leads: received ")]
    assert len(summary) == 1
    received = int(summary[0].split("received ")[1].split(",")[0])
    assert 0 < received < total


# Numbers beyond a double, per record


def test_a_lead_cost_beyond_a_double_is_rejected_never_sent_as_null(sandbox, tmp_path):
    """1e400 and 10**400 were sent as `"leadCost": null`: the source's default cost applied."""
    leads = api_leads(3)
    leads[0]["leadCost"] = "HUGE_DECIMAL"
    leads[1]["leadCost"] = "HUGE_INTEGER"
    lines = [
        line.replace('"HUGE_DECIMAL"', "1e400").replace('"HUGE_INTEGER"', "1" + "0" * 400)
        for line in singer_lines("leads", leads)
    ]
    run = run_target(tmp_path, target_config(sandbox, max_error_rate=1), lines)
    assert run.returncode == 0, run.stderr
    rejected = [line for line in run.stderr.splitlines() if "Lead rejected" in line]
    assert len(rejected) == 2, run.stderr
    assert all("reason=leadCost: not a finite number" in line for line in rejected)
    assert sandbox.stats()["leads_received"] == 1


# Names from the input, printed escaped


HOSTILE = "web\nINFO forged line\r\x1b[31mred\x1b[0m\u2028\u202egnp.exe\x85"


def test_stream_names_and_external_ids_cannot_forge_log_or_summary_lines(sandbox, tmp_path):
    leads = api_leads(3, stream="x")
    leads[0]["externalId"] = "id-1\nINFO forged externalId\u2029"
    leads[1]["phoneNumber"] = "not a phone"  # rejected: logged with stream and externalId
    leads[1]["externalId"] = "id-2\x1b]0;title\x07"
    leads[2]["externalId"] = leads[0]["externalId"]  # merged with lead 0: logged too
    run = run_target(tmp_path, target_config(sandbox), singer_lines(HOSTILE, leads))
    assert run.returncode == 0, run.stderr
    for char in "\r\x1b\x07\x85\u2028\u2029\u202e":
        assert char not in run.stderr, repr(char)
    for line in run.stderr.splitlines():
        assert not line.startswith(("INFO forged", "red", "gnp")), line
    assert printable(HOSTILE) in run.stderr  # the summary names the stream, escaped
    summary = [line for line in run.stderr.splitlines() if ": received 3" in line]
    assert summary == [
        f"  {printable(HOSTILE)}: received 3, succeeded 1, failed 0, rejected 1, "
        "merged 1, skipped 0, unchanged 0"
    ]


def test_a_hostile_stream_name_cannot_forge_the_sdk_lines_either(tmp_path):
    """The SDK logs schema changes with the stream's name, and names each sink's logger
    after it; a dry run logs samples through that logger."""
    lines = list(singer_lines(HOSTILE, api_leads(2)))
    changed = json.loads(lines[0])
    changed["schema"]["properties"]["extra"] = {"type": ["string", "null"]}
    lines.insert(2, json.dumps(changed))
    run = run_target(tmp_path, {"dry_run": True, "sync_store": "off"}, lines)
    assert run.returncode == 0, run.stderr
    assert "Schema has changed for stream" in run.stderr
    assert "Dry run sample" in run.stderr
    for char in "\r\x1b\x85\u2028\u202e":
        assert char not in run.stderr, repr(char)
    for line in run.stderr.splitlines():
        assert not line.startswith(("INFO forged", "red", "gnp")), line


def test_printable_escapes_every_line_breaking_or_terminal_character():
    assert printable("a\nb") == "a\\x0ab"
    assert printable("\x1b[2J") == "\\x1b[2J"
    assert printable("\u202etxt.exe") == "\\u202etxt.exe"
    assert printable("x\u2028y\u2029z\x85") == "x\\u2028y\\u2029z\\x85"
    assert printable("back\\slash") == "back\\\\slash"
    assert printable("Zoë Ñandú 李") == "Zoë Ñandú 李"


@settings(max_examples=500, deadline=None)
@given(st.text())
def test_printable_text_is_one_line_without_control_characters(text):
    out = printable(text)
    assert out.splitlines() == ([out] if out else [])
    unsafe = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}
    assert not any(unicodedata.category(ch) in unsafe for ch in out)
