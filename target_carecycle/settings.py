"""Settings: the JSON schema, checks that name the setting and never echo a value, RunSettings."""

from __future__ import annotations

import ast
import difflib
import hashlib
import json
import math
import os
import re
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

from jsonschema import Draft7Validator
from jsonschema.exceptions import ValidationError
from singer_sdk import typing as th

# No public SDK function loads the .env file and parses string settings the way the SDK does;
# this one is what PluginBase._env_var_config calls. Remove with the `_env_var_config` override.
from singer_sdk.configuration._dict_config import parse_environment_config

from target_carecycle.client import (
    DEFAULT_MAX_CONCURRENT_REQUESTS,
    DEFAULT_MAX_RETRIES,
    DEFAULT_REQUEST_TIMEOUT,
    DEFAULT_REQUESTS_PER_MINUTE,
    MAX_BATCH_SIZE,
    ClientSettings,
    check_api_url,
)
from target_carecycle.mapping import MappingConfigError, StreamSettings, parse_streams_setting
from target_carecycle.store import STORE_OFF, Account, location_problem

ENV_PREFIX = "TARGET_CARECYCLE_"
API_KEY_ENV = f"{ENV_PREFIX}API_KEY"
DRY_RUN_ENV = f"{ENV_PREFIX}DRY_RUN"
DEFAULT_API_URL = "https://api.carecycle.ai"
# Threads and sockets are bounded: 32 requests in flight at careCycle's 0.2-0.6 s per answer
# carry ~3,000 requests/min, far above any budget a key gets (60/min by default).
MAX_CONCURRENT_REQUESTS_LIMIT = 32
# An hour: beyond it a wait is a hang, not a slow answer (and 1e300 s overflows the clock).
MAX_REQUEST_TIMEOUT = 3600
# The failure policy (docs/failure-policy.md): a run fails once more than half of its judged
# records failed or were rejected. The demo's deliberately messy data rejects 7-8%; a
# misnamed phone column rejects 100%.
DEFAULT_MAX_ERROR_RATE = 0.5
# Placeholders `reject_file` and `results_file` may hold (one file per run).
FILE_PLACEHOLDERS = ("run_id", "started_at")
# Hex characters of SHA-256(api_key) that name the key in logs: enough to tell keys apart.
KEY_FINGERPRINT_CHARS = 12
TRUE_SPELLINGS = frozenset({"true", "yes", "on", "1"})
FALSE_SPELLINGS = frozenset({"false", "no", "off", "0"})
BOOLEAN_RULE = "must be true or false (yes/no, on/off, 1/0 also accepted, any case)"

CONFIG_SCHEMA: dict[str, Any] = th.PropertiesList(
    th.Property(
        "api_key",
        th.StringType,
        secret=True,
        title="API key",
        description=(
            "careCycle API key (starts with `cc_`; x-api-key header). Required unless "
            f"`dry_run`. Falls back to the `{API_KEY_ENV}` environment variable. Never "
            "printed or written anywhere."
        ),
    ),
    th.Property(
        "api_url",
        th.StringType,
        default=DEFAULT_API_URL,
        title="API base URL",
        description=(
            "Base URL of the careCycle API. Must be https; plain http is accepted only "
            "when the host is exactly `localhost` or a loopback IP such as 127.0.0.1 "
            "(the local sandbox). No user info, query or fragment."
        ),
    ),
    th.Property(
        "source_id",
        th.StringType(min_length=1, pattern=r"\S"),
        description=(
            "Default `sourceId` for every lead, not empty (a stream or record may override)."
        ),
    ),
    th.Property(
        "lead_cost",
        th.NumberType(minimum=0),
        description=(
            "Default `leadCost` for every lead, 0 or more (a stream or record may override)."
        ),
    ),
    th.Property(
        "streams",
        th.ObjectType(additional_properties=True),
        description=(
            "Per-stream mapping, keyed by stream name or `*`: `fields` {leadField: "
            "'dotted.path'}, `custom_fields` {fieldKey: 'dotted.path'}, `source_id`, "
            "`lead_cost`, `external_id` (dotted path), `enabled`. See docs/mapping.md."
        ),
    ),
    th.Property(
        "phone_validation",
        th.StringType,
        default="strict",
        allowed_values=["strict", "format"],
        description=(
            "`strict`: a phone must be a valid, assigned US number (libphonenumber). "
            "`format`: only its length and shape are checked."
        ),
    ),
    th.Property(
        "strict",
        th.BooleanType,
        default=False,
        description=(
            "Reject a record when any optional value cannot be normalised, instead of "
            "sending the lead without that value."
        ),
    ),
    th.Property(
        "dry_run",
        th.BooleanType,
        default=False,
        description=(
            "Map and validate every record, write the reject file, send nothing. "
            f"`{DRY_RUN_ENV}` set to a true value turns it on even without `--config ENV`."
        ),
    ),
    th.Property(
        "reject_file",
        th.StringType,
        description=(
            "Path of a JSONL file (mode 0600, appended to; never opened through a "
            "symlink; folders it needs are created 0700) with one line per failed or "
            "rejected record: stream, position, externalId, status, reason, record. "
            "`{run_id}` and `{started_at}` in the path make one file per run."
        ),
    ),
    th.Property(
        "results_file",
        th.StringType,
        description=(
            "Path of a JSONL receipt (mode 0600, never opened through a symlink): "
            "careCycle's `id` for each uploaded externalId. `{run_id}` and `{started_at}` "
            "in the path make one file per run."
        ),
    ),
    th.Property(
        "max_record_errors",
        th.IntegerType(minimum=0),
        description=(
            "Stop the run (exit 1) once more than this many records failed or were "
            "rejected (0 or more). Default: no limit."
        ),
    ),
    th.Property(
        "max_error_rate",
        th.NumberType(minimum=0, maximum=1),
        default=DEFAULT_MAX_ERROR_RATE,
        description=(
            "Fail the run (exit 1, no further STATE) once more than this fraction (0 to 1) "
            "of its records failed or were rejected, judged from 100 records on (or on the "
            "whole run at its end). 1 turns it off. See docs/failure-policy.md."
        ),
    ),
    th.Property(
        "request_timeout",
        th.NumberType(exclusive_minimum=0, maximum=MAX_REQUEST_TIMEOUT),
        default=DEFAULT_REQUEST_TIMEOUT,
        description=(
            "Seconds to wait for careCycle to answer one request (more than 0, at most 3600)."
        ),
    ),
    th.Property(
        "max_retries",
        th.IntegerType(minimum=0),
        default=DEFAULT_MAX_RETRIES,
        description=(
            "Retries of a batch after a 5xx, timeout or dropped connection (0 or more). "
            "A TLS certificate that fails verification stops the run at once."
        ),
    ),
    th.Property(
        "max_requests_per_minute",
        th.IntegerType(minimum=1),
        default=DEFAULT_REQUESTS_PER_MINUTE,
        description=(
            "Client-side request budget per minute, at least 1 (careCycle allows 60 per key)."
        ),
    ),
    th.Property(
        "max_concurrent_requests",
        th.IntegerType(minimum=1, maximum=MAX_CONCURRENT_REQUESTS_LIMIT),
        default=DEFAULT_MAX_CONCURRENT_REQUESTS,
        description=("Upload requests in flight at once (1 to 32), within the per-minute budget."),
    ),
    th.Property(
        "batch_size_rows",
        th.IntegerType(minimum=1),
        default=MAX_BATCH_SIZE,
        description=(
            "Leads per upload request, at least 1; above 200 (careCycle's limit) is capped."
        ),
    ),
    th.Property(
        "validate_records",
        th.BooleanType,
        default=False,
        description=(
            "Also check each record against the tap's JSON schema (slow). A record that "
            "fails is rejected with the reason; lead validation always runs."
        ),
    ),
    th.Property(
        "sync_store",
        th.StringType,
        secret=True,  # a PostgreSQL URL may hold a password
        title="Sync store",
        description=(
            "Where the record of what careCycle acknowledged is kept (to skip unchanged "
            "leads, and to share the key's request budget between runs): a file path "
            "(SQLite), `sqlite:///PATH`, `postgresql+psycopg://USER:PASSWORD@HOST/DB` "
            "(extra `postgres`), or `off`. Default: "
            "$XDG_STATE_HOME/target-carecycle/sync.sqlite (else ~/.local/state/...). "
            "See docs/sync-store.md."
        ),
    ),
    th.Property(
        "skip_unchanged",
        th.BooleanType,
        default=True,
        description=(
            "Do not send a lead whose payload equals the one careCycle last acknowledged for "
            "its externalId (outcome `unchanged`). false: send every lead (still recorded)."
        ),
    ),
).to_dict()


@dataclass(frozen=True)
class RunSettings:
    """The settings the target acts on, with defaults applied, read once from config."""

    client: ClientSettings | None
    dry_run: bool
    default_source_id: str | None
    default_lead_cost: Any
    phone_validation: str
    strict: bool
    batch_size: int
    streams: Mapping[str, StreamSettings] = field(default_factory=dict)
    # The sync store: None is the default location, `off` disables it. The account is None
    # without an API key (a dry run may have none; it then cannot consult the store).
    sync_store: str | None = None
    skip_unchanged: bool = True
    account: Account | None = None
    # Where leads go and with which key, named for logs (the key never is).
    api_url: str = DEFAULT_API_URL
    key_fingerprint: str | None = None
    per_stream_source_ids: bool = False

    @property
    def uses_sync_store(self) -> bool:
        """True unless `sync_store: off` or there is no key to name the account."""
        return self.sync_store != STORE_OFF and self.account is not None

    @property
    def destination(self) -> str:
        """The API's `scheme://host:port`: enough to tell production from a sandbox."""
        return destination(self.api_url)

    @property
    def source_description(self) -> str:
        """`source_id` as a log shows it: the default, "per stream", or "none"."""
        if self.default_source_id:
            suffix = " (streams may override)" if self.per_stream_source_ids else ""
            return printable(self.default_source_id) + suffix
        return "per stream" if self.per_stream_source_ids else "none"

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> RunSettings:
        """Build from a validated config."""
        # Anything but a clear false (a value that skipped the checks) is a dry run, never a send.
        dry_run = config.get("dry_run") not in (False, None)
        client = None
        if not dry_run:
            client = ClientSettings(
                api_url=config.get("api_url") or DEFAULT_API_URL,
                api_key=config["api_key"],
                request_timeout=float(config.get("request_timeout", DEFAULT_REQUEST_TIMEOUT)),
                max_retries=int(config.get("max_retries", DEFAULT_MAX_RETRIES)),
                max_requests_per_minute=int(
                    config.get("max_requests_per_minute", DEFAULT_REQUESTS_PER_MINUTE)
                ),
                max_concurrent_requests=int(
                    config.get("max_concurrent_requests", DEFAULT_MAX_CONCURRENT_REQUESTS)
                ),
            )
        return cls(
            client=client,
            dry_run=dry_run,
            default_source_id=config.get("source_id"),
            default_lead_cost=config.get("lead_cost"),
            phone_validation=config.get("phone_validation", "strict"),
            strict=bool(config.get("strict", False)),
            batch_size=min(int(config.get("batch_size_rows") or MAX_BATCH_SIZE), MAX_BATCH_SIZE),
            streams=parse_streams_setting(config.get("streams")),
            sync_store=_store_location(config.get("sync_store")),
            skip_unchanged=config.get("skip_unchanged") is not False,  # unset or null: true
            account=(
                Account.for_key(config.get("api_url") or DEFAULT_API_URL, config["api_key"])
                if config.get("api_key")
                else None
            ),
            api_url=config.get("api_url") or DEFAULT_API_URL,
            key_fingerprint=key_fingerprint(config["api_key"]) if config.get("api_key") else None,
            per_stream_source_ids=_streams_name_a_source(config.get("streams")),
        )


@dataclass(frozen=True)
class UnreadableEnvValue:
    """Stands in a config for an environment value that does not parse (never holds it)."""

    variable: str
    expected: str


def read_env_settings(schema: Mapping[str, Any], prefix: str = ENV_PREFIX) -> dict[str, Any]:
    """Settings from `<prefix><SETTING>` environment variables, parsed strictly.

    The SDK reads an unknown boolean spelling as false and lets `int()` raise; here a value
    that does not parse becomes an `UnreadableEnvValue`, which `check_config` reports.
    """
    properties: Mapping[str, Any] = schema.get("properties", {})
    strings = {name: prop for name, prop in properties.items() if not _json_types(prop)}
    # Loads the .env file as the SDK does, and reads plain string settings.
    found: dict[str, Any] = parse_environment_config({"properties": strings}, prefix)
    for name, prop in properties.items():
        variable = prefix + name.upper().replace("-", "_")
        if name not in strings and variable in os.environ:
            found[name] = _parse_env_value(os.environ[variable], variable, _json_types(prop))
    return found


def _json_types(prop: Mapping[str, Any]) -> set[str]:
    """The non-string JSON types a setting's schema allows (empty for plain strings)."""
    declared = prop.get("type", [])
    types = {declared} if isinstance(declared, str) else set(declared)
    for option in prop.get("anyOf", []) + prop.get("oneOf", []):
        types |= _json_types(option)
    return types - {"string", "null"}


def _parse_env_value(raw: str, variable: str, types: set[str]) -> Any:
    text = raw.strip()
    if "boolean" in types:
        value = parse_boolean(text)
        return UnreadableEnvValue(variable, BOOLEAN_RULE) if value is None else value
    if "integer" in types:
        if re.fullmatch(r"[+-]?\d+", text):
            return int(text)
        return UnreadableEnvValue(variable, "must be a whole number")
    if "number" in types:
        try:
            number = float(text)
        except ValueError:
            number = math.nan
        if math.isfinite(number):
            return int(number) if re.fullmatch(r"[+-]?\d+", text) else number
        return UnreadableEnvValue(variable, "must be a finite number")
    try:
        parsed = json.loads(text)
    except ValueError:
        parsed = None
    if "object" in types and isinstance(parsed, dict):
        return parsed
    if "array" in types:
        if isinstance(parsed, list):
            return parsed
        return [part.strip() for part in text.split(",")] if text else []
    return UnreadableEnvValue(variable, "must be a JSON object")


def parse_boolean(value: Any) -> bool | None:
    """True/False for a boolean or one of the usual spellings (any case), else None."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in TRUE_SPELLINGS:
            return True
        if text in FALSE_SPELLINGS:
            return False
    return None


@dataclass
class ConfigCheck:
    """What `check_config` found: errors stop the run, warnings are logged."""

    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def with_key_from_environment(
    config: Mapping[str, Any] | None, environ: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """A copy of `config` with `api_key` from TARGET_CARECYCLE_API_KEY when it has none.

    Read even without `--config ENV`, so a key never has to be written into a config file.
    """
    environ = os.environ if environ is None else environ
    completed = dict(config or {})
    if not completed.get("api_key") and environ.get(API_KEY_ENV):
        completed["api_key"] = environ[API_KEY_ENV]
    return completed


def check_config(
    config: MutableMapping[str, Any],
    schema: Mapping[str, Any],
    environ: Mapping[str, str] | None = None,
) -> ConfigCheck:
    """Complete `config` in place (booleans, a trimmed key) and check it.

    Every line names the setting and never echoes a value. Runs before any input is read.
    """
    environ = os.environ if environ is None else environ
    check = ConfigCheck()
    if isinstance(config.get("api_key"), str):
        config["api_key"] = config["api_key"].strip()
    problems = {
        name: f"{name}: {value.variable} {value.expected}"
        for name, value in config.items()
        if isinstance(value, UnreadableEnvValue)
    }
    problems.update(_read_booleans(config, schema, environ, skip=set(problems)))
    problems.update(
        {
            name: f"{name}: must be a finite number"
            for name, value in config.items()
            if isinstance(value, float | Decimal) and not math.isfinite(value)
        }
    )
    check.errors += problems.values()
    readable = {k: v for k, v in config.items() if k not in problems}
    check.errors += [_describe(e) for e in Draft7Validator(schema).iter_errors(readable)]
    check.errors += setting_errors(readable)
    for name, nearest in unknown_settings(config, schema).items():
        hint = f" (did you mean {nearest}?)" if nearest else ""
        if nearest == "dry_run" and parse_boolean(config[name]) is not False:
            check.errors.append(f"{name}: unknown setting{hint}; a misspelt dry run never sends")
        else:
            check.warnings.append(f"unknown setting {name!r} is ignored{hint}")
    check.errors = list(dict.fromkeys(check.errors))  # one line per problem
    return check


def _read_booleans(
    config: MutableMapping[str, Any],
    schema: Mapping[str, Any],
    environ: Mapping[str, str],
    skip: set[str],
) -> dict[str, str]:
    """Turn boolean spellings into booleans; name each setting that is not one.

    `TARGET_CARECYCLE_DRY_RUN` is also read when the SDK does not read the environment (no
    `--config ENV`): it must be readable, and true turns the dry run on. The environment can
    only make a run safer, never send. (Meltano replaces the variable with its own reading of
    the setting, so meltano.yml declares `dry_run` as a string: see docs/security.md.)
    """
    errors: dict[str, str] = {}
    for name, prop in schema.get("properties", {}).items():
        if "boolean" not in _json_types(prop) or name in skip or config.get(name) is None:
            continue
        value = parse_boolean(config[name])
        if value is None:
            errors[name] = f"{name}: {BOOLEAN_RULE}"
        else:
            config[name] = value
    if DRY_RUN_ENV in environ and "dry_run" not in skip:
        from_env = parse_boolean(environ[DRY_RUN_ENV])
        if from_env is None:
            errors["dry_run"] = f"dry_run: {DRY_RUN_ENV} {BOOLEAN_RULE}"
        elif from_env:
            config["dry_run"] = True
    return errors


def _store_location(value: str | None) -> str | None:
    """`sync_store` as given, except that `off` is recognised in any case."""
    if isinstance(value, str) and value.strip().lower() == STORE_OFF:
        return STORE_OFF
    return value


def setting_errors(config: Mapping[str, Any]) -> list[str]:
    """Checks JSON schema cannot express; one line per problem, never echoing a value."""
    errors = []
    if config.get("dry_run") is not True and not config.get("api_key"):
        errors.append(
            f"api_key: required (or set {API_KEY_ENV}; only dry_run: true runs without a key)"
        )
    api_key = config.get("api_key")
    if isinstance(api_key, str) and re.search(r"[^\x21-\x7e]", api_key):
        # Such a key cannot go in a header; requests would quote it in its error message.
        errors.append("api_key: must be printable ASCII without spaces")
    api_url = config.get("api_url")
    if isinstance(api_url, str) and (problem := check_api_url(api_url)):
        errors.append(f"api_url: {problem}")
    try:
        parse_streams_setting(config.get("streams"))
    except MappingConfigError as exc:
        errors.append(str(exc))
    sync_store = config.get("sync_store")
    if isinstance(sync_store, str) and (problem := location_problem(sync_store)):
        errors.append(problem)
    for setting in ("reject_file", "results_file"):
        path = config.get(setting)
        if isinstance(path, str) and (problem := file_placeholder_problem(setting, path)):
            errors.append(problem)
    errors += stream_map_syntax_errors(config.get("stream_maps"))
    return errors


def unknown_settings(config: Mapping[str, Any], schema: Mapping[str, Any]) -> dict[str, str]:
    """Top-level settings the target does not know, each with the nearest known name or "".

    Worth a warning, not an error: Meltano and other runners may pass extra keys.
    """
    known = list(schema.get("properties", {}))
    found = {}
    for name in sorted(key for key in config if key not in known):
        nearest = difflib.get_close_matches(str(name).lower(), known, n=1, cutoff=0.6)
        found[name] = nearest[0] if nearest else ""
    return found


def _describe(error: ValidationError) -> str:
    """A JSON-schema error as `setting: rule`, without the offending value."""
    where = ".".join(str(part) for part in error.absolute_path) or "config"
    rule = error.validator
    expected = error.validator_value
    if rule == "type" and isinstance(expected, (str, list)):
        types = [expected] if isinstance(expected, str) else expected
        return f"{where}: must be of type {' or '.join(t for t in types if t != 'null')}"
    if rule == "enum" and isinstance(expected, list):
        return f"{where}: must be one of {', '.join(map(str, expected))}"
    bounds = {
        "minimum": "at least",
        "maximum": "at most",
        "exclusiveMinimum": "greater than",
        "exclusiveMaximum": "less than",
    }
    if rule in bounds:
        return f"{where}: must be {bounds[str(rule)]} {expected}"
    if rule == "minLength" or (rule == "pattern" and expected == r"\S"):
        return f"{where}: must not be empty"
    if rule in ("maxLength", "minItems", "maxItems"):
        return f"{where}: violates {rule} {expected}"
    if rule == "required":
        return f"{where}: {error.message}"
    return f"{where}: invalid ({rule})"


def key_fingerprint(api_key: str) -> str:
    """The first 12 hex characters of SHA-256 of the key: names a key in logs, never reveals it.

    The same digest the sync store names an account by (store.Account), cut short.
    """
    return hashlib.sha256(api_key.encode("utf-8")).hexdigest()[:KEY_FINGERPRINT_CHARS]


def destination(api_url: str) -> str:
    """`scheme://host:port` of a URL, the port written out (443/80 when implicit)."""
    try:
        parts = urlsplit(api_url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return "<invalid api_url>"
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{host}:{port}"


_UNPRINTABLE = re.compile(r"[^\x20-\x7e]")


def printable(text: str, limit: int = 200) -> str:
    """`text` for a log line: non-ASCII and control characters escaped, cut at `limit`."""
    escaped = _UNPRINTABLE.sub(lambda m: m.group().encode("unicode_escape").decode(), text)
    return escaped if len(escaped) <= limit else escaped[:limit] + "..."


def _streams_name_a_source(streams: Any) -> bool:
    """True when some stream's mapping sets its own `source_id`."""
    if not isinstance(streams, Mapping):
        return False
    return any(isinstance(s, Mapping) and s.get("source_id") for s in streams.values())


# Keys of a stream map whose values are names or lists, not expressions.
_STREAM_MAP_NON_EXPRESSIONS = frozenset({"__alias__", "__source__", "__key_properties__"})


def stream_map_syntax_errors(stream_maps: Any) -> list[str]:
    """Each stream-map expression that cannot parse, named by its setting path.

    The SDK parses them only when the stream's SCHEMA arrives, mid-run; parsing them the same
    way (`ast.parse`, one expression) here stops a run, or `--check`, before any input.
    """
    errors: list[str] = []
    if not isinstance(stream_maps, Mapping):
        return errors
    for stream, properties in stream_maps.items():
        if not isinstance(properties, Mapping):
            continue
        for name, expression in properties.items():
            if name in _STREAM_MAP_NON_EXPRESSIONS or not isinstance(expression, str):
                continue
            if expression == "__NULL__":
                continue
            try:
                parsed = ast.parse(expression).body
            except (SyntaxError, ValueError):
                parsed = []
            if not parsed:
                errors.append(
                    f"stream_maps.{printable(str(stream), 80)}.{printable(str(name), 80)}: "
                    "the expression does not parse"
                )
    return errors


def file_placeholder_problem(setting: str, path: str) -> str | None:
    """Why a `reject_file`/`results_file` path's braces are unusable, or None.

    Only `{run_id}` and `{started_at}` are placeholders; any other brace is refused, so a
    misspelt placeholder never becomes part of a file name that every run appends to.
    """
    rest = re.sub(r"\{(?:" + "|".join(FILE_PLACEHOLDERS) + r")\}", "", path)
    if "{" in rest or "}" in rest:
        allowed = " and ".join("{" + name + "}" for name in FILE_PLACEHOLDERS)
        return f"{setting}: the only placeholders are {allowed} (no other braces)"
    return None
