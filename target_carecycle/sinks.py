"""CareCycleSink: map each record to a lead, collect up to 200, hand them to the dispatcher."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from singer_sdk.sinks import BatchSink

from target_carecycle.client import MAX_BATCH_SIZE, BatchResult
from target_carecycle.leads import normalise_lead
from target_carecycle.mapping import StreamMapper, settings_for_stream
from target_carecycle.outcomes import mask_lead

if TYPE_CHECKING:
    from singer_sdk.sinks.core import BaseJSONSchemaValidator

    from target_carecycle.target import TargetCareCycle

DRY_RUN_SAMPLE_SIZE = 3


@dataclass(slots=True)
class PendingLead:
    """A lead waiting in a batch, with what is needed to report its outcome."""

    position: int
    external_id: str
    lead: dict[str, Any]
    record: Mapping[str, Any]
    payload_hash: bytes = b""  # set when a sync store is in use


class SchemaCheck:
    """Optional check against the tap's schema that reports instead of raising."""

    def __init__(self, schema: dict[str, Any]) -> None:
        from jsonschema import Draft7Validator, FormatChecker

        self._validator = Draft7Validator(schema, format_checker=FormatChecker())
        self.last_error: str | None = None

    def validate(self, record: dict[str, Any]) -> None:
        """Remember the first schema violation of `record` (no values), or None."""
        error = next(iter(self._validator.iter_errors(record)), None)
        if error is None:
            self.last_error = None
            return
        where = ".".join(str(p) for p in error.absolute_path) or "record"
        self.last_error = f"{where}: does not match the stream's schema ({error.validator})"


class CareCycleSink(BatchSink):
    """Turns one stream's records into careCycle leads and uploads them in batches."""

    MAX_SIZE_DEFAULT = MAX_BATCH_SIZE

    def __init__(self, target: TargetCareCycle, *args: Any, **kwargs: Any) -> None:
        self._target = target
        super().__init__(target, *args, **kwargs)
        settings = target.settings
        self._stream_settings = settings_for_stream(settings.streams, self.stream_name)
        self._mapper = StreamMapper(
            self.stream_name,
            self._stream_settings,
            list(self.key_properties),
            default_source_id=settings.default_source_id,
            default_lead_cost=settings.default_lead_cost,
        )
        self._outcomes = target.outcomes
        self._batch: dict[str, PendingLead] = {}
        self._warned_content_hash = False
        self._dry_run_shown = 0

    @property
    def max_size(self) -> int:
        """Leads per upload: `batch_size_rows`, never above careCycle's 200."""
        return self._target.settings.batch_size

    @property
    def current_size(self) -> int:
        """Leads waiting in the current batch (rejected records take no room)."""
        return len(self._batch)

    def has_no_record_checks(self) -> bool:
        """True when the SDK's per-record steps would leave records untouched."""
        return self._validator is None and not self.include_sdc_metadata_properties

    def get_validator(self) -> BaseJSONSchemaValidator | None:
        """Schema checks are opt-in (`validate_records`); lead validation always runs."""
        if not self.config.get("validate_records", False):
            return None
        return SchemaCheck(self.schema)  # type: ignore[return-value]

    def _parse_timestamps_in_record(self, record: dict, schema: dict, treatment: Any) -> None:
        """Leave date strings as they are: the lead normaliser parses the fields it sends."""

    def _singer_validate_message(self, record: dict) -> None:
        """A record missing its key properties still gets an ID (see mapping), never a crash."""

    def process_record(self, record: dict, context: dict) -> None:
        """Map, normalise and validate one record; queue the lead or report the rejection."""
        with self._target.guarded():
            position = self._outcomes.received(self.stream_name)
            if not self._stream_settings.enabled:
                self._outcomes.skipped(self.stream_name)
                return
            self._collect(record, position)

    def _collect(self, record: dict[str, Any], position: int) -> None:
        stream = self.stream_name
        schema_error = getattr(self._validator, "last_error", None)
        try:
            raw = self._mapper.map_record(record)
        except (ValueError, TypeError) as exc:
            self._reject(position, None, f"record cannot be mapped: {exc}", record)
            return
        external_id = str(raw["externalId"])
        if schema_error:
            self._reject(position, external_id, schema_error, record)
            return
        self._warn_once_about_content_hash()
        result = normalise_lead(
            raw,
            phone_validation=self._target.settings.phone_validation,
            strict=self._target.settings.strict,
        )
        if result.omitted:
            self._outcomes.omitted(stream, result.omitted)
        if result.lead is None:
            self._reject(position, external_id, result.rejection or "invalid lead", record)
            return
        replaced = self._batch.pop(external_id, None)
        if replaced is not None:
            self._outcomes.merged(stream, replaced.position, external_id)
        self._batch[external_id] = PendingLead(position, external_id, result.lead, record)

    def _reject(self, position: int, external_id: str | None, reason: str, record: Any) -> None:
        self._outcomes.rejected(self.stream_name, position, external_id, reason, record)
        self._outcomes.check_error_limit()

    def _warn_once_about_content_hash(self) -> None:
        if self._warned_content_hash or self._mapper.external_id_source != "content_hash":
            return
        self._warned_content_hash = True
        self.logger.warning(
            "Stream '%s' has no key properties and no external ID column: externalId is a hash "
            "of each record's content, so a changed record becomes a new lead. Set "
            "streams.%s.external_id to the record's own ID.",
            self.stream_name,
            self.stream_name,
        )

    def process_batch(self, context: dict) -> None:
        """Hand the collected leads to the dispatcher (or, in a dry run, count them).

        The leads stay in this sink's batch until the dispatcher has taken them, so a stop
        signal at any point leaves each lead counted exactly once. Unchanged leads are found
        only once every earlier batch sharing an externalId has been handed back (its
        acknowledged leads stored), so the store is never compared with a stale version.
        """
        entries = list(self._batch.values())
        if not entries:
            return
        if self._target.settings.dry_run:
            unchanged = self._find_unchanged(entries)
            with self._target.guarded():
                self._batch = {}
                self._outcomes.unchanged(self.stream_name, len(unchanged))
                self._pretend_sent([e for e in entries if e.external_id not in unchanged])
            return
        dispatcher = self._target.dispatcher
        external_ids = frozenset(self._batch)
        dispatcher.make_room(external_ids)
        unchanged = self._find_unchanged(entries)
        with self._target.guarded():
            self._batch = {}
            self._outcomes.unchanged(self.stream_name, len(unchanged))
            to_send = [entry for entry in entries if entry.external_id not in unchanged]
            if not to_send:
                return
            dispatcher.enqueue(
                [entry.lead for entry in to_send],
                frozenset(entry.external_id for entry in to_send),
                on_done=partial(self._record_result, to_send),
                on_lost=partial(self._record_lost, to_send),
            )

    def _find_unchanged(self, entries: list[PendingLead]) -> set[str]:
        """The externalIds whose lead equals what careCycle last acknowledged (one lookup)."""
        store = self._target.sync_store
        if store is None:
            return set()
        for entry in entries:
            entry.payload_hash = store.account.payload_hash(entry.lead)
        if not self._target.settings.skip_unchanged:
            return set()
        return store.unchanged_ids({entry.external_id: entry.payload_hash for entry in entries})

    def _record_result(self, entries: list[PendingLead], result: BatchResult) -> None:
        outcomes, stream = self._outcomes, self.stream_name
        with self._target.guarded():
            for index, entry in enumerate(entries):
                reason = result.failures.get(index)
                if reason is None:
                    outcomes.succeeded(stream, entry.external_id, result.ids.get(index))
                else:
                    outcomes.failed(stream, entry.position, entry.external_id, reason, entry.record)
            outcomes.maybe_log_progress()
            self._store_acknowledged(entries, result)
        outcomes.check_error_limit()

    def _store_acknowledged(self, entries: list[PendingLead], result: BatchResult) -> None:
        """Remember the leads careCycle accepted (one transaction); refused ones are retried."""
        store = self._target.sync_store
        if store is None or self._target.settings.dry_run:
            return
        store.record_acknowledged(
            (entry.external_id, entry.payload_hash, result.ids.get(index))
            for index, entry in enumerate(entries)
            if index not in result.failures
        )

    def _record_lost(self, entries: list[PendingLead]) -> None:
        self._outcomes.unsent(self.stream_name, len(entries))

    def abandon_pending(self) -> None:
        """After a stop: leads still waiting in the batch will not be sent."""
        self._outcomes.unsent(self.stream_name, len(self._batch))
        self._batch = {}

    def _pretend_sent(self, entries: list[PendingLead]) -> None:
        for entry in entries:
            self._outcomes.succeeded(self.stream_name, entry.external_id, None)
        for entry in entries[: DRY_RUN_SAMPLE_SIZE - self._dry_run_shown]:
            self._dry_run_shown += 1
            self.logger.info("Dry run sample (personal data masked): %s", mask_lead(entry.lead))
