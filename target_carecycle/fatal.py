"""How a run that cannot go on says so: one ERROR line that names the cause and what to do.

Every fatal condition goes through `log_fatal`, so it reaches stderr through `logging` at
ERROR: Meltano's structured logging shows it as `[error]`, a plain pipe as one line. The
line never holds a value from a record or a secret.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from typing import Any

from singer_sdk.logging import ConsoleFormatter

from target_carecycle.printable import escape_log_handlers, printable
from target_carecycle.sdk_shims import failing_map_expression
from target_carecycle.singer_input import safe_name

LOGGER_NAME = "target-carecycle"

logger = logging.getLogger(LOGGER_NAME)


class StreamMapFailed(Exception):
    """A stream map cannot be applied; the message names stream, property and expression."""


def log_fatal(reason: str) -> None:
    """Log `target-carecycle: <reason>` at ERROR, on one line.

    The SDK's CLI configures logging before any of our code runs; when something else called
    us first (a library user, a test), a handler like the SDK's is added so the line is not
    lost or reduced to Python's bare last-resort output.
    """
    ensure_logging()
    logger.error("%s: %s", LOGGER_NAME, printable(reason, backslash=False))


def ensure_logging() -> None:
    """Give the root logger the SDK's console handler when nothing configured logging yet."""
    root = logging.getLogger()
    if root.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(ConsoleFormatter())
    root.addHandler(handler)
    escape_log_handlers(root)
    if root.level == logging.NOTSET or root.level > logging.INFO:
        root.setLevel(logging.INFO)


def stream_map_failure(
    stream: object, error: BaseException, stream_maps: Any
) -> StreamMapFailed | None:
    """A StreamMapFailed naming the stream, property and expression, if `error` is one.

    The expression comes from the `stream_maps` setting (or from the SDK's frame evaluating
    it, which holds the same text), never from the record; the kind of error is its class
    name, never its message (which may quote a value).
    """
    found = failing_map_expression(error)
    if found is None and not _is_mapping_error(error):
        return None  # not an expression's failure (say, a sink's): not ours to name
    config = stream_maps.get(stream) if isinstance(stream_maps, Mapping) else None
    if found is None and isinstance(config, Mapping):
        # The SDK's MappingError messages quote the expression as configured: the longest
        # expression of this stream's map that the message quotes is the one.
        text = str(error)
        quoted = [
            (str(prop), expression)
            for prop, expression in config.items()
            if isinstance(expression, str) and expression and expression in text
        ]
        found = max(quoted, key=lambda item: len(item[1]), default=None)
    cause = error.__cause__ or error
    kind = type(cause).__name__
    name = safe_name(stream)
    if found is None:
        return StreamMapFailed(
            f"stream_maps cannot be applied to stream '{name}' ({kind}): check stream_maps.{name}"
        )
    prop, expression = found
    return StreamMapFailed(
        f"stream_maps cannot be applied to stream '{name}': property '{printable(prop, 80)}' "
        f"expression `{printable(expression)}` failed ({kind}); "
        f"fix stream_maps.{name}.{printable(prop, 80)}"
    )


def _is_mapping_error(error: BaseException) -> bool:
    from singer_sdk.exceptions import MappingError

    return isinstance(error, MappingError)
