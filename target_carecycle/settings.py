"""Settings: the JSON schema, checks that name the setting and never echo a value, RunSettings."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from jsonschema import Draft7Validator
from jsonschema.exceptions import ValidationError
from singer_sdk import typing as th

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

API_KEY_ENV = "TARGET_CARECYCLE_API_KEY"
DEFAULT_API_URL = "https://api.carecycle.ai"

CONFIG_SCHEMA: dict[str, Any] = th.PropertiesList(
    th.Property(
        "api_key",
        th.StringType,
        secret=True,
        title="API key",
        description=(
            "careCycle API key (starts with `cc_`; x-api-key header). Required unless "
            f"`dry_run`. Falls back to the `{API_KEY_ENV}` environment variable."
        ),
    ),
    th.Property(
        "api_url",
        th.StringType,
        default=DEFAULT_API_URL,
        title="API base URL",
        description=(
            "Base URL of the careCycle API. Must be https; plain http is accepted only "
            "for loopback hosts (the local sandbox)."
        ),
    ),
    th.Property(
        "source_id",
        th.StringType,
        description=("Default `sourceId` for every lead (a stream or record may override)."),
    ),
    th.Property(
        "lead_cost",
        th.NumberType,
        description="Default `leadCost` for every lead (a stream or record may override).",
    ),
    th.Property(
        "streams",
        th.ObjectType(additional_properties=True),
        description=(
            "Per-stream mapping, keyed by stream name or `*`: `fields` {leadField: "
            "'dotted.path'}, `custom_fields` {fieldKey: 'dotted.path'}, `source_id`, "
            "`lead_cost`, `external_id` (dotted path), `enabled`. See README."
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
        description="Map and validate every record, write the reject file, send nothing.",
    ),
    th.Property(
        "reject_file",
        th.StringType,
        description=(
            "Path of a JSONL file (mode 0600, appended to) with one line per failed "
            "or rejected record: stream, position, externalId, status, reason, record."
        ),
    ),
    th.Property(
        "results_file",
        th.StringType,
        description="Path of a JSONL receipt: careCycle's `id` for each uploaded externalId.",
    ),
    th.Property(
        "max_record_errors",
        th.IntegerType,
        description=(
            "Stop the run (exit 1) once more than this many records failed or were "
            "rejected. Default: no limit."
        ),
    ),
    th.Property(
        "request_timeout",
        th.NumberType,
        default=DEFAULT_REQUEST_TIMEOUT,
        description="Seconds to wait for careCycle to answer one request.",
    ),
    th.Property(
        "max_retries",
        th.IntegerType,
        default=DEFAULT_MAX_RETRIES,
        description="Retries of a batch after a 5xx, timeout or dropped connection.",
    ),
    th.Property(
        "max_requests_per_minute",
        th.IntegerType,
        default=DEFAULT_REQUESTS_PER_MINUTE,
        description="Client-side request budget per minute (careCycle allows 60 per key).",
    ),
    th.Property(
        "max_concurrent_requests",
        th.IntegerType,
        default=DEFAULT_MAX_CONCURRENT_REQUESTS,
        description="Upload requests in flight at once, within the per-minute budget.",
    ),
    th.Property(
        "batch_size_rows",
        th.IntegerType,
        default=MAX_BATCH_SIZE,
        description=("Leads per upload request; above 200 (careCycle's limit) is capped."),
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

    @property
    def uses_sync_store(self) -> bool:
        """True unless `sync_store: off` or there is no key to name the account."""
        return self.sync_store != STORE_OFF and self.account is not None

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> RunSettings:
        """Build from a validated config."""
        dry_run = bool(config.get("dry_run", False))
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
        )


def _store_location(value: str | None) -> str | None:
    """`sync_store` as given, except that `off` is recognised in any case."""
    if isinstance(value, str) and value.strip().lower() == STORE_OFF:
        return STORE_OFF
    return value


def setting_errors(config: Mapping[str, Any], schema: dict[str, Any]) -> list[str]:
    """One line per problem, naming the setting; never echoes a value."""
    errors = [_describe(error) for error in Draft7Validator(schema).iter_errors(config)]
    if not config.get("dry_run") and not config.get("api_key"):
        errors.append(
            f"api_key: required (or set {API_KEY_ENV}; only dry_run: true runs without a key)"
        )
    api_url = config.get("api_url")
    if isinstance(api_url, str) and (problem := check_api_url(api_url)):
        errors.append(f"api_url: {problem}")
    batch = config.get("batch_size_rows")
    if isinstance(batch, int) and batch < 1:
        errors.append("batch_size_rows: must be at least 1")
    try:
        parse_streams_setting(config.get("streams"))
    except MappingConfigError as exc:
        errors.append(str(exc))
    sync_store = config.get("sync_store")
    if isinstance(sync_store, str) and (problem := location_problem(sync_store)):
        errors.append(problem)
    return errors


def _describe(error: ValidationError) -> str:
    """A JSON-schema error as `setting: rule`, without the offending value."""
    where = ".".join(str(part) for part in error.absolute_path) or "config"
    rule = error.validator
    expected = error.validator_value
    if rule == "type":
        return f"{where}: must be of type {expected}"
    if rule == "enum":
        return f"{where}: must be one of {', '.join(map(str, expected))}"
    if rule in ("minimum", "maximum", "minLength", "maxLength", "minItems", "maxItems"):
        return f"{where}: violates {rule} {expected}"
    if rule == "required":
        return f"{where}: {error.message}"
    return f"{where}: invalid ({rule})"
