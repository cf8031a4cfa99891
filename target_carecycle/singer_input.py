"""Reading Singer input: lines counted, messages checked, BATCH files read, nothing echoed.

A line that cannot be used stops the run with `line N: <what is wrong>`; the reason never
holds the line's content (it may carry personal data). A record that is not an object, or is
nested too deep, is not a broken line: it reaches the target as `UnusableRecord` and is
rejected like any other invalid record.
"""

from __future__ import annotations

import decimal
import gzip
import importlib.util
import re
import sys
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO, Any, cast
from urllib.parse import urlsplit, urlunsplit

import msgspec
from singer_sdk.contrib.msgspec import MsgSpecReader
from singer_sdk.exceptions import RecordsWithoutSchemaException

from target_carecycle.printable import printable
from target_carecycle.sdk_shims import BatchConfig, StorageTarget

if sys.version_info >= (3, 12):
    from typing import override
else:  # singer-sdk brings typing_extensions on Python < 3.13
    from typing_extensions import override

MAX_RECORD_DEPTH = 100
# The longest line the target reads, on standard input or in a BATCH file: 16 MiB, the line
# break not counted. A lead uses at most ~20 KB of a record (fields of 255 characters, 50
# custom fields); a tap's widest rows are far below this. A longer line is a broken or binary
# input (a file without line breaks, /dev/zero): it stops the run, read in bounded memory.
MAX_LINE_BYTES = 16 * 1024 * 1024
_CHUNK_BYTES = 64 * 1024
LINE_TOO_LONG = f"longer than {MAX_LINE_BYTES // (1024 * 1024)} MiB, the longest line read"
UTF8_BOM = b"\xef\xbb\xbf"
MESSAGE_TYPES = frozenset({"RECORD", "SCHEMA", "STATE", "ACTIVATE_VERSION", "BATCH"})
_SAFE_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,100}")
_MESSAGE_TYPE_NAME = re.compile(r"[A-Z][A-Z_]{0,39}")
_decoder = msgspec.json.Decoder(float_hook=decimal.Decimal)


class BadInput(Exception):
    """The input cannot be used; the message is safe to print (no content from the input)."""


class InputLineError(Exception):
    """A line of input cannot be used: `line N: reason`."""

    def __init__(self, line: int, reason: str) -> None:
        super().__init__(f"line {line}: {reason}")
        self.line = line
        self.reason = reason


class NoSchemaYet(BadInput, RecordsWithoutSchemaException):
    """A RECORD or BATCH arrived for a stream before its SCHEMA (the SDK's exception too)."""


class NoSchemaYetLine(InputLineError, RecordsWithoutSchemaException):
    """NoSchemaYet with its line number; still the SDK's RecordsWithoutSchemaException."""


class UnusableRecord:
    """Stands in for a RECORD's `record` that is not an object the target can map."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


def safe_name(value: Any, pattern: re.Pattern[str] = _SAFE_NAME) -> str:
    """`value` when it looks like a stream name (or `pattern`), else a placeholder."""
    text = value if isinstance(value, str) else ""
    return text if pattern.fullmatch(text) else "<unprintable name>"


def decode_line(line: bytes | str) -> Any:
    """Decode one JSON line; BadInput says why not, without quoting it."""
    try:
        return _decoder.decode(line)
    except RecursionError:
        return _decode_too_deep(line.encode() if isinstance(line, str) else line)
    except UnicodeDecodeError:
        raise BadInput("not valid UTF-8") from None
    except msgspec.DecodeError as exc:
        raise BadInput(_json_problem(exc)) from None


def _json_problem(exc: msgspec.DecodeError) -> str:
    text = str(exc)
    if "truncated" in text:
        return "not valid JSON (the line ends early: truncated?)"
    where = re.search(r"\(byte (\d+)\)", text)
    return "not valid JSON" + (f" (at byte {where.group(1)})" if where else "")


def _decode_too_deep(line: bytes) -> Any:
    """A message whose `record` nests too deep to decode: the record becomes UnusableRecord."""
    span = top_level_spans(line).get("record")
    if span is None:
        raise BadInput("nested too deep to read")
    start, end = span
    try:
        message = _decoder.decode(line[:start] + b"null" + line[end:])
    except (RecursionError, msgspec.DecodeError, UnicodeDecodeError):
        raise BadInput("nested too deep to read") from None
    if isinstance(message, dict):
        message["record"] = UnusableRecord(
            f"record is nested more than {MAX_RECORD_DEPTH} levels deep"
        )
    return message


def top_level_spans(data: bytes) -> dict[str, tuple[int, int]]:
    """Byte spans of the values of a top-level JSON object, by key, found without recursion."""
    spans: dict[str, tuple[int, int]] = {}
    depth, index, size = 0, 0, len(data)
    key: str | None = None
    value_start = 0
    expect_key = False
    while index < size:
        char = data[index]
        if char == 0x22:  # a string: skip it, escapes included
            end = index + 1
            while end < size and data[end] != 0x22:
                end += 2 if data[end] == 0x5C else 1
            if depth == 1 and expect_key:
                decoded = _decoder.decode(data[index : end + 1]) if end < size else None
                key = decoded if isinstance(decoded, str) else None
                expect_key = False
            index = end + 1
            continue
        if char in b"{[":
            depth += 1
            expect_key = depth == 1 and char == 0x7B
        elif char in b"}]":
            if depth == 1 and key is not None:
                spans[key] = (value_start, index)
                key = None
            depth -= 1
        elif depth == 1 and char == 0x3A:  # ':'
            value_start = index + 1
        elif depth == 1 and char == 0x2C:  # ','
            if key is not None:
                spans[key] = (value_start, index)
            key, expect_key = None, True
        index += 1
    return spans


def nested_deeper_than(value: Any, limit: int) -> bool:
    """True when `value` holds objects or arrays nested more than `limit` levels deep."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if type(item) is dict else item
        for child in children:
            if type(child) is dict or type(child) is list:
                if depth >= limit:
                    return True
                stack.append((child, depth + 1))
    return False


def usable_record(record: Any) -> str | None:
    """Why a RECORD's `record` cannot be mapped to a lead, or None when it can."""
    if isinstance(record, UnusableRecord):
        return record.reason
    if type(record) is not dict:
        kind = "null" if record is None else _json_kind(record)
        return f"record is {kind}, not an object"
    for value in record.values():  # cheap test first: most records are flat
        if type(value) is dict or type(value) is list:
            if nested_deeper_than(record, MAX_RECORD_DEPTH):
                return f"record is nested more than {MAX_RECORD_DEPTH} levels deep"
            break
    return None


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float, decimal.Decimal)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "not an object"


def check_message(message: Any) -> str:
    """Return the message's type after checking the keys its handler needs; else BadInput."""
    if type(message) is not dict:
        raise BadInput("not a Singer message (expected a JSON object with a `type`)")
    kind = message.get("type")
    if kind is None:
        raise BadInput("message has no `type`")
    if kind not in MESSAGE_TYPES:
        raise BadInput(f"unknown message type {safe_name(kind, _MESSAGE_TYPE_NAME)}")
    if kind == "RECORD":
        _require_stream(message, kind)
        if "record" not in message:
            raise BadInput("RECORD message has no `record`")
    elif kind == "SCHEMA":
        _check_schema_message(message)
    elif kind == "STATE":
        if type(message.get("value")) is not dict:
            raise BadInput("STATE message's `value` is not an object")
    elif kind == "ACTIVATE_VERSION":
        _require_stream(message, kind)
        if not isinstance(message.get("version"), int):
            raise BadInput("ACTIVATE_VERSION message has no integer `version`")
    else:
        _check_batch_message(message)
    return str(kind)


def _require_stream(message: dict[str, Any], kind: str) -> None:
    stream = message.get("stream")
    if not isinstance(stream, str) or not stream:
        raise BadInput(f"{kind} message has no `stream` name")


def _check_schema_message(message: dict[str, Any]) -> None:
    _require_stream(message, "SCHEMA")
    schema = message.get("schema")
    if type(schema) is not dict or type(schema.get("properties")) is not dict:
        raise BadInput("SCHEMA message has no `schema` object with `properties`")
    keys = message.get("key_properties")
    if keys is not None and (type(keys) is not list or not all(isinstance(k, str) for k in keys)):
        raise BadInput("SCHEMA message's `key_properties` is not a list of names")


def _check_batch_message(message: dict[str, Any]) -> None:
    _require_stream(message, "BATCH")
    encoding = message.get("encoding")
    if type(encoding) is not dict or not isinstance(encoding.get("format"), str):
        raise BadInput("BATCH message has no `encoding` with a `format`")
    manifest = message.get("manifest")
    if type(manifest) is not list or not all(isinstance(p, str) for p in manifest):
        raise BadInput("BATCH message's `manifest` is not a list of file URLs")


class LineCountingReader(MsgSpecReader):
    """The SDK's msgspec reader, counting lines so every problem names its line.

    Reads standard input as bytes (invalid UTF-8 is then a reason, not a crash) and never
    logs a line: the SDK's reader logs and raises with the line's content.
    """

    def __init__(self) -> None:
        super().__init__()
        self.line_number = 0
        self.done_reading = False

    @override
    def process_lines(
        self,
        file_input: IO[Any] | None,
        callbacks: dict[str, Callable[[dict[str, Any]], None]],
    ) -> Counter[str]:
        """Check and dispatch each line; BadInput from a handler gains the line number."""
        handlers = {getattr(kind, "value", kind): handler for kind, handler in callbacks.items()}
        stats: dict[str, int] = defaultdict(int)
        readline = _binary(file_input if file_input is not None else sys.stdin).readline
        while True:
            self.line_number += 1
            try:
                line = readline(MAX_LINE_BYTES + 1)  # bounded: no line grows without end
                if not line:
                    break
                if len(line) > MAX_LINE_BYTES and line[-1:] not in (b"\n", "\n"):
                    raise BadInput(f"{LINE_TOO_LONG} (no line break: a broken or binary input?)")
                if self.line_number == 1:
                    line = _without_bom(line)
                if not line.strip():
                    continue
                message = decode_line(line)
                kind = check_message(message)
                handlers[kind](message)
            except UnicodeDecodeError:  # text input (`--input FILE`) decodes as it reads
                raise InputLineError(self.line_number, "not valid UTF-8") from None
            except BadInput as exc:
                error = NoSchemaYetLine if isinstance(exc, NoSchemaYet) else InputLineError
                raise error(self.line_number, str(exc)) from None
            stats[kind] += 1
        self.line_number -= 1
        self.done_reading = True
        return Counter(stats)

    @override
    def deserialize_json(self, line: str) -> dict[str, Any]:
        """Decode a line without ever logging or quoting it.

        Only the SDK's `process_lines` calls this, and it is overridden above, where
        check_message turns away a line that is not an object.
        """
        return cast("dict[str, Any]", decode_line(line))  # msgspec decodes to Any


def _without_bom(line: bytes | str) -> bytes | str:
    """The first line without a UTF-8 byte order mark (some Windows tools write one)."""
    if isinstance(line, bytes):
        return line.removeprefix(UTF8_BOM)
    return line.removeprefix("\ufeff")


def _binary(source: IO[Any]) -> IO[Any]:
    """The byte stream under a text file, so a decoding error names its own line."""
    return getattr(source, "buffer", None) or source


# BATCH files


def describe_url(url: str) -> str:
    """The file URL without user name, password, query or fragment (a signed URL's secrets)."""
    parts = urlsplit(url)
    if parts.username or parts.password:
        host = parts.hostname or ""
        parts = parts._replace(netloc=host + (f":{parts.port}" if parts.port else ""))
    return urlunsplit(parts._replace(query="", fragment=""))


def batch_records(
    encoding: dict[str, Any], url: str, batch_config: BatchConfig | None
) -> Iterator[Any]:
    """Yield the records of one SDK batch file, in file order (read as it goes, not at once).

    Supports JSONL (gzip or not) and, when pyarrow is installed, parquet: what the SDK reads.
    """
    name = printable(describe_url(url), 300)
    fmt, compression = encoding.get("format"), encoding.get("compression")
    if fmt == "jsonl":
        with _open_batch_file(url, batch_config, name) as raw:
            handle = gzip.GzipFile(fileobj=raw, mode="rb") if compression == "gzip" else raw
            yield from _jsonl_records(handle, name)
    elif fmt == "parquet":
        if importlib.util.find_spec("pyarrow") is None:
            raise BadInput(f"batch file {name}: parquet needs pyarrow (pip install pyarrow)")
        import pyarrow.parquet as pq

        with _open_batch_file(url, batch_config, name) as raw:
            try:
                table = pq.read_table(raw)
            except Exception as exc:
                raise BadInput(f"batch file {name}: not readable as parquet") from exc
        yield from table.to_pylist()
    else:
        raise BadInput(f"batch file {name}: unsupported format {safe_name(fmt)}")


@contextmanager
def _open_batch_file(url: str, batch_config: BatchConfig | None, name: str) -> Iterator[IO[bytes]]:
    """Open a manifest entry the way the SDK's `Sink.process_batch_files` does."""
    try:
        head, tail = StorageTarget.split_url(url)
        storage = batch_config.storage if batch_config else StorageTarget.from_url(head)
        opened = storage.open(tail, mode="rb")
        handle = opened.__enter__()
    except Exception as exc:
        raise BadInput(f"batch file {name}: cannot be opened ({_os_reason(exc)})") from None
    try:
        yield handle
    finally:
        opened.__exit__(None, None, None)


def _os_reason(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or type(exc).__name__


def bounded_lines(read: Callable[[int], bytes], limit: int = MAX_LINE_BYTES) -> Iterator[bytes]:
    """The lines of a byte stream read in chunks (line breaks dropped), none over `limit`.

    Raises LineTooLong as soon as a line passes `limit`: memory stays bounded whatever the
    stream holds (a file without line breaks, /dev/zero), and each chunk read is a point where
    a stop signal is handled. (fsspec's `readline` takes no size: reading whole lines from a
    remote file could not be bounded.)
    """
    parts: list[bytes] = []
    size = 0
    while True:
        chunk = read(_CHUNK_BYTES)
        if not chunk:
            break
        end = chunk.find(b"\n")
        if end < 0:
            parts.append(chunk)
            size += len(chunk)
            if size > limit:
                raise LineTooLong
            continue
        head = chunk[:end]
        if size + len(head) > limit:
            raise LineTooLong
        yield b"".join([*parts, head]) if parts else head
        lines = chunk[end + 1 :].split(b"\n")
        tail = lines.pop()
        for line in lines:
            if len(line) > limit:
                raise LineTooLong
            yield line
        parts, size = ([tail], len(tail)) if tail else ([], 0)
        if size > limit:
            raise LineTooLong
    if parts:
        yield b"".join(parts)


class LineTooLong(Exception):
    """A line is longer than MAX_LINE_BYTES."""


def _jsonl_records(handle: IO[bytes] | gzip.GzipFile, name: str) -> Iterator[Any]:
    number = 0
    lines = bounded_lines(handle.read)
    while True:
        try:
            line = next(lines, None)
        except LineTooLong:
            raise BadInput(f"batch file {name}, line {number + 1}: {LINE_TOO_LONG}") from None
        except (OSError, EOFError) as exc:
            raise BadInput(f"batch file {name}: cannot be read ({_os_reason(exc)})") from None
        if line is None:
            return
        number += 1
        if not line.strip():
            continue
        try:
            record = _decoder.decode(line)
        except RecursionError:
            record = UnusableRecord(f"record is nested more than {MAX_RECORD_DEPTH} levels deep")
        except (msgspec.DecodeError, UnicodeDecodeError) as exc:
            why = _json_problem(exc) if isinstance(exc, msgspec.DecodeError) else "not valid UTF-8"
            raise BadInput(f"batch file {name}, line {number}: {why}") from None
        yield record
