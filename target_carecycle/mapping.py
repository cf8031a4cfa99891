"""Per-stream mapping of Singer records onto raw careCycle leads (pure: no I/O, no logging).

``parse_streams_setting`` validates the target's ``streams`` setting once;
``StreamMapper`` is built once per stream and turns each record into a raw lead dict
(careCycle field names -> raw values, ``customFields`` items and an ``externalId``),
which :func:`target_carecycle.leads.normalise_lead` then normalises and validates.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any, NamedTuple

from target_carecycle.fields import ALIASES, LEAD_FIELDS, MAX_CUSTOM_FIELDS, PERSONAL_FIELDS
from target_carecycle.leads import canonical_text, is_huge, scientific_text

__all__ = [
    "ALIASES",
    "EXTERNAL_ID_MAX_LENGTH",
    "EXTERNAL_ID_SOURCES",
    "STREAM_SETTING_KEYS",
    "MappingConfigError",
    "PersonalExternalId",
    "StreamMapper",
    "StreamSettings",
    "normalise_column_name",
    "parse_streams_setting",
    "personal_external_id",
    "settings_for_stream",
]

EXTERNAL_ID_MAX_LENGTH = 255
EXTERNAL_ID_SOURCES = ("setting", "fields", "column", "key_properties", "content_hash")
STREAM_SETTING_KEYS = (
    "fields",
    "custom_fields",
    "source_id",
    "lead_cost",
    "external_id",
    "enabled",
)
_HASH_HEX_DIGITS = 32
_PLAN_CACHE_LIMIT = 1024
_METADATA_PREFIX = "_sdc_"

_SEPARATORS = re.compile(r"[\s_\-]+")
_AUTO_FIELDS = tuple(name for name in LEAD_FIELDS if name != "customFields")
_FIELD_BY_LOWER = {name.lower(): name for name in _AUTO_FIELDS}


def normalise_column_name(name: str) -> str:
    """Lower-case a column name and drop spaces, dashes and underscores."""
    return _SEPARATORS.sub("", name.lower())


def _alias_lookup() -> dict[str, tuple[int, str]]:
    lookup: dict[str, tuple[int, str]] = {}
    for rank, (alias, lead_field) in enumerate(ALIASES.items(), start=2):
        lookup.setdefault(normalise_column_name(alias), (rank, lead_field))
    for name in _AUTO_FIELDS:  # camelCase written with separators: "Phone Number"
        lookup.setdefault(normalise_column_name(name), (len(lookup) + 2, name))
    return lookup


_ALIAS_LOOKUP = _alias_lookup()


@functools.lru_cache(maxsize=4096)
def _auto_field(key: str) -> tuple[int, str] | None:
    """(rank, lead field) a record key maps to automatically; lower rank wins."""
    if key in LEAD_FIELDS and key != "customFields":
        return (0, key)
    exact = _FIELD_BY_LOWER.get(key.lower())
    if exact is not None:
        return (1, exact)
    return _ALIAS_LOOKUP.get(normalise_column_name(key))


# --------------------------------------------------------------------------- settings


class MappingConfigError(ValueError):
    """The ``streams`` setting is invalid; the message names the stream and the setting."""


Path = tuple[str, ...]


@dataclass(frozen=True)
class StreamSettings:
    """One stream's parsed mapping settings (paths pre-split on dots)."""

    enabled: bool = True
    fields: Mapping[str, Path] = field(default_factory=dict)
    custom_fields: Mapping[str, Path] = field(default_factory=dict)
    source_id: str | None = None
    lead_cost: int | float | None = None
    external_id: Path | None = None


def _parse_path(where: str, value: Any) -> Path:
    """Split a dotted path; reject empty paths and empty segments."""
    if not isinstance(value, str) or not value.strip():
        raise MappingConfigError(f"{where}: must be a non-empty dotted path string")
    segments = tuple(value.strip().split("."))
    if any(not segment for segment in segments):
        raise MappingConfigError(f"{where}: path {value!r} has an empty segment")
    return segments


def _suggest_field(name: str) -> str:
    """Return ' (did you mean ...?)' for a near-miss lead field name, else ''."""
    guess = _auto_field(name)
    if guess is not None:
        return f" (did you mean {guess[1]!r}?)"
    close = difflib.get_close_matches(name, list(LEAD_FIELDS), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _parse_fields(where: str, value: Any) -> dict[str, Path]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise MappingConfigError(f"{where}: must be an object {{leadField: 'dotted.path'}}")
    fields: dict[str, Path] = {}
    for name, path in value.items():
        if name == "customFields":
            raise MappingConfigError(f"{where}: 'customFields' is set with custom_fields")
        if name not in LEAD_FIELDS:
            hint = _suggest_field(str(name))
            raise MappingConfigError(f"{where}: {name!r} is not a careCycle lead field{hint}")
        fields[name] = _parse_path(f"{where}.{name}", path)
    return fields


def _parse_custom_fields(where: str, value: Any) -> dict[str, Path]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise MappingConfigError(f"{where}: must be an object {{fieldKey: 'dotted.path'}}")
    if len(value) > MAX_CUSTOM_FIELDS:
        raise MappingConfigError(
            f"{where}: {len(value)} custom fields, careCycle takes at most {MAX_CUSTOM_FIELDS}"
        )
    custom: dict[str, Path] = {}
    for key, path in value.items():
        if not isinstance(key, str) or not key.strip():
            raise MappingConfigError(f"{where}: field keys must be non-empty strings")
        custom[key.strip()] = _parse_path(f"{where}.{key}", path)
    return custom


def _parse_source_id(where: str, value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise MappingConfigError(f"{where}: must be a non-empty string")
    return value.strip()


def _parse_lead_cost(where: str, value: Any) -> int | float | None:
    if value is None:
        return None
    problem = MappingConfigError(f"{where}: must be a non-negative number")
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal | str):
        raise problem
    try:
        number = Decimal(value.strip() if isinstance(value, str) else str(value))
    except InvalidOperation:
        raise problem from None
    if not number.is_finite() or number < 0 or not math.isfinite(float(number)):
        raise problem  # beyond a double (1e400): float() is infinite, sent as null
    return int(number) if number == number.to_integral_value() else float(number)


def _parse_stream(name: str, config: Any) -> StreamSettings:
    """Validate one stream's settings."""
    where = f"streams.{name}"
    if not isinstance(config, Mapping):
        raise MappingConfigError(f"{where}: must be an object")
    for key in config:
        if key not in STREAM_SETTING_KEYS:
            close = difflib.get_close_matches(str(key), STREAM_SETTING_KEYS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            allowed = ", ".join(STREAM_SETTING_KEYS)
            raise MappingConfigError(f"{where}: unknown setting {key!r}{hint}; allowed: {allowed}")
    enabled = config.get("enabled", True)
    if not isinstance(enabled, bool):
        raise MappingConfigError(f"{where}.enabled: must be true or false")
    external_id = config.get("external_id")
    return StreamSettings(
        enabled=enabled,
        fields=_parse_fields(f"{where}.fields", config.get("fields")),
        custom_fields=_parse_custom_fields(f"{where}.custom_fields", config.get("custom_fields")),
        source_id=_parse_source_id(f"{where}.source_id", config.get("source_id")),
        lead_cost=_parse_lead_cost(f"{where}.lead_cost", config.get("lead_cost")),
        external_id=None
        if external_id is None
        else _parse_path(f"{where}.external_id", external_id),
    )


def parse_streams_setting(value: Mapping[str, Any] | str | None) -> dict[str, StreamSettings]:
    """Validate the ``streams`` setting (an object, or its JSON text) and parse every stream.

    Raises MappingConfigError with a one-line message naming the stream and setting.
    """
    if value is None:
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.strip() else {}
        except ValueError:
            raise MappingConfigError("streams: must be an object keyed by stream name") from None
    if not isinstance(value, Mapping):
        raise MappingConfigError("streams: must be an object keyed by stream name")
    parsed: dict[str, StreamSettings] = {}
    for name, config in value.items():
        if not isinstance(name, str) or not name:
            raise MappingConfigError("streams: stream names must be non-empty strings")
        parsed[name] = _parse_stream(name, config)
    return parsed


def settings_for_stream(streams: Mapping[str, StreamSettings], stream_name: str) -> StreamSettings:
    """Return the stream's settings: its exact name, else ``"*"``, else the defaults."""
    found = streams.get(stream_name)
    if found is None:
        found = streams.get("*")
    return found if found is not None else StreamSettings()


class PersonalExternalId(NamedTuple):
    """A stream's own externalId read from a column that holds personal data."""

    setting: str  # streams.<stream>.external_id or streams.<stream>.fields.externalId
    column: str  # the dotted path the setting names
    lead_field: str  # the personal lead field that column is (or maps to)


def personal_external_id(stream_name: str, settings: StreamSettings) -> PersonalExternalId | None:
    """Where the stream's settings take the externalId from a personal column, else None.

    An externalId names the record in log lines, reject and results files, the sync log and
    the report, so an email or a phone taken as one puts personal data in all of them. A
    column is personal when the stream's `fields` or `custom_fields` map that same path to a
    personal field (custom field values are personal), or when its name (the path's last
    segment) maps to a personal field by the registry's aliases.
    """
    where = f"streams.{stream_name}"
    choices = (
        (f"{where}.external_id", settings.external_id),
        (f"{where}.fields.externalId", settings.fields.get("externalId")),
    )
    for setting, path in choices:
        if not path:
            continue
        lead_field = _personal_field_of(path, settings)
        if lead_field is not None:
            return PersonalExternalId(setting, ".".join(path), lead_field)
    return None


def _personal_field_of(path: Path, settings: StreamSettings) -> str | None:
    for name, mapped in settings.fields.items():
        if mapped == path and name in PERSONAL_FIELDS:
            return name
    if path in settings.custom_fields.values() and "customFields" in PERSONAL_FIELDS:
        return "customFields"
    auto = _auto_field(path[-1])
    return auto[1] if auto is not None and auto[1] in PERSONAL_FIELDS else None


# --------------------------------------------------------------------------- values


def _get_path(record: Mapping[str, Any], path: Path) -> Any:
    """Follow a dotted path through dicts (and list indexes); None when absent."""
    value: Any = record
    for segment in path:
        if isinstance(value, Mapping):
            value = value.get(segment)
        elif isinstance(value, list | tuple) and segment.isascii() and segment.isdigit():
            index = int(segment)
            value = value[index] if index < len(value) else None
        else:
            return None
        if value is None:
            return None
    return value


def _present(value: Any) -> bool:
    """Return whether a value counts as given (not None, not blank text)."""
    return value is not None and not (isinstance(value, str) and not value.strip())


def _json_default(value: Any) -> Any:
    """Make values json can't encode canonical (Decimal('12') == 12, dates as ISO)."""
    if isinstance(value, Decimal):
        if is_huge(value):
            return scientific_text(value)
        if value.is_finite() and value == value.to_integral_value():
            return int(value)
        return float(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, set | frozenset):
        return sorted(value, key=repr)
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


def _canonical_json(value: Any) -> str:
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_json_default
    )


def _key_text(value: Any) -> str | None:
    """Canonical text of a key property value (Decimal('123') and 123 give '123')."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | Decimal):
        try:
            return canonical_text(value)
        except ValueError:
            return None
    if isinstance(value, date):
        return value.isoformat()
    return _canonical_json(value)


def _own_id_text(value: Any) -> str | None:
    """Return an ID value of the record itself as trimmed text (None if unusable)."""
    if type(value) is str:
        return value.strip() or None
    if isinstance(value, bool | Mapping | list | tuple):
        return None
    text = _key_text(value)
    if text is None:
        return None
    return text.strip() or None


def _escape(text: str) -> str:
    """Escape ``%`` and ``:`` so joined key parts stay unambiguous."""
    if "%" in text or ":" in text:
        return text.replace("%", "%25").replace(":", "%3A")
    return text


def _sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:_HASH_HEX_DIGITS]


# --------------------------------------------------------------------------- the mapper

_Plan = tuple[tuple[str, str], ...]


class StreamMapper:
    """Turns one stream's records into raw careCycle leads; build once per stream."""

    def __init__(
        self,
        stream_name: str,
        settings: StreamSettings,
        key_properties: Sequence[str],
        *,
        default_source_id: str | None,
        default_lead_cost: Any,
    ) -> None:
        self.stream_name = stream_name
        self.settings = settings
        self.external_id_source = _first_choice(settings, key_properties)
        self._prefix = _escape(stream_name) + ":"
        self._key_properties = tuple(key_properties)
        self._explicit = tuple(
            (name, path) for name, path in settings.fields.items() if name != "externalId"
        )
        self._explicit_names = frozenset(settings.fields)
        self._used_keys = frozenset(path[0] for path in settings.fields.values())
        self._custom = tuple(settings.custom_fields.items())
        self._source_id = settings.source_id if settings.source_id else default_source_id
        self._lead_cost = (
            settings.lead_cost if settings.lead_cost is not None else default_lead_cost
        )
        self._plans: dict[tuple[Any, ...], _Plan] = {}

    @property
    def enabled(self) -> bool:
        """Return whether the stream is mapped at all (``enabled: false`` ignores it)."""
        return self.settings.enabled

    def map_record(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """Map one record to a raw lead; ``externalId`` is always set."""
        lead: dict[str, Any] = {}
        for name, path in self._explicit:
            value = record.get(path[0]) if len(path) == 1 else _get_path(record, path)
            if value is not None:
                lead[name] = value
        keys = tuple(record)
        plan = self._plans.get(keys)
        if plan is None:
            plan = self._remember_plan(keys)
        for key, name in plan:
            value = record[key]
            if value is not None:
                lead[name] = value
        if self._custom:
            self._add_custom_fields(record, lead)
        if self._source_id is not None and not _present(lead.get("sourceId")):
            lead["sourceId"] = self._source_id
        if self._lead_cost is not None and not _present(lead.get("leadCost")):
            lead["leadCost"] = self._lead_cost
        lead["externalId"] = self._external_id(record, lead.pop("externalId", None))
        return lead

    def _remember_plan(self, keys: tuple[Any, ...]) -> _Plan:
        if len(self._plans) >= _PLAN_CACHE_LIMIT:
            self._plans.clear()
        plan = self._plans[keys] = self._plan(keys)
        return plan

    def _plan(self, keys: tuple[Any, ...]) -> _Plan:
        """Choose, per lead field, the best record key (exact name, then alias order)."""
        best: dict[str, tuple[tuple[int, int], str]] = {}
        for position, key in enumerate(keys):
            if not isinstance(key, str) or key in self._used_keys:
                continue
            match = _auto_field(key)
            if match is None or match[1] in self._explicit_names:
                continue
            order = (match[0], position)
            if match[1] not in best or order < best[match[1]][0]:
                best[match[1]] = (order, key)
        return tuple((key, name) for name, (_, key) in best.items())

    def _add_custom_fields(self, record: Mapping[str, Any], lead: dict[str, Any]) -> None:
        items = []
        for key, path in self._custom:
            value = _get_path(record, path)
            if value is not None:
                items.append({"fieldKey": key, "value": value})
        if items:
            lead["customFields"] = items

    def _external_id(self, record: Mapping[str, Any], column_value: Any) -> str:
        """Pick the record's external ID by precedence; set ``external_id_source``."""
        candidates = (
            ("setting", self.settings.external_id),
            ("fields", self.settings.fields.get("externalId")),
        )
        for source, path in candidates:
            text = _own_id_text(_get_path(record, path)) if path else None
            if text is not None:
                return self._own_id(source, text)
        text = _own_id_text(column_value)
        if text is not None:
            return self._own_id("column", text)
        keyed = self._key_properties_id(record)
        if keyed is not None:
            self.external_id_source = "key_properties"
            return keyed
        self.external_id_source = "content_hash"
        payload = {k: v for k, v in record.items() if not str(k).startswith(_METADATA_PREFIX)}
        return f"{self._prefix}sha256:{_sha256_hex(_canonical_json(payload))}"

    def _own_id(self, source: str, text: str) -> str:
        self.external_id_source = source
        if len(text) <= EXTERNAL_ID_MAX_LENGTH:
            return text
        return f"{self._prefix}sha256:{_sha256_hex(text)}"

    def _key_properties_id(self, record: Mapping[str, Any]) -> str | None:
        """``<stream>:<key>[:<key>...]``, hashed when longer than 255 characters."""
        if not self._key_properties:
            return None
        parts = []
        for name in self._key_properties:
            text = _key_text(record.get(name))
            if text is None:
                return None
            parts.append(_escape(text))
        ident = self._prefix + ":".join(parts)
        if len(ident) <= EXTERNAL_ID_MAX_LENGTH:
            return ident
        return f"{self._prefix}sha256:{_sha256_hex(ident)}"


def _first_choice(settings: StreamSettings, key_properties: Sequence[str]) -> str:
    """Return the external ID source expected before any record is seen."""
    if settings.external_id:
        return "setting"
    if "externalId" in settings.fields:
        return "fields"
    return "key_properties" if key_properties else "content_hash"
