"""Schema validation of lead-upload requests, as the contract (docs/carecycle-api.md) says.

Pure functions: nothing here touches the network, the store or the clock, so every rule can be
tested from a table. Error items mimic careCycle's (zod-style) shape
``{"path", "message", "expected", "received", "code"}``, where ``received`` is the JSON type
name of the offending value (``"undefined"`` when a required field is missing), never the value.
"""

from __future__ import annotations

import json
import math
import re
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

# A deliberate copy of the contract's fields, limits and enums (the target's reading is the
# field registry, target_carecycle/fields.py): the sandbox checks the target independently, so
# it must not import the target's own reading of the contract, or a mistake there would confirm
# itself. Change both from docs/carecycle-api.md, never one from the other; tests/test_fields.py
# fails while this copy and the registry disagree.
MIN_RECORDS = 1
MAX_RECORDS = 200
MAX_CUSTOM_FIELDS = 50
INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1
TIMEZONE_ABBREVIATIONS = frozenset({"EST", "CST", "MST", "PST"})
GENDERS = ("Male", "Female", "Non-Binary", "Other", "Prefer Not to Say")
MARITAL_STATUSES = (
    "Single",
    "Married",
    "Divorced",
    "Widowed",
    "Separated",
    "Domestic Partnership",
)

_PHONE_RE = re.compile(r"\+1[0-9]{10}|[0-9]{10}|\([0-9]{3}\) [0-9]{3}-[0-9]{4}")
_POSTAL_RE = re.compile(r"[0-9]{5}")
# The documented server pattern, with \d read as ASCII digits as in JavaScript.
_DOB_RE = re.compile(r"^(0[1-9]|1[0-2])[-/](0[1-9]|[12]\d|3[01])[-/]\d{4}$", re.ASCII)

PHONE_FORMATS = "+1XXXXXXXXXX, XXXXXXXXXX or (XXX) XXX-XXXX"

Path = tuple[str | int, ...]


class BadRequest(ValueError):
    """The body is not JSON, or not an object holding a ``records`` list (HTTP 400)."""


@dataclass(frozen=True)
class FieldError:
    """One schema violation, located by its path in the request body."""

    path: Path
    message: str
    expected: str
    received: str
    code: str

    def to_json(self) -> dict[str, Any]:
        """Return the error as careCycle's JSON error item."""
        return {
            "path": list(self.path),
            "message": self.message,
            "expected": self.expected,
            "received": self.received,
            "code": self.code,
        }


def json_type(value: Any) -> str:
    """Return the JSON type name of a decoded JSON value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _type_error(path: Path, expected: str, value: Any) -> FieldError:
    received = json_type(value)
    return FieldError(
        path, f"Expected {expected}, received {received}", expected, received, "invalid_type"
    )


Validator = Callable[[Any, Path], list[FieldError]]


def string_max(limit: int) -> Validator:
    """Build a validator for a string of at most ``limit`` characters."""

    def check(value: Any, path: Path) -> list[FieldError]:
        if not isinstance(value, str):
            return [_type_error(path, "string", value)]
        if len(value) > limit:
            message = f"String must contain at most {limit} character(s)"
            return [
                FieldError(
                    path, message, f"string of at most {limit} characters", "string", "too_big"
                )
            ]
        return []

    return check


def any_string(value: Any, path: Path) -> list[FieldError]:
    """Accept any string."""
    return [] if isinstance(value, str) else [_type_error(path, "string", value)]


def _pattern(regex: re.Pattern[str], expected: str, what: str) -> Validator:
    def check(value: Any, path: Path) -> list[FieldError]:
        if not isinstance(value, str):
            return [_type_error(path, "string", value)]
        if regex.fullmatch(value) is None:
            return [FieldError(path, f"Invalid {what}", expected, "string", "invalid_string")]
        return []

    return check


check_phone = _pattern(_PHONE_RE, PHONE_FORMATS, "phone number")
check_postal_code = _pattern(_POSTAL_RE, "5 digits", "postal code")
check_date_of_birth = _pattern(_DOB_RE, "MM-DD-YYYY or MM/DD/YYYY", "date of birth")


@cache
def _iana_names() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def is_timezone(name: str) -> bool:
    """Tell whether ``name`` is an IANA zone name or one of EST, CST, MST, PST."""
    if name in TIMEZONE_ABBREVIATIONS or name in _iana_names():
        return True
    if _iana_names():
        return False
    try:  # no zone list on this system: ask zoneinfo directly
        zoneinfo.ZoneInfo(name)
    except (ValueError, OSError):
        return False
    return True


def check_timezone(value: Any, path: Path) -> list[FieldError]:
    """Accept an IANA time zone name or EST, CST, MST, PST."""
    if not isinstance(value, str):
        return [_type_error(path, "string", value)]
    if not is_timezone(value):
        expected = "IANA time zone name or EST, CST, MST, PST"
        return [FieldError(path, "Invalid time zone", expected, "string", "invalid_string")]
    return []


def enum_of(values: tuple[str, ...]) -> Validator:
    """Build a validator for exactly one of ``values``."""
    expected = " | ".join(f"'{v}'" for v in values)

    def check(value: Any, path: Path) -> list[FieldError]:
        if isinstance(value, str) and value in values:
            return []
        message = f"Invalid enum value. Expected {expected}"
        return [FieldError(path, message, expected, json_type(value), "invalid_enum_value")]

    return check


def check_int32(value: Any, path: Path) -> list[FieldError]:
    """Accept a JSON integer (not a boolean, not a float) in the signed 32-bit range."""
    if isinstance(value, bool) or not isinstance(value, int):
        return [_type_error(path, "integer", value)]
    if value > INT32_MAX:
        message = f"Number must be less than or equal to {INT32_MAX}"
        return [FieldError(path, message, f"integer <= {INT32_MAX}", "number", "too_big")]
    if value < INT32_MIN:
        message = f"Number must be greater than or equal to {INT32_MIN}"
        return [FieldError(path, message, f"integer >= {INT32_MIN}", "number", "too_small")]
    return []


def check_boolean(value: Any, path: Path) -> list[FieldError]:
    """Accept a JSON boolean only."""
    return [] if isinstance(value, bool) else [_type_error(path, "boolean", value)]


def check_number(value: Any, path: Path) -> list[FieldError]:
    """Accept a finite JSON number (not a boolean)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return [_type_error(path, "number", value)]
    if isinstance(value, float) and not math.isfinite(value):
        return [FieldError(path, "Number must be finite", "number", "number", "not_finite")]
    return []


def _check_custom_field(item: Any, path: Path) -> list[FieldError]:
    if not isinstance(item, dict):
        return [_type_error(path, "object", item)]
    errors = [e for key in ("fieldKey", "value") for e in _required_string(item, key, path)]
    return errors + [
        _unknown_key((*path, key), item[key]) for key in item if key not in ("fieldKey", "value")
    ]


def _required_string(obj: dict[str, Any], key: str, path: Path) -> list[FieldError]:
    if key not in obj:
        return [FieldError((*path, key), "Required", "string", "undefined", "invalid_type")]
    return any_string(obj[key], (*path, key))


def check_custom_fields(value: Any, path: Path) -> list[FieldError]:
    """Accept a list of at most 50 ``{"fieldKey": str, "value": str}`` objects."""
    if not isinstance(value, list):
        return [_type_error(path, "array", value)]
    if len(value) > MAX_CUSTOM_FIELDS:
        message = f"Array must contain at most {MAX_CUSTOM_FIELDS} element(s)"
        expected = f"array of at most {MAX_CUSTOM_FIELDS} items"
        return [FieldError(path, message, expected, "array", "too_big")]
    return [e for i, item in enumerate(value) for e in _check_custom_field(item, (*path, i))]


def _unknown_key(path: Path, value: Any) -> FieldError:
    message = f"Unrecognized key: '{path[-1]}'"
    return FieldError(path, message, "no such field", json_type(value), "unrecognized_keys")


_S255 = string_max(255)
_S50 = string_max(50)

FIELD_VALIDATORS: dict[str, Validator] = {
    "phoneNumber": check_phone,
    "postalCode": check_postal_code,
    "timezone": check_timezone,
    **dict.fromkeys(
        ("firstName", "lastName", "email", "city", "county", "address", "address2"), _S255
    ),
    **dict.fromkeys(("state", "language", "filingStatus"), _S50),
    "dateOfBirth": check_date_of_birth,
    "gender": enum_of(GENDERS),
    "maritalStatus": enum_of(MARITAL_STATUSES),
    "dependentCount": check_int32,
    "householdIncome": check_int32,
    **dict.fromkeys(
        (
            "isDecisionMaker",
            "medicaid",
            "veteran",
            "socialSecurityDisability",
            "doNotCall",
            "doNotSMS",
            "doNotEmail",
            "doNotMail",
        ),
        check_boolean,
    ),
    **dict.fromkeys(
        (
            "medicaidNumber",
            "vaNumber",
            "carrierAssignedCustomerId",
            "healthSherpaCustomerId",
            "mbiNumber",
            "externalId",
        ),
        _S255,
    ),
    "sourceId": any_string,
    "leadCost": check_number,
    "customFields": check_custom_fields,
}
"""Every field the upload accepts, with its rule; any other key is an error."""


def _check_location(record: dict[str, Any], path: Path) -> list[FieldError]:
    """Require postalCode or timezone (each one's own format is checked separately)."""
    if record.get("postalCode") is not None or record.get("timezone") is not None:
        return []
    received = "null" if "postalCode" in record else "undefined"
    message = "postalCode is required when timezone is absent"
    return [FieldError((*path, "postalCode"), message, "string", received, "custom")]


def validate_record(record: Any, index: int) -> list[FieldError]:
    """Return every schema violation of ``records[index]`` (empty when valid)."""
    path: Path = ("records", index)
    if not isinstance(record, dict):
        return [_type_error(path, "object", record)]
    errors: list[FieldError] = []
    if record.get("phoneNumber") is None:
        received = "null" if "phoneNumber" in record else "undefined"
        message = "Required" if received == "undefined" else "Expected string, received null"
        errors.append(
            FieldError((*path, "phoneNumber"), message, "string", received, "invalid_type")
        )
    for key, value in record.items():
        validator = FIELD_VALIDATORS.get(key)
        if validator is None:
            errors.append(_unknown_key((*path, key), value))
        elif value is not None:
            errors.extend(validator(value, (*path, key)))
    return errors + _check_location(record, path)


def failed_record(record: Any, index: int) -> dict[str, Any]:
    """Summarise a rejected record as careCycle's ``failedRecords`` item."""
    fields = ("phoneNumber", "firstName", "lastName", "externalId")
    source = record if isinstance(record, dict) else {}
    summary: dict[str, Any] = {"index": index}
    for name in fields:
        value = source.get(name)
        summary[name] = value if isinstance(value, str) else None
    return summary


def _count_error(records: list[Any]) -> FieldError | None:
    if len(records) < MIN_RECORDS:
        message = f"Array must contain at least {MIN_RECORDS} element(s)"
        return FieldError(("records",), message, "1 to 200 records", "array", "too_small")
    if len(records) > MAX_RECORDS:
        message = f"Array must contain at most {MAX_RECORDS} element(s)"
        return FieldError(("records",), message, "1 to 200 records", "array", "too_big")
    return None


def validate_records(records: list[Any]) -> tuple[list[FieldError], list[dict[str, Any]]]:
    """Validate a ``records`` list: return (errors, failedRecords), both empty when valid."""
    count_error = _count_error(records)
    if count_error is not None:
        return [count_error], []
    errors: list[FieldError] = []
    failed: list[dict[str, Any]] = []
    for index, record in enumerate(records):
        record_errors = validate_record(record, index)
        if record_errors:
            errors.extend(record_errors)
            failed.append(failed_record(record, index))
    return errors, failed


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse_body(raw: bytes) -> list[Any]:
    """Decode a request body and return its ``records`` list, or raise BadRequest."""
    try:
        body = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise BadRequest("Request body is not valid JSON") from exc
    if not isinstance(body, dict):
        raise BadRequest("Request body must be a JSON object")
    records = body.get("records")
    if not isinstance(records, list):
        raise BadRequest("Request body must hold a 'records' array")
    return records


def to_e164(phone: str) -> str:
    """Normalise a phone number in one of the accepted formats to E.164 (+1XXXXXXXXXX)."""
    digits = "".join(ch for ch in phone if ch in "0123456789")
    return "+" + digits if len(digits) == 11 else "+1" + digits
