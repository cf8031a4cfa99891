"""TargetCareCycle: the run lifecycle (records, delivery, state, summary, stop signals).

Settings (schema, checks, RunSettings) live in `settings.py`; what the sinks share with the
target in `run_context.py`; the SDK's private steps, as public-named hooks (`on_record_message`,
`on_state_ready`, `on_stop_signal`, ...), in `sdk_shims.py`.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from typing import Any, ClassVar

import click
from singer_sdk.exceptions import ConfigValidationError, MappingError
from singer_sdk.helpers.capabilities import CapabilitiesEnum, PluginCapabilities
from singer_sdk.mapper import RemoveRecordTransform, SameRecordTransform
from singer_sdk.target_base import Target

from target_carecycle.client import (
    MAX_BATCH_SIZE,
    CareCycleError,
    DeliveryFailed,
)
from target_carecycle.fatal import StreamMapFailed, log_fatal, stream_map_failure
from target_carecycle.history import RunHistory
from target_carecycle.mapping import MappingConfigError
from target_carecycle.outcomes import OutputFileError, RunOutcomes, TooManyRecordErrors
from target_carecycle.preflight import run_check
from target_carecycle.printable import escape_log_handlers
from target_carecycle.run_context import RunContext, RunInterrupted, SignalGuard
from target_carecycle.sdk_shims import ShimmedTarget
from target_carecycle.setting_sources import ResolvedSettings, provenance_line, resolve_settings
from target_carecycle.settings import (
    CONFIG_SCHEMA,
    RunSettings,
    check_config,
)
from target_carecycle.singer_input import (
    InputLineError,
    LineCountingReader,
    NoSchemaYet,
    batch_records,
    safe_name,
    usable_record,
)
from target_carecycle.sinks import CareCycleSink
from target_carecycle.store import STORE_OFF, StoreInterrupted, SyncStore, SyncStoreError
from target_carecycle.sync_run import SyncRun

if sys.version_info >= (3, 12):
    from typing import override
else:  # singer-sdk brings typing_extensions on Python < 3.13
    from typing_extensions import override

EXIT_SIGNAL_BASE = 128
# A request of unknown fate may be applied by careCycle until this many request timeouts after
# the doubt arose (docs/sync-store.md): until then no run records the lead.
DOUBT_TIMEOUTS = 10
RECORD_AGE_CHECK_EVERY = 1000


class TargetCareCycle(ShimmedTarget):
    """Uploads leads from any Singer tap to careCycle, in batches of up to 200."""

    name = "target-carecycle"
    default_sink_class = CareCycleSink
    message_reader_class = LineCountingReader
    capabilities: ClassVar[list[CapabilitiesEnum]] = [
        *Target.capabilities,
        PluginCapabilities.BATCH,
    ]

    config_jsonschema = CONFIG_SCHEMA

    def __init__(
        self,
        *,
        config: dict[str, Any] | None = None,
        parse_env_config: bool = False,
        validate_config: bool = True,
        check_only: bool = False,
    ) -> None:
        # Made first: a stop signal may arrive while the SDK is still setting up.
        self.stop_requested = threading.Event()
        self.signal_guard = SignalGuard()
        self._lean_sinks: dict[str, CareCycleSink] = {}
        self._records_since_age_check = 0
        self._warned_activate_version: set[str] = set()
        # Every TARGET_CARECYCLE_* setting is read, with or without --config ENV (which only
        # lets the key and the URL come from different places): docs/settings.md.
        schema = self.config_jsonschema
        self.append_builtin_config(schema)
        self._resolved = resolve_settings(config, schema, combine=parse_env_config)
        super().__init__(
            config=self._resolved.config,
            parse_env_config=True,  # already merged; `_env_var_config` hands the SDK nothing
            validate_config=validate_config,
        )
        self.max_parallelism = 1  # one thread hands batches to the dispatcher, which overlaps them
        self.settings = RunSettings.from_config(self.config, self._resolved.sources)
        self.logger.info("%s", provenance_line(self._resolved.sources))
        settings = self.settings
        self.outcomes = RunOutcomes(
            # --check creates no file: it only reads the settings.
            reject_file=None if check_only else settings.reject_file,
            results_file=None if check_only else settings.results_file,
            max_record_errors=settings.max_record_errors,
            max_error_rate=settings.max_error_rate,
            dry_run=settings.dry_run,
            run_id=os.environ.get("MELTANO_RUN_ID"),
        )
        # What the sinks share with the target: each sink receives it (sinks.py never
        # imports this module).
        self.run_context = RunContext(
            self.settings, self.outcomes, guard=self.signal_guard, stop=self.stop_requested
        )
        self._input_done = False  # set once the last line was read: the next STATE is the last
        self._states_emitted = 0
        self.history: RunHistory | None = None  # a sending run's row in the run history
        self._warn_about_batch_size()

    def _warn_about_batch_size(self) -> None:
        requested = self.settings.batch_size_requested
        if requested is not None and requested > MAX_BATCH_SIZE:
            self.logger.warning(
                "batch_size_rows=%d is above careCycle's limit: batches hold %d leads",
                requested,
                MAX_BATCH_SIZE,
            )

    # Config

    @classmethod
    def append_builtin_config(cls, config_jsonschema: dict[str, Any]) -> None:
        """Add the SDK's built-in settings, except `load_method`: careCycle always upserts."""
        super().append_builtin_config(config_jsonschema)
        config_jsonschema["properties"].pop("load_method", None)

    # `_env_var_config` returns nothing (sdk_shims.py): `__init__` resolves file and environment.

    @override
    def check_settings(self, config: dict[str, Any], *, raise_errors: bool) -> list[str]:
        """Check settings with messages that name the setting and never echo a value."""
        schema = self.config_jsonschema
        self.append_builtin_config(schema)
        check = check_config(config, schema)
        resolved: ResolvedSettings | None = getattr(self, "_resolved", None)
        errors = [*(resolved.errors if resolved else []), *check.errors]
        for warning in [*(resolved.warnings if resolved else []), *check.warnings]:
            self.logger.warning("Config: %s", warning)
        if errors and raise_errors:
            raise ConfigValidationError("Invalid config", errors=errors)
        return errors

    # Records: a lean path for plain streams, the SDK's own path for everything else

    @override
    def on_schema_message(self, message_dict: dict[str, Any]) -> None:
        """Register the stream, then decide whether its records may take the lean path."""
        try:
            self.register_stream(message_dict)
        except MappingError as exc:
            stream = message_dict.get("stream")
            failure = stream_map_failure(stream, exc, self.settings.stream_maps)
            raise (failure or exc) from exc
        stream = message_dict["stream"]
        self._lean_sinks.pop(stream, None)
        # A SCHEMA may replace another stream's sink too (a stream map aliasing it onto that
        # name): a lean entry must never point at a retired sink, which the SDK forgets after
        # its periodic drain, so records put in it later would never be sent.
        self._lean_sinks = {
            name: lean for name, lean in self._lean_sinks.items() if self.active_sink(name) is lean
        }
        sink = self.active_sink(stream)
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

    # The lean path skips the SDK's per-record steps (sdk_shims.py says why).
    # `prepare_plain_record` keeps the two paths equal (tests/test_record_paths.py checks it;
    # tests/test_sdk_contract.py pins the SDK steps it mirrors).
    @override
    def on_record_message(self, message_dict: dict[str, Any]) -> None:
        """Hand a plain stream's record straight to its sink (same effect, a third of the cost).

        Streams with stream maps, flattening, record metadata or schema validation go
        through the SDK's path unchanged. A record that is not a usable object is rejected.
        """
        stream = message_dict["stream"]
        if stream not in self.mapper.stream_maps:
            raise NoSchemaYet(f"RECORD for stream '{safe_name(stream)}' arrived before its SCHEMA")
        record = message_dict["record"]
        problem = usable_record(record)
        if problem is not None:
            self._reject_unusable(stream, record, problem)
            return
        sink = self._lean_sinks.get(stream)
        if sink is None:
            received = self._records_received()
            try:
                self.sdk_record_path(message_dict)
            except RunInterrupted:
                raise  # a stop signal, wherever it landed (even inside an expression)
            except Exception as exc:
                failure = stream_map_failure(stream, exc, self.settings.stream_maps)
                if failure is None:
                    raise
                raise failure from exc
            if self._records_received() == received:  # a stream map filtered it out
                self._skip_filtered(stream)
            return
        sink.prepare_plain_record(record)
        sink.tally_record_read()
        sink.process_record(record, {})  # counted once, with its outcome (outcomes.py)
        if sink.is_full:
            self.drain_one(sink)
        self._records_since_age_check += 1
        if self._records_since_age_check >= RECORD_AGE_CHECK_EVERY:
            self._records_since_age_check = 0
            self.check_record_age()

    def _reject_unusable(self, stream: str, record: object, reason: str) -> None:
        """Count a record that is not an object (or nests too deep) as rejected, on its sink."""
        sink = self._sink_of(stream)
        if sink is not None:
            sink.reject_unusable(record, reason)
            return
        del record, reason  # a stream whose map sends its records nowhere: nothing to check
        self._skip_filtered(stream)

    def _records_received(self) -> int:
        return sum(tally.received for tally in self.outcomes.tallies.values())

    def _skip_filtered(self, stream: str) -> None:
        """Count a record that `stream_maps` sent to no sink (`__filter__`, `__NULL__`)."""
        with self.guarded():
            self.outcomes.received(stream)
            self.outcomes.skipped(stream)

    def _sink_of(self, stream: str) -> CareCycleSink | None:
        """The sink that receives `stream`'s records (its first stream map's)."""
        for stream_map in self.mapper.stream_maps.get(stream, []):
            if isinstance(stream_map, RemoveRecordTransform):
                continue  # the SDK makes a sink for it, but no record ever reaches it
            sink = self.active_sink(stream_map.stream_alias)
            if isinstance(sink, CareCycleSink):
                return sink
        return None

    @override
    def on_batch_message(self, message_dict: dict[str, Any]) -> None:
        """Send each record of the batch files through the RECORD path, in file order.

        The SDK would hand a whole file to `process_batch`, skipping every per-record step
        (accounting, stream maps, validation, merging, the ordering across sinks).
        """
        stream = message_dict["stream"]
        if stream not in self.mapper.stream_maps:
            raise NoSchemaYet(f"BATCH for stream '{safe_name(stream)}' arrived before its SCHEMA")
        sink = self._sink_of(stream)
        batch_config = sink.batch_config if sink is not None else None
        for url in message_dict["manifest"]:
            for record in batch_records(message_dict["encoding"], url, batch_config):
                self.on_record_message({"type": "RECORD", "stream": stream, "record": record})
            self.check_record_age()

    @override
    def on_activate_version_message(self, message_dict: dict[str, Any]) -> None:
        """Warn once per stream: careCycle leads have no table versions to switch."""
        stream = safe_name(message_dict["stream"])
        if stream in self._warned_activate_version:
            return
        self._warned_activate_version.add(stream)
        known = "" if message_dict["stream"] in self.mapper.stream_maps else " (no SCHEMA yet)"
        self.logger.warning(
            "ACTIVATE_VERSION for stream '%s'%s ignored: careCycle keeps every lead sent",
            stream,
            known,
        )

    # Delivery

    def wait_for_deliveries(self) -> None:
        """Block until every batch handed to the dispatcher has its outcome.

        Then write what the sync store still has to record: a STATE never leaves before a
        store failure that stops the run.
        """
        context = self.run_context
        if context.dispatcher_started is not None:
            context.dispatcher_started.wait_all()
        if context.sync_run is not None:
            with self.guarded():  # a stop signal ends a wait for the store between attempts
                context.sync_run.settle_now()

    def process_endofpipe(self) -> None:
        """Drain every sink, then wait for the last batches even when no STATE came."""
        self._input_done = True
        super().process_endofpipe()
        self.wait_for_deliveries()

    # The one place a STATE leaves the target (sdk_shims.py): Singer's promise (no STATE
    # before every record ahead of it is delivered) needs a wait here, the failure policy is
    # judged here, and the counts ride along.
    @override
    def on_state_ready(self, state: dict[str, Any]) -> None:
        """Emit the tap's state, plus this run's counts, once every earlier batch landed.

        Mid-run, raises TooManyRecordErrors when the failure policy fails the run. At the end
        of input a run the policy fails emits no STATE (`run` reports it once `listen` is
        done), so the tap re-reads these records next time.
        """
        self.wait_for_deliveries()
        if not self._input_done:
            self.outcomes.check_error_limit()
        elif self.outcomes.policy_breach(final=True) is not None:
            return
        self._emit_state(state)

    def _emit_state(self, state: dict[str, Any]) -> None:
        """Write a STATE unless it would move a bookmark it must not (see docs/failure-policy.md).

        A dry run never emits one (nothing was sent); a STATE is held back while the run has
        failed or rejected records and no lead careCycle holds (the latest one goes out with
        the next drain once a lead is accepted, and none if the run fails).
        """
        if self.settings.dry_run:
            return
        if not self.outcomes.state_may_pass():
            return
        self.write_state({**state, "target_carecycle": self.outcomes.state_metrics()})
        self._states_emitted += 1

    # Signals

    def guarded(self) -> SignalGuard:
        """Defer a stop signal until the bookkeeping inside this `with` block is complete."""
        return self.signal_guard

    @override
    def on_stop_signal(self, signum: int) -> None:
        """Stop cleanly: no new sends, settle requests in flight, then report."""
        if self.stop_requested.is_set():
            return  # already stopping: let the settling finish
        self.stop_requested.set()
        if self.signal_guard.depth:
            self.signal_guard.deferred_signal = signum
            return
        raise RunInterrupted(signum)

    # Run

    def open_sync_store(self) -> None:
        """Open and check the sync store before any input is read (a dry run only reads it).

        Raises SyncStoreError: a store that cannot be used stops the run before anything is
        sent, rather than silently sending every lead again.
        """
        settings = self.settings
        self._warn_about_unkept_sync_log()
        if not settings.uses_sync_store:
            if settings.sync_store != STORE_OFF and settings.dry_run:
                self.logger.info("Dry run without api_key: the sync store is not consulted")
            return
        assert settings.account is not None
        context = self.run_context
        with self.guarded():  # a stop signal ends a wait for a locked store between attempts
            store = context.sync_store = SyncStore.open(
                settings.sync_store,
                settings.account,
                writable=not settings.dry_run,
                stop=self.stop_requested,
            )
        if not settings.dry_run:
            assert settings.client is not None
            context.sync_run = SyncRun(
                store,
                skip_unchanged=settings.skip_unchanged,
                doubt_seconds=DOUBT_TIMEOUTS * settings.client.request_timeout,
            )
            self.history = RunHistory.start(
                store, context.sync_run.run_id, self.outcomes, settings.sync_log
            )
        self.logger.info(
            "Sync store: %s (%s)",
            store.describe(),
            "skipping unchanged leads" if settings.skip_unchanged else "skip_unchanged=false",
        )

    def _warn_about_unkept_sync_log(self) -> None:
        """`sync_log: true` where no sync log can be kept: one WARNING says so and why."""
        settings = self.settings
        if not settings.sync_log.enabled:
            return
        if settings.sync_store == STORE_OFF:
            why = "sync_store is off"
        elif settings.dry_run:
            why = "a dry run records no history"
        elif settings.account is None:
            why = "there is no api_key"
        else:
            return
        self.logger.warning(
            "sync_log is true, but %s: no record's outcome is kept in this run (docs/history.md)",
            why,
        )

    def run(self, file_input: Any = None) -> int:
        """Read all input, deliver, report; return the process exit code."""
        try:
            self.open_sync_store()
        except SyncStoreError as exc:
            log_fatal(f"{exc}")
            self.outcomes.close()
            return 1
        except (RunInterrupted, StoreInterrupted) as stop:  # while waiting for a locked store
            signum = getattr(stop, "signum", 15)
            self.logger.warning("Received signal %d: stopping before reading input", signum)
            self.outcomes.print_summary(0)
            self.outcomes.close()
            return EXIT_SIGNAL_BASE + signum
        self.logger.info("%s", self.run_facts(), extra={"run_facts": self.run_facts_fields()})
        code = 0
        try:
            self.listen(file_input)
            self.outcomes.check_error_limit(final=True)  # also when no STATE came at all
        except RunInterrupted as stop:
            self.logger.warning(
                "Received signal %d: stopping without reading more input", stop.signum
            )
            code = EXIT_SIGNAL_BASE + stop.signum
            self._settle_after_stop(may_emit_state=True)
        except TooManyRecordErrors as exc:
            log_fatal(
                f"the run failed on the failure policy: {exc}; fix the mapping or the data "
                f"({self._where_rejects_are()}) and run again: the tap re-reads the records "
                "after the last STATE emitted"
            )
            code = 1
            self._settle_after_stop(may_emit_state=False)
        except DeliveryFailed as exc:
            log_fatal(
                f"run failed: {exc}; run again later: the tap re-reads the records after the "
                "last STATE emitted, and what careCycle did not acknowledge is sent again"
            )
            code = 1
            self._settle_after_stop(may_emit_state=False)
        except CareCycleError as exc:
            log_fatal(f"run failed: {exc}")
            code = 1
            self._settle_after_stop(may_emit_state=False)
        except InputLineError as exc:
            log_fatal(
                f"{exc}; the input cannot be used: fix the tap or its data and run again "
                "(nothing after this line was read)"
            )
            code = 1
            self._settle_after_stop(may_emit_state=False)
        except StreamMapFailed as exc:
            log_fatal(f"{self._line_reached()}{exc}")
            code = 1
            self._settle_after_stop(may_emit_state=False)
        except MappingError as exc:  # the message may quote a record: name the kind only
            self.logger.debug("stream_maps failed", exc_info=True)
            where = self._line_reached()
            log_fatal(
                f"{where}stream_maps cannot be applied ({type(exc).__name__}): check stream_maps"
            )
            code = 1
            self._settle_after_stop(may_emit_state=False)
        except Exception as exc:  # a problem no check foresaw: still settle and account
            self.logger.debug("Unexpected error", exc_info=True)
            where = self._line_reached()
            log_fatal(
                f"{where}unexpected error ({type(exc).__name__}); "
                "TARGET_CARECYCLE_LOGLEVEL=DEBUG logs its traceback"
            )
            code = 1
            self._settle_after_stop(may_emit_state=False)
        finally:
            code = self._report_end(code)
        return code

    def run_facts(self) -> str:
        """Where this run's leads go, in one line (the start line, and in the summary)."""
        fields = self.run_facts_fields()
        mode = "DRY RUN (nothing is sent)" if self.settings.dry_run else "LIVE"
        key = f"key sha256:{fields['key_fingerprint']}" if fields["key_fingerprint"] else "no key"
        pace = (
            f"pace {fields['requests_per_minute']} requests/min, "
            f"{fields['max_concurrent_requests']} concurrent"
            if not self.settings.dry_run
            else "no requests"
        )
        return (
            f"Run {self.outcomes.run_id}: {mode} to {fields['destination']} with {key}, "
            f"source_id {fields['source_id']}, sync store {fields['sync_store']}, {pace}"
        )

    def run_facts_fields(self) -> dict[str, Any]:
        """The start line's facts as fields (never the key, never a store password)."""
        settings = self.settings
        sync_store = self.run_context.sync_store
        if sync_store is not None:
            store = sync_store.describe()
        elif settings.sync_store == STORE_OFF:
            store = "off"
        else:
            store = "not consulted (dry run without api_key)"
        client = settings.client
        return {
            "run_id": self.outcomes.run_id,
            "dry_run": settings.dry_run,
            "destination": settings.destination,
            "key_fingerprint": settings.key_fingerprint,
            "source_id": settings.source_description,
            "sync_store": store,
            "requests_per_minute": client.max_requests_per_minute if client else None,
            "max_concurrent_requests": client.max_concurrent_requests if client else None,
        }

    def _where_rejects_are(self) -> str:
        path = self.outcomes.reject_path
        return (
            f"the reject file {path} has every record and reason"
            if path
            else ("set reject_file to keep every failed or rejected record with its reason")
        )

    def _report_end(self, code: int) -> int:
        """Close the dispatcher and the store, then report: summary, run summary, STATE.

        Returns the exit code: 1 when closing the store failed (one line said why).
        """
        context = self.run_context
        if context.dispatcher_started is not None:
            context.dispatcher_started.close()
        if self.history is not None:  # before the store closes; a failure only warns
            dispatcher = context.dispatcher_started
            self.history.finish(code, self.outcomes, dispatcher.traffic if dispatcher else {})
        if not self._close_sync_store() and code == 0:
            code = 1
        client = context.client
        requests = client.requests_sent if client else 0
        self.outcomes.log_suppressed_warnings()
        self.outcomes.print_summary(requests, facts=self.run_facts())
        event = self.outcomes.summary_event(
            exit_code=code,
            requests=requests,
            rate_limited_429=client.rate_limited if client else 0,
            retries=client.retries if client else 0,
            states_emitted=self._states_emitted,
            **{k: v for k, v in self.run_facts_fields().items() if k not in ("run_id", "dry_run")},
        )
        self.logger.info(
            "Run summary: %s",
            json.dumps(event, separators=(",", ":")),
            extra={"run_summary": event},
        )
        self._log_state_outcome(code)
        self.outcomes.close()
        return code

    def _log_state_outcome(self, code: int) -> None:
        """Say which STATE this run left behind, so the next run's starting point is known."""
        if self.settings.dry_run:
            self.logger.info(
                "Dry run: no STATE was emitted, so the tap's bookmark does not move and a real "
                "run reads these records again"
            )
        elif code != 0 and self._states_emitted == 0:
            self.logger.info(
                "No STATE was emitted in this run: the tap's bookmark stays where the last "
                "successful run left it"
            )
        elif code != 0:
            self.logger.info(
                "%d STATE messages were emitted before the run stopped; the last one covers "
                "only records read before it, so the next run re-reads everything after it",
                self._states_emitted,
            )

    def _close_sync_store(self) -> bool:
        """Stop the store's writer and close the store; False (one line said why) on failure."""
        context = self.run_context
        if context.sync_run is not None:
            context.sync_run.close()
        if context.sync_store is None:
            return True
        try:
            context.sync_store.close()
        except Exception as exc:  # whatever the driver raises on close: one line, no traceback
            log_fatal(
                f"sync_store: closing the store failed ({type(exc).__name__}); the next run "
                "sends again what this run could not record"
            )
            return False
        return True

    def _line_reached(self) -> str:
        reader = self.message_reader
        if not isinstance(reader, LineCountingReader) or reader.done_reading:
            return ""
        return f"line {reader.line_number}: " if reader.line_number else ""

    def _settle_after_stop(self, *, may_emit_state: bool) -> None:
        """After a stop: record what in-flight batches achieved, count the rest as unsent.

        After a signal the last STATE is emitted when every record received has its outcome
        (it is true then) and the failure policy lets it pass; after a failure none is, so a
        re-run starts where the last one that finished left off.
        """
        self.stop_requested.set()
        dispatcher = self.run_context.dispatcher_started
        if dispatcher is not None:
            dispatcher.settle()
        store_settled = self._settle_sync_store()
        for sink in self.every_sink():  # retired sinks included
            if isinstance(sink, CareCycleSink):
                sink.abandon_waiting_leads()
        latest_state = self.latest_state
        if (
            may_emit_state
            and store_settled
            and latest_state
            and self.outcomes.all_settled()
            # every record read has its outcome: judge them as the end of input would
            and self.outcomes.policy_breach(final=True) is None
        ):
            self._emit_state(latest_state)

    @classmethod
    def get_singer_command(cls) -> click.Command:
        """The SDK's command, plus `--check` (a preflight check that reads no input)."""
        command = super().get_singer_command()
        command.params.append(
            click.Option(
                ["--check"],
                is_flag=True,
                default=False,
                help=(
                    "Check the settings, the URL, DNS, TLS and the API key (an upload of no "
                    "records), print one line and exit: 0 when the key is accepted. Reads no "
                    "input and sends no lead."
                ),
            )
        )
        return command

    def _settle_sync_store(self) -> bool:
        """After a stop: write the acknowledgements still waiting (waiting at most a second).

        False when the store failed; one line names `sync_store` unless the run already
        stopped because of that failure. Leads it did not record are sent again next time.
        """
        sync_run = self.run_context.sync_run
        if sync_run is None:
            return True
        already_reported = sync_run.failed
        try:
            sync_run.settle_now(after_stop=True)
        except SyncStoreError as exc:
            if not already_reported:
                self.logger.error("Run failed: %s", exc)
            return False
        return True

    @classmethod
    def invoke(  # type: ignore[override]
        cls,
        *,
        about: bool = False,
        about_format: str | None = None,
        config: Any = None,
        file_input: Any = None,
        check: bool = False,
    ) -> None:
        """CLI entry: --about, --check, or a run that exits with a meaningful code."""
        if about:
            cls.print_about(about_format)
            sys.exit(0)
        escape_log_handlers()  # the SDK's own lines name streams too: none forges a line
        if not check:
            cls.print_version(print_fn=cls.logger.info)
        try:
            target = cls(
                config=config.config if config else None,
                validate_config=True,
                parse_env_config=bool(config and config.parse_env),
                check_only=check,
            )
        except ConfigValidationError as exc:
            log_fatal(f"invalid config: {'; '.join(exc.errors)}")  # names a key as typed
            sys.exit(1)
        except (MappingConfigError, OutputFileError) as exc:
            log_fatal(f"invalid config: {exc}")
            sys.exit(1)
        if check:
            sys.exit(run_check(target.settings))
        sys.exit(target.run(file_input))


def main() -> None:
    """The `target-carecycle` command: the SDK's CLI, with an unreadable --config as one line.

    The SDK reads --config files while parsing arguments, before any hook of ours runs, and a
    file that is missing or not JSON ends there in a traceback. Logging is configured by the
    time it does (accessing `cli` sets up the SDK's console logging).
    """
    command = TargetCareCycle.cli
    try:
        command.main(prog_name=TargetCareCycle.name)
    except ValueError as exc:  # json's and simplejson's JSONDecodeError
        line, column = getattr(exc, "lineno", None), getattr(exc, "colno", None)
        where = f" at line {line} column {column}" if isinstance(line, int) else ""
        log_fatal(f"invalid config: a --config file is not JSON{where}")
        sys.exit(1)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        log_fatal(f"invalid config: a --config file cannot be read ({reason})")
        sys.exit(1)
