"""Text from the input made safe to print on one line of a log or a summary.

Stream names, externalIds and record keys come from the tap. Printed as they are, a newline
or a carriage return forges a log or summary line, an ESC sequence drives the operator's
terminal, and a bidi override (U+202E) makes a line read differently from what it holds.
`printable` escapes every such character, JSON-style, and the backslash itself, so the
escaped text is unambiguous. Files that are JSON (reject, results, STATE) need none of this:
their encoder escapes what JSON requires, and a reader decodes it back.
"""

from __future__ import annotations

import logging
import re
import unicodedata

# Control characters (C0, DEL, C1), format characters (bidi overrides and isolates, zero
# widths, BOM, soft hyphen), line and paragraph separators, surrogates, private-use and
# unassigned code points: all printed as escapes.
_ESCAPED_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"})
_MAYBE_UNSAFE = re.compile(r"[^\x20-\x5b\x5d-\x7e]")  # anything but printable ASCII minus "\"
_MAYBE_UNSAFE_KEEP_BACKSLASH = re.compile(r"[^\x20-\x7e]")


def _escape(char: str) -> str:
    if char == "\\":
        return "\\\\"
    if unicodedata.category(char) not in _ESCAPED_CATEGORIES:
        return char
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def printable(value: object, limit: int | None = None, *, backslash: bool = True) -> str:
    r"""`value` as text on one line: control, format and separator characters escaped.

    `backslash`: escape `\\` too, so no name can pass for an escape. `limit` cuts the result
    (after escaping) and marks the cut with `...`.
    """
    text = value if isinstance(value, str) else str(value)
    unsafe = _MAYBE_UNSAFE if backslash else _MAYBE_UNSAFE_KEEP_BACKSLASH
    if unsafe.search(text):
        text = unsafe.sub(lambda match: _escape(match.group(0)), text)
    if limit is not None and len(text) > limit:
        text = text[: max(0, limit - 3)] + "..."
    return text


class PrintableLogRecords(logging.Filter):
    """A handler filter: every log line is printed with `printable` (one line, no escapes).

    Attached to the handlers the SDK sets up, so lines the SDK itself logs with a stream name
    ("Schema has changed for stream '...'") cannot forge lines either. Tracebacks (debug
    level only) are formatted separately and keep their line breaks.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Escape the formatted message and the logger's name in place; never drops a record.

        The name too: the SDK names each sink's logger after its stream.
        """
        message = record.getMessage()
        escaped = printable(message, backslash=False)
        if escaped != message:
            record.msg, record.args = escaped, None
        record.name = printable(record.name, backslash=False)
        return True


def escape_log_handlers(logger: logging.Logger | None = None) -> None:
    """Attach `PrintableLogRecords` to the handlers of `logger` (the root logger), once each."""
    for handler in (logger or logging.getLogger()).handlers:
        if not any(isinstance(f, PrintableLogRecords) for f in handler.filters):
            handler.addFilter(PrintableLogRecords())


__all__ = ["PrintableLogRecords", "escape_log_handlers", "printable"]
