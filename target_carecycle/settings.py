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

from target_carecycle import sdk_shims
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
from target_carecycle.printable import printable
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
# How long the opt-in sync log keeps a record's row (docs/history.md).
DEFAULT_SYNC_LOG_RETENTION_DAYS = 30
# Placeholders `reject_file` and `results_file` may hold (one file per run).
FILE_PLACEHOLDERS = ("run_id", "started_at")
# Hex characters of SHA-256(api_key) that name the key in logs: enough to tell keys apart.
KEY_FINGERPRINT_CHARS = 12
TRUE_SPELLINGS = frozenset({"true", "yes", "on", "1"})
FALSE_SPELLINGS = frozenset({"false", "no", "off", "0"})
BOOLEAN_RULE = "must be true or false (yes/no, on/off, 1/0 also accepted, any case)"
# Every number a setting holds must be a finite double (1e400 and 10**400 are not): beyond it,
# float() is infinite (sent as null) or arithmetic with floats raises after the input was read.
FINITE_RULE = "must be a finite number"
MAX_SETTING_DIGITS = 300

CONFIG_SCHEMA: dict[str, Any] = th.PropertiesList(
    th.Property(
        "api_key",
        th.StringType,
        title="API Key",
        secret=True,
        description=(
            "careCycle API key (starts with `cc_`; x-api-key header). Required unless "
            f"`dry_run`. Never printed or written anywhere. Also read from `{API_KEY_ENV}`; "
            "with the key in one place and `api_url` in the other (config file, environment) "
            "the run stops unless `--config ENV` (docs/settings.md)."
        ),
    ),
    th.Property(
        "api_url",
        th.StringType,
        title="API URL",
        default=DEFAULT_API_URL,
        description=(
            "Base URL of the careCycle API. Must be https; plain http is accepted only "
            "when the host is exactly `localhost` or a loopback IP such as 127.0.0.1 "
            "(the local sandbox). No user info, query or fragment."
        ),
    ),
    th.Property(
        "source_id",
        th.StringType(min_length=1, pattern=r"\S"),
        title="Source ID",
        description=(
            "Default `sourceId` for every lead, not empty (a stream or record may override)."
        ),
    ),
    th.Property(
        "lead_cost",
        th.NumberType(minimum=0),
        title="Lead Cost",
        description=(
            "Default `leadCost` for every lead, 0 or more (a stream or record may override)."
        ),
    ),
    th.Property(
        "streams",
        th.ObjectType(additional_properties=True),
        title="Stream Mappings",
        description=(
            "Per-stream mapping, keyed by stream name or `*`: `fields` {leadField: "
            "'dotted.path'}, `custom_fields` {fieldKey: 'dotted.path'}, `source_id`, "
            "`lead_cost`, `external_id` (dotted path), `enabled`. See docs/mapping.md."
        ),
    ),
    th.Property(
        "phone_validation",
        th.StringType,
        title="Phone Validation",
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
        title="Strict Normalisation",
        default=False,
        description=(
            "Reject a record when any optional value cannot be normalised, instead of "
            "sending the lead without that value."
        ),
    ),
    th.Property(
        "dry_run",
        th.BooleanType,
        title="Dry Run",
        default=False,
        description=(
            "Map and validate every record, write the reject file, send nothing. True in a "
            f"config file or in `{DRY_RUN_ENV}` makes a dry run (the environment can turn it "
            "on, never off)."
        ),
    ),
    th.Property(
        "reject_file",
        th.StringType,
        title="Reject File",
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
        title="Results File",
        description=(
            "Path of a JSONL receipt (mode 0600, never opened through a symlink): "
            "careCycle's `id` for each uploaded externalId. `{run_id}` and `{started_at}` "
            "in the path make one file per run."
        ),
    ),
    th.Property(
        "max_record_errors",
        th.IntegerType(minimum=0),
        title="Max Record Errors",
        description=(
            "Stop the run (exit 1) once more than this many records failed or were "
            "rejected (0 or more). Default: no limit."
        ),
    ),
    th.Property(
        "max_error_rate",
        th.NumberType(minimum=0, maximum=1),
        title="Max Error Rate",
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
        title="Request Timeout (s)",
        default=DEFAULT_REQUEST_TIMEOUT,
        description=(
            "Seconds to wait for careCycle to answer one request (more than 0, at most 3600)."
        ),
    ),
    th.Property(
        "max_retries",
        th.IntegerType(minimum=0),
        title="Max Retries",
        default=DEFAULT_MAX_RETRIES,
        description=(
            "Retries of a batch after a 5xx, timeout or dropped connection (0 or more). "
            "A TLS certificate that fails verification stops the run at once."
        ),
    ),
    th.Property(
        "max_requests_per_minute",
        th.IntegerType(minimum=1),
        title="Max Requests per Minute",
        default=DEFAULT_REQUESTS_PER_MINUTE,
        description=(
            "Client-side request budget per minute, at least 1 (careCycle allows 60 per key)."
        ),
    ),
    th.Property(
        "max_concurrent_requests",
        th.IntegerType(minimum=1, maximum=MAX_CONCURRENT_REQUESTS_LIMIT),
        title="Max Concurrent Requests",
        default=DEFAULT_MAX_CONCURRENT_REQUESTS,
        description=("Upload requests in flight at once (1 to 32), within the per-minute budget."),
    ),
    th.Property(
        "batch_size_rows",
        th.IntegerType(minimum=1),
        title="Batch Size (leads per request)",
        default=MAX_BATCH_SIZE,
        description=(
            "Leads per upload request, at least 1; above 200 (careCycle's limit) is capped."
        ),
    ),
    th.Property(
        "validate_records",
        th.BooleanType,
        title="Validate Records",
        default=False,
        description=(
            "Also check each record against the tap's JSON schema (slow). A record that "
            "fails is rejected with the reason; lead validation always runs."
        ),
    ),
    th.Property(
        "sync_store",
        th.StringType,
        title="Sync Store",
        secret=True,  # a PostgreSQL URL may hold a password
        description=(
            "Where the record of what careCycle acknowledged is kept (to skip unchanged "
            "leads, and to share the key's request budget between runs): a file path "
            "(SQLite, never through a symlink; created 0600), `sqlite:///PATH`, "
            "`postgresql+psycopg://USER:PASSWORD@HOST/DB` (extra `postgres`; the store's "
            "tables alone in their database or schema), or `off`. Default: "
            "$XDG_STATE_HOME/target-carecycle/sync.sqlite (else ~/.local/state/...). "
            "See docs/sync-store.md."
        ),
    ),
    th.Property(
        "skip_unchanged",
        th.BooleanType,
        title="Skip Unchanged Leads",
        default=True,
        description=(
            "Do not send a lead whose payload equals the one careCycle last acknowledged for "
            "its externalId (outcome `unchanged`). false: send every lead (still recorded)."
        ),
    ),
    th.Property(
        "sync_log",
        th.BooleanType,
        default=False,
        title="Sync log",
        description=(
            "Also keep each record's outcome in the sync store (run, stream, externalId, "
            "outcome, reason, careCycle's id), for `carecycle-report`: the store then holds "
            "externalIds in clear. See docs/history.md."
        ),
    ),
    th.Property(
        "sync_log_retention_days",
        th.IntegerType(minimum=1, maximum=36500),  # a century: beyond it dates overflow
        default=DEFAULT_SYNC_LOG_RETENTION_DAYS,
        title="Sync log retention (days)",
        description="Sync log rows older than this are deleted at the end of each run.",
    ),
).to_dict()


def destination(api_url: str | None) -> str:
    """scheme://host:port of the API URL (the default's when unset): where leads go."""
    parts = urlsplit(api_url or DEFAULT_API_URL)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        port = 0
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{host}:{port}"


def key_fingerprint(api_key: str | None) -> str | None:
    """The first 12 hex characters of the key's SHA-256 (never the key), or None."""
    if not api_key:
        return None
    return hashlib.sha256(api_key.encode("utf-8")).hexdigest()[:KEY_FINGERPRINT_CHARS]


@dataclass(frozen=True)
class HistorySettings:
    """What `carecycle-report` reads to find a run history: the store and the account.

    Without an API key the report shows every account's runs (the key only filters).
    """

    sync_store: str | None
    api_url: str = DEFAULT_API_URL
    api_key: str | None = field(default=None, repr=False)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> HistorySettings:
        """Build from a resolved config; ValueError names a setting that is not text."""
        return cls(
            sync_store=_text_or_none(config, "sync_store"),
            api_url=_text_or_none(config, "api_url") or DEFAULT_API_URL,
            api_key=_text_or_none(config, "api_key"),
        )


def _text_or_none(config: Mapping[str, Any], name: str) -> str | None:
    value = config.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ValueError(f"{name}: must be text")
    return value


@dataclass(frozen=True)
class SyncLogSettings:
    """`sync_log` (off unless true) and how many days its rows are kept."""

    enabled: bool = False
    retention_days: int = DEFAULT_SYNC_LOG_RETENTION_DAYS


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
    # Where each given setting came from (config file, environment, or both): names only.
    sources: Mapping[str, str] = field(default_factory=dict)
    # What the start of a run says about where leads go: scheme://host:port of api_url,
    # whether that is the default (api_url given nowhere), and the key's fingerprint.
    destination: str = ""
    destination_is_default: bool = True
    key_fingerprint: str | None = None
    api_url: str = DEFAULT_API_URL
    per_stream_source_ids: bool = False
    # `--check` reaches careCycle also with a dry-run config (which builds no `client`); the
    # key is kept out of repr().
    api_key: str | None = field(default=None, repr=False)
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT
    # Outcomes: the reject and results files, and the failure policy (docs/failure-policy.md).
    reject_file: str | None = None
    results_file: str | None = None
    max_record_errors: int | None = None
    max_error_rate: float = DEFAULT_MAX_ERROR_RATE
    # The SDK's built-in settings the target reads too: `batch_size_rows` as given (a warning
    # when above careCycle's 200), `validate_records`, `stream_maps` (to name a failing map).
    batch_size_requested: int | None = None
    validate_records: bool = False
    stream_maps: Mapping[str, Any] | None = None
    # The run history's opt-in row-level sync log (docs/history.md).
    sync_log: SyncLogSettings = field(default_factory=lambda: SyncLogSettings())

    @property
    def uses_sync_store(self) -> bool:
        """True unless `sync_store: off` or there is no key to name the account."""
        return self.sync_store != STORE_OFF and self.account is not None

    def source_of(self, setting: str) -> str:
        """`config file`, `environment`, `config file and environment`, or `default`."""
        return self.sources.get(setting, "default")

    @property
    def source_description(self) -> str:
        """`source_id` as a log shows it: the default, "per stream", or "none"."""
        if self.default_source_id:
            suffix = " (streams may override)" if self.per_stream_source_ids else ""
            return printable(self.default_source_id) + suffix
        return "per stream" if self.per_stream_source_ids else "none"

    @classmethod
    def from_config(
        cls, config: Mapping[str, Any], sources: Mapping[str, str] | None = None
    ) -> RunSettings:
        """Build from a validated config (`sources`: where each setting came from)."""
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
            sources=dict(sources or {}),
            destination=destination(config.get("api_url")),
            destination_is_default=not config.get("api_url"),
            key_fingerprint=key_fingerprint(config.get("api_key")),
            api_url=config.get("api_url") or DEFAULT_API_URL,
            per_stream_source_ids=_streams_name_a_source(config.get("streams")),
            api_key=config.get("api_key") or None,
            request_timeout=float(
                DEFAULT_REQUEST_TIMEOUT
                if config.get("request_timeout") is None
                else config["request_timeout"]
            ),
            reject_file=config.get("reject_file"),
            results_file=config.get("results_file"),
            max_record_errors=config.get("max_record_errors"),
            max_error_rate=(
                DEFAULT_MAX_ERROR_RATE
                if config.get("max_error_rate") is None
                else config["max_error_rate"]
            ),
            batch_size_requested=_int_or_none(config.get("batch_size_rows")),
            validate_records=config.get("validate_records") is True,
            stream_maps=config.get("stream_maps"),
            sync_log=SyncLogSettings(
                enabled=config.get("sync_log") is True,
                retention_days=int(
                    config.get("sync_log_retention_days") or DEFAULT_SYNC_LOG_RETENTION_DAYS
                ),
            ),
        )


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


@dataclass(frozen=True)
class UnreadableEnvValue:
    """Stands in a config for an environment value that does not parse (never holds it)."""

    variable: str
    expected: str


def read_env_settings(
    schema: Mapping[str, Any],
    prefix: str = ENV_PREFIX,
    environ: Mapping[str, str] | None = None,
    *,
    load_dotenv: bool = False,
) -> dict[str, Any]:
    """Settings from `<prefix><SETTING>` environment variables, parsed strictly.

    The SDK reads an unknown boolean spelling as false and lets `int()` raise; here a value
    that does not parse becomes an `UnreadableEnvValue`, which `check_config` reports.
    `load_dotenv` first loads a `.env` file into the environment as the SDK does (only with
    `--config ENV`, as the SDK does).
    """
    if load_dotenv:
        sdk_shims.load_dotenv(prefix)
    environ = os.environ if environ is None else environ
    properties: Mapping[str, Any] = schema.get("properties", {})
    found: dict[str, Any] = {}
    for name, prop in properties.items():
        variable = env_variable(name, prefix)
        if variable not in environ:
            continue
        types = json_types(prop)
        raw = environ[variable]
        found[name] = parse_env_value(raw, variable, types) if types else raw
    return found


def env_variable(setting: str, prefix: str = ENV_PREFIX) -> str:
    """The environment variable of a setting: TARGET_CARECYCLE_ + its name upper-cased."""
    return prefix + setting.upper().replace("-", "_")


def json_types(prop: Mapping[str, Any]) -> set[str]:
    """The non-string JSON types a setting's schema allows (empty for plain strings)."""
    declared = prop.get("type", [])
    types = {declared} if isinstance(declared, str) else set(declared)
    for option in prop.get("anyOf", []) + prop.get("oneOf", []):
        types |= json_types(option)
    return types - {"string", "null"}


def parse_env_value(raw: str, variable: str, types: set[str]) -> Any:
    """`raw` parsed for a setting of JSON `types`, or an UnreadableEnvValue naming `variable`."""
    text = raw.strip()
    if "boolean" in types:
        value = parse_boolean(text)
        return UnreadableEnvValue(variable, BOOLEAN_RULE) if value is None else value
    if "integer" in types:
        if not re.fullmatch(r"[+-]?\d+", text):
            return UnreadableEnvValue(variable, "must be a whole number")
        if len(text) > MAX_SETTING_DIGITS:  # int() of 4,300+ digits raises; no setting needs them
            return UnreadableEnvValue(variable, FINITE_RULE)
        return int(text)
    if "number" in types:
        try:
            number = float(text)
        except ValueError:
            number = math.nan
        if math.isfinite(number):
            whole = re.fullmatch(r"[+-]?\d+", text) and len(text) <= MAX_SETTING_DIGITS
            return int(number) if whole else number
        return UnreadableEnvValue(variable, FINITE_RULE)
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
            name: f"{name}: {FINITE_RULE}"
            for name, value in config.items()
            if name not in problems and not is_finite_double(value)
        }
    )
    check.errors += problems.values()
    readable = {k: v for k, v in config.items() if k not in problems}
    check.errors += [_describe(e) for e in Draft7Validator(schema).iter_errors(readable)]
    check.errors += setting_errors(readable)
    misspelt, ignored = unknown_setting_lines(config, schema)
    check.errors += misspelt
    check.warnings += ignored
    check.errors = list(dict.fromkeys(check.errors))  # one line per problem
    return check


def unknown_setting_lines(
    config: Mapping[str, Any], schema: Mapping[str, Any]
) -> tuple[list[str], list[str]]:
    """(errors, warnings) for the config's unknown top-level settings.

    A lookalike of a guarded setting (`guarded_lookalike`: api_url, api_key, dry_run,
    sync_store) is an error naming the setting it resembles; any other unknown name is a
    warning. The target and `carecycle-report` both use this check.
    """
    errors: list[str] = []
    warnings: list[str] = []
    for name, nearest in unknown_settings(config, schema).items():
        guarded = guarded_lookalike(name)
        if guarded is not None and not harmless_lookalike(guarded, config[name]):
            errors.append(
                f"{name}: unknown setting that looks like {guarded}; nothing is sent while a "
                f"setting that could change where or whether leads go is misspelt: rename it "
                f"to {guarded} or remove it"
            )
            continue
        hint = f" (did you mean {guarded or nearest}?)" if guarded or nearest else ""
        warnings.append(f"unknown setting {name!r} is ignored{hint}")
    return errors, warnings


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
        if "boolean" not in json_types(prop) or name in skip or config.get(name) is None:
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

    Worth a warning (runners may pass extra keys), unless the name looks like one of the
    guarded settings (`guarded_lookalike`): `check_config` then stops the run.
    """
    known = list(schema.get("properties", {}))
    found = {}
    for name in sorted(key for key in config if key not in known):
        nearest = difflib.get_close_matches(str(name).lower(), known, n=1, cutoff=0.6)
        found[name] = nearest[0] if nearest else ""
    return found


def is_finite_double(value: Any) -> bool:
    """False for a number that is not a finite double (NaN, infinity, 1e400, 10**400).

    Booleans and anything that is not a number are True: other checks judge them.
    """
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        return True
    try:
        return math.isfinite(float(value))
    except OverflowError:  # an int beyond a double's range
        return False


# Settings whose misspelling could send leads, or send them somewhere else: an unknown name or
# variable that looks like one of them stops the run (docs/settings.md). Words are compared
# lower-cased without separators, singular and plural.
GUARDED_SETTINGS: dict[str, frozenset[str]] = {
    "api_url": frozenset(
        [
            "address",
            "apiaddress",
            "apibase",
            "apibaseurl",
            "apiendpoint",
            "apihost",
            "apilink",
            "apiserver",
            "apiuri",
            "apiurl",
            "base",
            "baseuri",
            "baseurl",
            "carecycleapiurl",
            "carecycleurl",
            "domain",
            "endpoint",
            "host",
            "hostname",
            "link",
            "root",
            "rooturl",
            "server",
            "serverurl",
            "uri",
            "url",
            "urlbase",
        ]
    ),
    "api_key": frozenset(
        [
            "accesstoken",
            "apicredential",
            "apikey",
            "apikeys",
            "apisecret",
            "apitoken",
            "auth",
            "authtoken",
            "bearer",
            "carecycleapikey",
            "carecyclekey",
            "credential",
            "key",
            "password",
            "secret",
            "token",
            "xapikey",
        ]
    ),
    "dry_run": frozenset(
        [
            "checkonly",
            "donotsend",
            "dontsend",
            "dry",
            "dryrun",
            "dryrunmode",
            "noop",
            "nosend",
            "preview",
            "safemode",
            "sandbox",
            "sandboxmode",
            "simulate",
            "simulation",
            "test",
            "testmode",
            "testrun",
            "trialrun",
            "validateonly",
            "whatif",
        ]
    ),
    "sync_store": frozenset(
        [
            "database",
            "databaseurl",
            "db",
            "dburl",
            "postgres",
            "postgresql",
            "sqlite",
            "statedb",
            "statestore",
            "store",
            "storedb",
            "storefile",
            "storepath",
            "storeurl",
            "sync",
            "syncdatabase",
            "syncdb",
            "syncfile",
            "syncstate",
            "syncstore",
            "syncstorepath",
            "syncstoreurl",
            "syncurl",
        ]
    ),
}
_LOOKALIKE_RATIO = 0.8


def _squashed(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def guarded_lookalike(name: str) -> str | None:
    """The guarded setting (api_url, api_key, dry_run, sync_store) `name` looks like, or None.

    Case, separators, a plural and common synonyms (base_url, endpoint, token, dryrun, store)
    are looked through, then near spellings (difflib ratio 0.8 on the squashed names).
    """
    squashed = _squashed(str(name))
    forms = {squashed, squashed.removesuffix("s"), squashed.removesuffix("es")}
    forms |= {form.removeprefix("target").removeprefix("carecycle") for form in forms}
    forms.discard("")
    for setting, words in GUARDED_SETTINGS.items():
        if forms & (words | {_squashed(setting)}):
            return setting
    for setting in GUARDED_SETTINGS:
        target = _squashed(setting)
        if any(difflib.SequenceMatcher(None, f, target).ratio() >= _LOOKALIKE_RATIO for f in forms):
            return setting
    return None


def harmless_lookalike(guarded: str, value: Any) -> bool:
    """A dry-run lookalike set to a clear false could not have meant "do not send"."""
    return guarded == "dry_run" and parse_boolean(value) is False


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
