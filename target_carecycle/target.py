"""TargetCareCycle: the run lifecycle (records, delivery, state, summary, stop signals).

Settings (schema, checks, RunSettings) live in `settings.py`.
"""

from __future__ import annotations

import os
import sys
import threading
from types import FrameType
from typing import Any

from singer_sdk.contrib.msgspec import MsgSpecReader
from singer_sdk.exceptions import ConfigValidationError
from singer_sdk.mapper import SameRecordTransform
from singer_sdk.target_base import Target

from target_carecycle.client import (
    MAX_BATCH_SIZE,
    CareCycleError,
    LeadUploadClient,
    UploadDispatcher,
)
from target_carecycle.mapping import MappingConfigError
from target_carecycle.outcomes import OutputFileError, RunOutcomes, TooManyRecordErrors
from target_carecycle.settings import API_KEY_ENV, CONFIG_SCHEMA, RunSettings, setting_errors
from target_carecycle.sinks import CareCycleSink
from target_carecycle.store import STORE_OFF, SyncStore, SyncStoreError

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


class TargetCareCycle(Target):
    """Uploads leads from any Singer tap to careCycle, in batches of up to 200."""

    name = "target-carecycle"
    default_sink_class = CareCycleSink
    message_reader_class = MsgSpecReader

    config_jsonschema = CONFIG_SCHEMA

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
        self.sync_store: SyncStore | None = None
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
        errors = setting_errors(self._config, schema)
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
            self._client = LeadUploadClient(
                self.settings.client, stop=self._stop, shared_budget=self.sync_store
            )
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

    def open_sync_store(self) -> None:
        """Open and check the sync store before any input is read (a dry run only reads it).

        Raises SyncStoreError: a store that cannot be used stops the run before anything is
        sent, rather than silently sending every lead again.
        """
        settings = self.settings
        if not settings.uses_sync_store:
            if settings.sync_store != STORE_OFF and settings.dry_run:
                self.logger.info("Dry run without api_key: the sync store is not consulted")
            return
        assert settings.account is not None
        self.sync_store = SyncStore.open(
            settings.sync_store, settings.account, writable=not settings.dry_run
        )
        self.logger.info(
            "Sync store: %s (%s)",
            self.sync_store.describe(),
            "skipping unchanged leads" if settings.skip_unchanged else "skip_unchanged=false",
        )

    def run(self, file_input: Any = None) -> int:
        """Read all input, deliver, report; return the process exit code."""
        try:
            self.open_sync_store()
        except SyncStoreError as exc:
            sys.stderr.write(f"target-carecycle: {exc}\n")
            self.outcomes.close()
            return 1
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
            if self.sync_store is not None:
                self.sync_store.close()
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
