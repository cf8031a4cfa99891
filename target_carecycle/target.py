"""TargetCareCycle: settings, config checks, run lifecycle (state, summary, stop signals)."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from jsonschema import Draft7Validator
from jsonschema.exceptions import ValidationError
from singer_sdk import typing as th
from singer_sdk.contrib.msgspec import MsgSpecReader
from singer_sdk.exceptions import ConfigValidationError
from singer_sdk.mapper import SameRecordTransform
from singer_sdk.target_base import Target

from target_carecycle.client import (
    DEFAULT_MAX_CONCURRENT_REQUESTS,
    DEFAULT_MAX_RETRIES,
    DEFAULT_REQUEST_TIMEOUT,
    DEFAULT_REQUESTS_PER_MINUTE,
    MAX_BATCH_SIZE,
    CareCycleError,
    ClientSettings,
    LeadUploadClient,
    UploadDispatcher,
    check_api_url,
)
from target_carecycle.mapping import MappingConfigError, StreamSettings, parse_streams_setting
from target_carecycle.outcomes import OutputFileError, RunOutcomes, TooManyRecordErrors
from target_carecycle.sinks import CareCycleSink

API_KEY_ENV = "TARGET_CARECYCLE_API_KEY"
DEFAULT_API_URL = "https://api.carecycle.ai"
EXIT_SIGNAL_BASE = 128
RECORD_AGE_CHECK_EVERY = 1000


class RunInterrupted(Exception):
    """SIGTERM or SIGINT arrived: stop reading, settle what is in flight, report."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"stopped by signal {signum}")
        self.signum = signum


class _SignalGuard:
    """Re-entrant block inside which a stop signal waits until the block is left."""

    __slots__ = ("depth", "pending_signal")

    def __init__(self) -> None:
        self.depth = 0
        self.pending_signal: int | None = None

    def __enter__(self) -> None:
        self.depth += 1

    def __exit__(self, *exc_info: object) -> None:
        self.depth -= 1
        if self.pending_signal is not None and self.depth == 0:
            signum, self.pending_signal = self.pending_signal, None
            raise RunInterrupted(signum)


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
        )


def _setting_errors(config: Mapping[str, Any], schema: dict[str, Any]) -> list[str]:
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


class TargetCareCycle(Target):
    """Uploads leads from any Singer tap to careCycle, in batches of up to 200."""

    name = "target-carecycle"
    default_sink_class = CareCycleSink
    message_reader_class = MsgSpecReader

    config_jsonschema = th.PropertiesList(
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
    ).to_dict()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._stop = threading.Event()
        self._guard = _SignalGuard()
        self._lean_sinks: dict[str, CareCycleSink] = {}
        self._records_since_age_check = 0
        super().__init__(*args, **kwargs)
        self.max_parallelism = 1  # one thread hands batches to the dispatcher, which overlaps them
        self.settings = RunSettings.from_config(self.config)
        self.outcomes = RunOutcomes(
            reject_file=self.config.get("reject_file"),
            results_file=self.config.get("results_file"),
            max_record_errors=self.config.get("max_record_errors"),
            dry_run=self.settings.dry_run,
        )
        self._client: LeadUploadClient | None = None
        self._dispatcher: UploadDispatcher | None = None
        self._warn_about_batch_size()

    def _warn_about_batch_size(self) -> None:
        requested = self.config.get("batch_size_rows")
        if isinstance(requested, int) and requested > MAX_BATCH_SIZE:
            self.logger.warning(
                "batch_size_rows=%d is above careCycle's limit: batches hold %d leads",
                requested,
                MAX_BATCH_SIZE,
            )

    # Config

    @classmethod
    def append_builtin_config(cls, config_jsonschema: dict) -> None:
        """Add the SDK's built-in settings, except `load_method`: careCycle always upserts."""
        super().append_builtin_config(config_jsonschema)
        config_jsonschema["properties"].pop("load_method", None)

    def _validate_config(self, *, raise_errors: bool = True) -> list[str]:
        """Check settings with messages that name the setting and never echo a value."""
        if not self._config.get("api_key") and os.environ.get(API_KEY_ENV):
            self._config["api_key"] = os.environ[API_KEY_ENV]
        schema = self.config_jsonschema
        self.append_builtin_config(schema)
        errors = _setting_errors(self._config, schema)
        if errors and raise_errors:
            raise ConfigValidationError("Invalid config", errors=errors)
        return errors

    # Records: a lean path for plain streams, the SDK's own path for everything else

    def _process_schema_message(self, message_dict: dict) -> None:
        """Register the stream, then decide whether its records may take the lean path."""
        super()._process_schema_message(message_dict)
        stream = message_dict["stream"]
        self._lean_sinks.pop(stream, None)
        sink = self._sinks_active.get(stream)
        if isinstance(sink, CareCycleSink) and self._is_plain_stream(stream, sink):
            self._lean_sinks[stream] = sink

    def _is_plain_stream(self, stream: str, sink: CareCycleSink) -> bool:
        """True when the SDK would hand the record to the sink unchanged."""
        maps = self.mapper.stream_maps.get(stream, [])
        return (
            len(maps) == 1
            and type(maps[0]) is SameRecordTransform
            and maps[0].stream_alias == stream
            and not (maps[0].flattening_options and maps[0].flattening_enabled)
            and sink.has_no_record_checks()
        )

    def _process_record_message(self, message_dict: dict) -> None:
        """Hand a plain stream's record straight to its sink (same effect, a third of the cost).

        Streams with stream maps, flattening, record metadata or schema validation go
        through the SDK's path unchanged.
        """
        sink = self._lean_sinks.get(message_dict.get("stream"))  # type: ignore[arg-type]
        record = message_dict.get("record")
        if sink is None or type(record) is not dict:
            super()._process_record_message(message_dict)
            return
        sink.tally_record_read()
        sink.process_record(record, {})
        sink.record_counter_metric.increment()
        if sink.is_full:
            self.drain_one(sink)
        self._records_since_age_check += 1
        if self._records_since_age_check >= RECORD_AGE_CHECK_EVERY:
            self._records_since_age_check = 0
            self._handle_max_record_age()

    # Delivery

    @property
    def dispatcher(self) -> UploadDispatcher:
        """The shared dispatcher (one per run: the rate limit is per key)."""
        if self._dispatcher is None:
            assert self.settings.client is not None, "no client in a dry run"
            self._client = LeadUploadClient(self.settings.client, stop=self._stop)
            self._dispatcher = UploadDispatcher(self._client, guard=self._guard)
        return self._dispatcher

    def wait_for_deliveries(self) -> None:
        """Block until every batch handed to the dispatcher has its outcome."""
        if self._dispatcher is not None:
            self._dispatcher.wait_all()

    def process_endofpipe(self) -> None:
        """Drain every sink, then wait for the last batches even when no STATE came."""
        super().process_endofpipe()
        self.wait_for_deliveries()

    def _write_state_message(self, state: dict) -> None:
        """Emit the tap's state, plus this run's counts, once every earlier batch landed."""
        self.wait_for_deliveries()
        with_metrics = {**state, "target_carecycle": self.outcomes.state_metrics()}
        super()._write_state_message(with_metrics)

    # Signals

    def guarded(self) -> _SignalGuard:
        """Defer a stop signal until the bookkeeping inside this `with` block is complete."""
        return self._guard

    def _handle_termination(self, signum: int, frame: FrameType | None) -> None:
        """Stop cleanly: no new sends, settle requests in flight, then report."""
        del frame
        if self._stop.is_set():
            return  # already stopping: let the settling finish
        self._stop.set()
        if self._guard.depth:
            self._guard.pending_signal = signum
            return
        raise RunInterrupted(signum)

    # Run

    def run(self, file_input: Any = None) -> int:
        """Read all input, deliver, report; return the process exit code."""
        code = 0
        try:
            self.listen(file_input)
        except RunInterrupted as stop:
            self.logger.warning(
                "Received signal %d: stopping without reading more input", stop.signum
            )
            code = EXIT_SIGNAL_BASE + stop.signum
            self._settle_after_stop(may_emit_state=True)
        except (CareCycleError, TooManyRecordErrors) as exc:
            self.logger.error("Run failed: %s", exc)
            code = 1
            self._settle_after_stop(may_emit_state=False)
        finally:
            self.outcomes.print_summary(self._client.requests_sent if self._client else 0)
            self.outcomes.close()
            if self._dispatcher is not None:
                self._dispatcher.close()
        return code

    def _settle_after_stop(self, *, may_emit_state: bool) -> None:
        """After a stop: record what in-flight batches achieved, count the rest as unsent.

        After a signal the last STATE is emitted when every record received has its outcome
        (it is true then); after a failure none is, so a re-run starts where the last one
        that finished left off.
        """
        self._stop.set()
        if self._dispatcher is not None:
            self._dispatcher.settle()
        for sink in [*self._sinks_active.values(), *self._sinks_to_clear]:
            if isinstance(sink, CareCycleSink):
                sink.abandon_pending()
        if may_emit_state and self._latest_state and self.outcomes.all_settled():
            super()._write_state_message(
                {**self._latest_state, "target_carecycle": self.outcomes.state_metrics()}
            )

    @classmethod
    def invoke(  # type: ignore[override]
        cls,
        *,
        about: bool = False,
        about_format: str | None = None,
        config: Any = None,
        file_input: Any = None,
    ) -> None:
        """CLI entry: --about, or a run that exits with a meaningful code."""
        if about:
            cls.print_about(about_format)
            sys.exit(0)
        cls.print_version(print_fn=cls.logger.info)
        try:
            target = cls(
                config=config.config if config else None,
                validate_config=True,
                parse_env_config=bool(config and config.parse_env),
            )
        except ConfigValidationError as exc:
            sys.stderr.write(f"target-carecycle: invalid config: {'; '.join(exc.errors)}\n")
            sys.exit(1)
        except (MappingConfigError, OutputFileError) as exc:
            sys.stderr.write(f"target-carecycle: invalid config: {exc}\n")
            sys.exit(1)
        sys.exit(target.run(file_input))
