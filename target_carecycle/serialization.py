"""JSON encoding for what the SDK hands us: Decimal, datetime, date and time values included."""

from __future__ import annotations

from typing import Any

import msgspec

_encoder = msgspec.json.Encoder(enc_hook=str, decimal_format="number")


def dumps_json(value: Any) -> bytes:
    """Encode `value` as compact UTF-8 JSON (Decimal as a number, dates in ISO 8601)."""
    return _encoder.encode(value)
