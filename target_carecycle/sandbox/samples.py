"""Deterministic fake leads and Singer messages for tests, benchmarks and demos.

Phone numbers are valid-looking NANP numbers; they only ever go to the sandbox.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

_AREA_CODES = ("312", "415", "617", "212", "305", "713", "512", "206", "404", "602")
_FIRST = ("Ana", "Ben", "Carla", "Dev", "Elena", "Frank", "Grace", "Hugo", "Iris", "Jon")
_LAST = ("Smith", "Garcia", "Nguyen", "Okafor", "Rossi", "Kim", "Lopez", "Brown", "Cohen", "Ali")
_ZIPS = ("60614", "94110", "02134", "10001", "33101", "77002", "78701", "98101", "30303", "85004")


def phone_for(index: int) -> str:
    """Return a distinct, valid US number in E.164 for each index below 8,000,000."""
    area = _AREA_CODES[index % len(_AREA_CODES)]
    rest = index // len(_AREA_CODES)
    exchange = 200 + (rest // 10_000) % 700
    if exchange % 100 == 11 or exchange == 555:
        exchange += 1
    return f"+1{area}{exchange:03d}{rest % 10_000:04d}"


def api_lead(index: int, stream: str = "leads") -> dict[str, Any]:
    """One lead already in careCycle's request shape."""
    return {
        "externalId": f"{stream}-{index}",
        "phoneNumber": phone_for(index),
        "firstName": _FIRST[index % len(_FIRST)],
        "lastName": _LAST[(index // 10) % len(_LAST)],
        "postalCode": _ZIPS[index % len(_ZIPS)],
        "email": f"lead{index}@example.com",
        "dateOfBirth": f"{1 + index % 12:02d}-{1 + index % 28:02d}-{1940 + index % 50}",
        "gender": ("Male", "Female")[index % 2],
    }


def api_leads(count: int, stream: str = "leads", start: int = 0) -> list[dict[str, Any]]:
    """`count` distinct API-shaped leads."""
    return [api_lead(i, stream) for i in range(start, start + count)]


LEAD_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        name: {"type": ["string", "null"]}
        for name in (
            "externalId",
            "phoneNumber",
            "firstName",
            "lastName",
            "postalCode",
            "email",
            "dateOfBirth",
            "gender",
        )
    },
}


def singer_lines(
    stream: str,
    records: Iterable[Mapping[str, Any]],
    *,
    schema: Mapping[str, Any] | None = None,
    key_properties: list[str] | None = None,
    state: Mapping[str, Any] | None = None,
) -> Iterator[str]:
    """Yield SCHEMA, RECORDs, then (optionally) a STATE, as Singer JSON lines."""
    yield json.dumps(
        {
            "type": "SCHEMA",
            "stream": stream,
            "schema": dict(schema or LEAD_SCHEMA),
            "key_properties": key_properties or [],
        }
    )
    for record in records:
        yield json.dumps({"type": "RECORD", "stream": stream, "record": dict(record)})
    if state is not None:
        yield json.dumps({"type": "STATE", "value": dict(state)})
