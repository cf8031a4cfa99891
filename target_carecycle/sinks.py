"""CareCycleSink: map each record to a lead, collect up to 200, hand them to the dispatcher.

A sink gets what the run shares (settings, outcomes, leads waiting, the signal guard, the
sync store, the dispatcher) from its `RunContext` (run_context.py), never from the target.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from singer_sdk import metrics
from singer_sdk.target_base import Target

from target_carecycle.client import BatchResult
from target_carecycle.leads import normalise_lead
from target_carecycle.mapping import StreamMapper, personal_external_id, settings_for_stream
from target_carecycle.outcomes import UncountedRecords, mask_lead
from target_carecycle.printable import printable
from target_carecycle.run_context import RunContext, run_context_of
from target_carecycle.sdk_shims import ShimmedBatchSink
from target_carecycle.singer_input import BadInput, safe_name
from target_carecycle.sync_run import ClaimedBatch

if TYPE_CHECKING:
    from singer_sdk.sinks.core import BaseJSONSchemaValidator

if sys.version_info >= (3, 12):
    from typing import override
else:  # singer-sdk brings typing_extensions on Python < 3.13
    from typing_extensions import override

DRY_RUN_SAMPLE_SIZE = 3


@dataclass(slots=True)
class WaitingLead:
    """A lead waiting in a batch, with what is needed to report its outcome."""

    position: int
    external_id: str
    lead: dict[str, Any]
    record: Mapping[str, Any]
    payload_hash: bytes = b""  # set when a sync store is in use
    lead_key: bytes = b""  # the externalId as the store keeps it (hashed once per lead)


class SchemaCheck:
    """Optional check against the tap's schema that reports instead of raising."""

    def __init__(self, stream: str, schema: dict[str, Any]) -> None:
        from jsonschema import Draft7Validator, FormatChecker
        from jsonschema.exceptions import SchemaError

        self._stream = stream
        try:
            Draft7Validator.check_schema(schema)
        except SchemaError as exc:
            raise BadInput(
                f"SCHEMA for stream '{safe_name(stream)}' is not a valid JSON Schema, needed by "
                f"validate_records ({'.'.join(map(str, exc.absolute_path)) or 'schema'}: "
                f"{exc.validator})"
            ) from None
        self._draft7 = Draft7Validator(schema, format_checker=FormatChecker())
        self.last_error: str | None = None

    def validate(self, record: dict[str, Any]) -> None:
        """Remember the first schema violation of `record` (no values), or None.

        The reason names the place in the schema, never the record's own keys (a key can
        be personal data, e.g. an email used as a key).
        """
        from jsonschema.exceptions import ValidationError

        try:
            error = next(iter(self._draft7.iter_errors(record)), None)
        except ValidationError:
            raise
        except Exception as exc:  # e.g. a $ref the schema cannot resolve
            raise BadInput(
                f"SCHEMA for stream '{safe_name(self._stream)}' cannot check records with "
                f"validate_records ({type(exc).__name__})"
            ) from None
        if error is None:
            self.last_error = None
            return
        where = schema_path(error.absolute_schema_path)
        self.last_error = f"{where}: does not match the stream's schema ({error.validator})"


def schema_path(parts: Iterable[Any]) -> str:
    """The place in the schema that failed, named from the schema alone.

    ['properties', 'contacts', 'additionalProperties', 'type'] gives
    `contacts.additionalProperties`: no `properties` steps, no failing keyword.
    """
    steps = [str(part) for part in parts][:-1]
    named: list[str] = []
    index = 0
    while index < len(steps):
        if steps[index] == "properties" and index + 1 < len(steps):
            index += 1
        named.append(steps[index])
        index += 1
    return ".".join(named) or "record"


class CareCycleSink(ShimmedBatchSink):
    """Turns one stream's records into careCycle leads and uploads them in batches."""

    def __init__(self, target: Target, *args: Any, **kwargs: Any) -> None:
        # The SDK constructs each sink with the target; the sink keeps only the run context.
        self._run: RunContext = run_context_of(target)
        super().__init__(target, *args, **kwargs)
        settings = self._run.settings
        self._stream_settings = settings_for_stream(settings.streams, self.stream_name)
        self._mapper = StreamMapper(
            self.stream_name,
            self._stream_settings,
            list(self.key_properties),
            default_source_id=settings.default_source_id,
            default_lead_cost=settings.default_lead_cost,
        )
        self._outcomes = self._run.outcomes
        self._batch: dict[str, WaitingLead] = {}
        self._warned_content_hash = False
        self._dry_run_shown = 0
        self._warn_about_a_personal_external_id()

    @property
    def max_size(self) -> int:
        """Leads per upload: `batch_size_rows`, never above careCycle's 200."""
        return self._run.settings.batch_size

    @property
    def current_size(self) -> int:
        """Leads waiting in the current batch (rejected records take no room)."""
        return len(self._batch)

    def has_no_record_checks(self) -> bool:
        """True when the SDK's per-record steps would leave records untouched."""
        return self.record_validator is None and not self.include_sdc_metadata_properties

    # A public SDK hook (0.51+), overridden to silence what it makes: the SDK counts every record
    # once more, untagged, in `record_count` (its record path increments this counter, and
    # `clean_up` emits it), so summing record_count by stream gave twice `received`. Each record
    # is counted once by RunOutcomes, tagged with its outcome. The missing hook is a switch for
    # the SDK's own count; remove this when the SDK offers one (or tags the count itself).
    # Pinned in tests/test_sdk_contract.py.
    @override
    def get_sink_record_counter(self) -> metrics.Counter:
        """A counter that never emits: records are counted by outcome (outcomes.py)."""
        return UncountedRecords(self.stream_name)

    def get_validator(self) -> BaseJSONSchemaValidator | None:
        """Schema checks are opt-in (`validate_records`); lead validation always runs."""
        if not self._run.settings.validate_records:
            return None
        return SchemaCheck(self.stream_name, self.schema)  # type: ignore[return-value]

    def prepare_plain_record(self, record: dict[str, Any]) -> None:
        """Do to a lean-path record what the SDK's record path does to it (see target.py).

        For a plain stream (no maps, flattening, metadata columns or schema checks) that is
        only this: the SDK's `_sdc_*` columns are removed, as with `add_record_metadata` off.
        """
        self.remove_sdc_metadata(record)

    # Dates stay strings and a record missing its key properties is not an error: the
    # SDK's steps for both are no-ops in ShimmedBatchSink (sdk_shims.py says why).

    def process_record(self, record: dict[str, Any], context: dict[str, Any]) -> None:
        """Map, normalise and validate one record; queue the lead or report the rejection."""
        with self._run.guarded():
            position = self._outcomes.received(self.stream_name)
            if not self._stream_settings.enabled:
                self._outcomes.skipped(self.stream_name)
                return
            self._collect(record, position)

    def reject_unusable(self, record: Any, reason: str) -> None:
        """Count a record that is not an object (or nests too deep) as received and rejected."""
        with self._run.guarded():
            position = self._outcomes.received(self.stream_name)
            if not self._stream_settings.enabled:
                self._outcomes.skipped(self.stream_name)
                return
            kept = None if type(record) not in (list, str, int, float, bool) else record
            self._outcomes.rejected(self.stream_name, position, None, reason, kept)
        self._outcomes.check_error_limit()

    def _collect(self, record: dict[str, Any], position: int) -> None:
        """Queue the record's lead (or reject it), replacing any older pending version."""
        stream = self.stream_name
        schema_error = getattr(self.record_validator, "last_error", None)
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
            phone_validation=self._run.settings.phone_validation,
            strict=self._run.settings.strict,
        )
        if result.omitted:
            self._outcomes.omitted(stream, result.omitted)
        if result.lead is None:
            self._reject(position, external_id, result.rejection or "invalid lead", record)
            return
        replaced = self._batch.pop(external_id, None)
        if replaced is not None:
            self._outcomes.merged(stream, replaced.position, external_id)
        self._batch[external_id] = WaitingLead(position, external_id, result.lead, record)
        older = self._run.leads_waiting.claim(external_id, self)
        if older is not None:
            older.withdraw(external_id)

    def withdraw(self, external_id: str) -> None:
        """A newer version of this lead is pending in another sink: drop ours unsent (merged)."""
        replaced = self._batch.pop(external_id, None)
        if replaced is not None:
            self._outcomes.merged(self.stream_name, replaced.position, external_id)

    def _reject(self, position: int, external_id: str | None, reason: str, record: Any) -> None:
        self._outcomes.rejected(self.stream_name, position, external_id, reason, record)
        self._outcomes.check_error_limit()

    def _warn_about_a_personal_external_id(self) -> None:
        """Say at the stream's start when its externalIds are personal data (an email...)."""
        found = personal_external_id(self.stream_name, self._stream_settings)
        if found is None:
            return
        self.logger.warning(
            "Stream '%s': %s takes the externalId from column '%s', which holds personal data "
            "(%s): externalIds appear in log lines, reject and results files, the sync log "
            "and the report. Map a CRM id (the record's own ID) to streams.%s.external_id "
            "instead.",
            printable(self.stream_name),
            printable(found.setting),
            printable(found.column),
            found.lead_field,
            printable(self.stream_name),
        )

    def _warn_once_about_content_hash(self) -> None:
        if self._warned_content_hash or self._mapper.external_id_source != "content_hash":
            return
        self._warned_content_hash = True
        self.logger.warning(
            "Stream '%s' has no key properties and no external ID column: externalId is a hash "
            "of each record's content, so a changed record becomes a new lead. Set "
            "streams.%s.external_id to the record's own ID.",
            printable(self.stream_name),
            printable(self.stream_name),
        )

    def process_batch(self, context: dict[str, Any]) -> None:
        """Hand the collected leads to the dispatcher (or, in a dry run, count them).

        The leads stay in this sink's batch until the dispatcher has taken them, so a stop
        signal or a store failure at any point leaves each lead counted exactly once (leads
        still in the batch are counted `unsent`). Unchanged leads are found only once every
        earlier batch sharing an externalId has been answered, so the store is never
        compared with a stale version.
        """
        entries = list(self._batch.values())
        if not entries:
            return
        external_ids = frozenset(self._batch)
        if self._run.settings.dry_run:
            with self._run.guarded():
                unchanged = self._find_unchanged_dry_run(entries)
                self._batch = {}
                self._run.leads_waiting.release(external_ids, self)
                self._outcomes.unchanged(self.stream_name, len(unchanged))
                self._pretend_sent([e for e in entries if e.external_id not in unchanged])
            return
        dispatcher = self._run.dispatcher
        dispatcher.make_room(external_ids)
        # Every earlier batch sharing an externalId with this one is finished here. The
        # claim is made (and old digests dropped, durably) before the leads leave the batch:
        # if the store fails, or a stop signal ends a wait for its lock, they are still in
        # the batch and counted as unsent.
        with self._run.guarded():
            unchanged, claimed = self._claim(entries)
            self._batch = {}
            self._run.leads_waiting.release(external_ids, self)
            self._outcomes.unchanged(self.stream_name, len(unchanged), unchanged)
            to_send = [entry for entry in entries if entry.external_id not in unchanged]
            if not to_send:
                return
            sync_run = self._run.sync_run
            dispatcher.enqueue(
                [entry.lead for entry in to_send],
                frozenset(entry.external_id for entry in to_send),
                on_done=partial(self._record_result, to_send),
                on_lost=partial(self._record_lost, to_send),
                on_answer=(
                    partial(sync_run.answered, claimed)
                    if sync_run is not None and claimed is not None
                    else None
                ),
                stream=self.stream_name,  # the run history's requests per stream
            )

    def _digest(self, entries: list[WaitingLead]) -> None:
        """Each lead's store key and payload digest, computed once per lead."""
        store = self._run.sync_store
        assert store is not None
        account = store.account
        for entry in entries:
            entry.lead_key = account.lead_key(entry.external_id)
            entry.payload_hash = account.payload_hash(entry.lead)

    def _claim(self, entries: list[WaitingLead]) -> tuple[set[str], ClaimedBatch | None]:
        """(externalIds unchanged, the store's claim of the others) for a batch to send."""
        sync_run = self._run.sync_run
        if sync_run is None:
            return set(), None
        self._digest(entries)
        positions, claimed = sync_run.claim(
            [entry.lead_key for entry in entries], [entry.payload_hash for entry in entries]
        )
        return {entries[p].external_id for p in positions}, claimed

    def _find_unchanged_dry_run(self, entries: list[WaitingLead]) -> set[str]:
        """The externalIds equal to what careCycle last acknowledged (one read-only lookup).

        No digest is computed when there is no store to compare with.
        """
        store = self._run.sync_store
        if store is None or not store.exists or not self._run.settings.skip_unchanged:
            return set()
        self._digest(entries)
        same = store.compare({entry.lead_key: entry.payload_hash for entry in entries})
        return {entry.external_id for entry in entries if entry.lead_key in same}

    def _record_result(self, entries: list[WaitingLead], result: BatchResult) -> None:
        outcomes, stream = self._outcomes, self.stream_name
        with self._run.guarded():
            for index, entry in enumerate(entries):
                reason = result.failures.get(index)
                if reason is None:
                    found = result.ids.get(index)
                    outcomes.succeeded(stream, entry.external_id, found, entry.position)
                else:
                    outcomes.failed(stream, entry.position, entry.external_id, reason, entry.record)
            outcomes.maybe_log_progress()
        outcomes.check_error_limit()
        if self._run.sync_run is not None:
            self._run.sync_run.check()  # a failure of the store's writer stops the run

    def _record_lost(self, entries: list[WaitingLead]) -> None:
        self._outcomes.unsent(self.stream_name, len(entries), (e.external_id for e in entries))

    def abandon_waiting_leads(self) -> None:
        """After a stop: leads still waiting in the batch will not be sent."""
        self._outcomes.unsent(self.stream_name, len(self._batch), self._batch)
        self._run.leads_waiting.release(self._batch, self)
        self._batch = {}

    def _pretend_sent(self, entries: list[WaitingLead]) -> None:
        for entry in entries:
            self._outcomes.succeeded(self.stream_name, entry.external_id, None)
        for entry in entries[: DRY_RUN_SAMPLE_SIZE - self._dry_run_shown]:
            self._dry_run_shown += 1
            self.logger.info("Dry run sample (personal data masked): %s", mask_lead(entry.lead))
