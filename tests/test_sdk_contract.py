"""The singer-sdk behaviours target-carecycle relies on, pinned against the SDK itself.

`target_carecycle/sdk_shims.py` is the only module that overrides private SDK methods, reads
private attributes or imports private modules, where no public hook exists (each shim says
why). The tests below use a minimal Target and BatchSink, not ours, so an SDK upgrade that
changes one of those behaviours fails here first, with a name that says which assumption
broke, before any delivery test fails for a subtler reason; the last section pins each shim
of sdk_shims.py itself. An SDK upgrade is sdk_shims.py and this file (docs/sdk-upgrade.md).
"""

from __future__ import annotations

import copy
import gzip
import inspect
import io
import json
import logging
import os
import signal
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar

import click
import pytest
from singer_sdk import metrics
from singer_sdk import typing as th
from singer_sdk.contrib.msgspec import MsgSpecReader
from singer_sdk.exceptions import ConfigValidationError, InvalidInputLine, MissingKeyPropertiesError
from singer_sdk.helpers._classproperty import classproperty
from singer_sdk.helpers.capabilities import PluginCapabilities
from singer_sdk.mapper import SameRecordTransform
from singer_sdk.sinks import BatchSink
from singer_sdk.target_base import Target

STREAM = "people"
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "id": {"type": "integer"},
        "name": {"type": ["string", "null"]},
        "born": {"type": ["string", "null"], "format": "date"},
        "score": {"type": ["number", "null"]},
        "address": {"type": ["object", "null"], "properties": {"city": {"type": "string"}}},
    },
}


class RecordingSink(BatchSink):
    """A BatchSink that writes down every SDK call our sink depends on, in order."""

    events: ClassVar[list[tuple[str, Any]]] = []
    keep_timestamps_as_strings = False
    skip_key_property_check = False

    def _log(self, name: str, value: Any = None) -> None:
        self.events.append((name, value))

    def _validate_and_parse(self, record: dict[str, Any]) -> dict[str, Any]:
        self._log("validate_and_parse")
        return super()._validate_and_parse(record)

    def _parse_timestamps_in_record(
        self, record: dict[str, Any], schema: dict[str, Any], treatment: Any
    ) -> None:
        self._log("parse_timestamps")
        if not self.keep_timestamps_as_strings:
            super()._parse_timestamps_in_record(record, schema, treatment)

    def _singer_validate_message(self, record: dict[str, Any]) -> None:
        self._log("singer_validate")
        if not self.skip_key_property_check:
            super()._singer_validate_message(record)

    def process_record(self, record: dict[str, Any], context: dict[str, Any]) -> None:
        self._log("process_record", copy.deepcopy(record))
        super().process_record(record, context)

    def process_batch(self, context: dict[str, Any]) -> None:
        self._log("process_batch", [r.get("id") for r in context.get("records", [])])


class MinimalTarget(Target):
    """The smallest target: one sink class, the SDK's default everything else."""

    name = "target-contract"
    config_jsonschema = th.PropertiesList(th.Property("token", th.StringType)).to_dict()
    default_sink_class = RecordingSink


class MsgSpecTarget(MinimalTarget):
    message_reader_class = MsgSpecReader


@pytest.fixture(autouse=True)
def fresh_events() -> Iterator[None]:
    RecordingSink.events.clear()
    RecordingSink.keep_timestamps_as_strings = False
    RecordingSink.skip_key_property_check = False
    sigint, sigterm = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGINT, sigint)  # constructing a Target installs its handlers
    signal.signal(signal.SIGTERM, sigterm)


def schema_message(schema: dict[str, Any] = SCHEMA, keys: list[str] | None = None) -> str:
    return json.dumps(
        {"type": "SCHEMA", "stream": STREAM, "schema": schema, "key_properties": keys or ["id"]}
    )


def record_message(record: dict[str, Any]) -> str:
    return json.dumps({"type": "RECORD", "stream": STREAM, "record": record})


def state_message(value: dict[str, Any]) -> str:
    return json.dumps({"type": "STATE", "value": value})


def run(target: Target, lines: list[str]) -> None:
    target.listen(io.StringIO("\n".join(lines) + "\n"))


def names(events: list[tuple[str, Any]]) -> list[str]:
    return [name for name, _ in events]


# Config


def test_validate_config_runs_in_init_with_the_mutable_config() -> None:
    """target.py's `_validate_config` fills api_key from the environment into `_config`."""
    seen: dict[str, Any] = {}

    class FillingTarget(MinimalTarget):
        def _validate_config(self, *, raise_errors: bool = True) -> list[str]:
            seen["raise_errors"] = raise_errors
            self._config["token"] = "filled-in"
            return []

    target = FillingTarget(config={}, validate_config=True)
    assert seen == {"raise_errors": True}
    assert target.config["token"] == "filled-in"


def test_env_settings_reach_the_config_only_through_env_var_config(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """target.py resolves TARGET_CARECYCLE_* itself and makes `_env_var_config` return {}:
    with parse_env_config=True, the SDK then merges nothing from the environment."""
    monkeypatch.setenv("TARGET_CONTRACT_TOKEN", "from-env")
    assert MinimalTarget(config={}, parse_env_config=True).config.get("token") == "from-env"

    class ResolvesItself(MinimalTarget):
        @classproperty
        def _env_var_config(cls) -> dict[str, Any]:
            return {}

    assert ResolvesItself(config={}, parse_env_config=True).config.get("token") is None
    assert ResolvesItself(config={"token": "t"}, parse_env_config=True).config["token"] == "t"


def test_config_validation_error_carries_its_messages() -> None:
    error = ConfigValidationError("Invalid config", errors=["token: not a string"])
    assert error.errors == ["token: not a string"]


def test_about_uses_append_builtin_config_and_a_popped_setting_disappears() -> None:
    """target.py drops the SDK's `load_method` in `append_builtin_config`; --about obeys."""
    schema: dict[str, Any] = {"properties": {}}
    MinimalTarget.append_builtin_config(schema)
    assert {"load_method", "batch_size_rows", "add_record_metadata"} <= set(schema["properties"])
    assert {"stream_maps", "flattening_enabled", "validate_records"} <= set(schema["properties"])

    class NoLoadMethod(MinimalTarget):
        config_jsonschema = th.PropertiesList(th.Property("token", th.StringType)).to_dict()

        @classmethod
        def append_builtin_config(cls, config_jsonschema: dict[str, Any]) -> None:
            super().append_builtin_config(config_jsonschema)
            config_jsonschema["properties"].pop("load_method", None)

    about = NoLoadMethod._get_about_info()
    assert "load_method" not in about.settings["properties"]
    assert "batch_size_rows" in about.settings["properties"]


def test_default_capabilities_include_structured_logging_but_not_batch() -> None:
    """meltano.yml and the Hub file list `structured-logging` because the SDK provides it."""
    assert PluginCapabilities.STRUCTURED_LOGGING in MinimalTarget.capabilities
    assert PluginCapabilities.BATCH not in MinimalTarget.capabilities


def test_invoke_takes_the_keywords_target_py_overrides_with() -> None:
    parameters = inspect.signature(Target.invoke).parameters
    assert {"about", "about_format", "config", "file_input"} <= set(parameters)


# Signals


def test_stop_signals_go_to_handle_termination() -> None:
    """target.py's `_handle_termination` override is what SIGINT and SIGTERM call."""
    target = MinimalTarget(config={})
    for signum in (signal.SIGINT, signal.SIGTERM):
        assert signal.getsignal(signum) == target._handle_termination
    parameters = list(inspect.signature(target._handle_termination).parameters)
    assert parameters == ["signum", "frame"]


# Reading


def test_msgspec_reader_gives_plain_dicts_and_decimals() -> None:
    """The lean record path checks `type(record) is dict`; numbers are Decimal, ints int."""
    message = MsgSpecReader().deserialize_json(record_message({"id": 1, "score": 2.5}))
    assert type(message) is dict
    assert type(message["record"]) is dict
    assert message["record"] == {"id": 1, "score": Decimal("2.5")}
    assert type(message["record"]["id"]) is int


def test_msgspec_reader_rejects_a_bad_line_with_invalid_input_line() -> None:
    with pytest.raises(InvalidInputLine):
        MsgSpecReader().deserialize_json('{"type": "RECORD", ')


def test_target_reads_with_its_message_reader_class() -> None:
    target = MsgSpecTarget(config={})
    assert isinstance(target.message_reader, MsgSpecReader)
    run(target, [schema_message(), record_message({"id": 1, "score": 0.1})])
    records = [value for name, value in RecordingSink.events if name == "process_record"]
    assert records == [{"id": 1, "score": Decimal("0.1")}]


# Schemas and sinks


def test_schema_message_registers_a_plain_stream_as_one_same_record_transform() -> None:
    """The lean path is taken only for this shape; target.py tests exactly these fields."""
    target = MinimalTarget(config={})
    target._process_schema_message(json.loads(schema_message()))
    maps = target.mapper.stream_maps[STREAM]
    assert len(maps) == 1
    assert type(maps[0]) is SameRecordTransform
    assert maps[0].stream_alias == STREAM
    assert not maps[0].flattening_enabled
    assert isinstance(target._sinks_active[STREAM], RecordingSink)
    assert target._sinks_to_clear == []


def test_flattening_and_stream_maps_change_the_registered_transform() -> None:
    flat = MinimalTarget(config={"flattening_enabled": True, "flattening_max_depth": 1})
    flat._process_schema_message(json.loads(schema_message()))
    (flat_map,) = flat.mapper.stream_maps[STREAM]
    assert flat_map.flattening_options is not None
    assert flat_map.flattening_enabled

    mapped = MinimalTarget(config={"stream_maps": {STREAM: {"name": "name.upper()"}}})
    mapped._process_schema_message(json.loads(schema_message()))
    assert type(mapped.mapper.stream_maps[STREAM][0]) is not SameRecordTransform


def test_same_schema_again_keeps_the_sink() -> None:
    target = MinimalTarget(config={})
    target._process_schema_message(json.loads(schema_message()))
    first = target._sinks_active[STREAM]
    target._process_schema_message(json.loads(schema_message()))
    assert target._sinks_active[STREAM] is first
    assert target._sinks_to_clear == []


def test_changed_schema_retires_the_sink_which_drains_first_later() -> None:
    """A new SCHEMA for a known stream moves the old sink to `_sinks_to_clear`; the next
    drain empties it before the new one, so an older version of a lead lands first."""
    target = MinimalTarget(config={})
    changed = {**SCHEMA, "properties": {**SCHEMA["properties"], "extra": {"type": "string"}}}
    run(
        target,
        [
            schema_message(),
            record_message({"id": 1}),
            schema_message(changed),
            record_message({"id": 2}),
        ],
    )
    batches = [value for name, value in RecordingSink.events if name == "process_batch"]
    assert batches == [[1], [2]]


def test_retired_sink_waits_in_sinks_to_clear_until_drain_all() -> None:
    target = MinimalTarget(config={})
    target._process_schema_message(json.loads(schema_message()))
    old = target._sinks_active[STREAM]
    target._process_schema_message(json.loads(schema_message(keys=["name"])))
    assert target._sinks_to_clear == [old]
    assert target._sinks_active[STREAM] is not old
    target.drain_all()
    assert target._sinks_to_clear == []


# The record path


def test_record_path_calls_the_hooks_in_this_order() -> None:
    target = MinimalTarget(config={})
    run(target, [schema_message(), record_message({"id": 1, "name": "a"})])
    assert names(RecordingSink.events) == [
        "validate_and_parse",
        "parse_timestamps",
        "singer_validate",
        "process_record",
        "process_batch",
    ]


def test_record_count_metric_advances_per_record_read_not_in_tally() -> None:
    """target.py's lean path calls `tally_record_read()` itself, as the SDK's record path does;
    the SDK's untagged count is silenced (next tests). singer-sdk 0.55 moves the increment
    into `tally_record_written` (at drain): the silent counter must still be the one used."""

    class Probe(RecordingSink):
        def process_record(self, record: dict[str, Any], context: dict[str, Any]) -> None:
            super().process_record(record, context)
            self._log("count_in_process_record", self.record_counter_metric.value)

    class ProbeTarget(MinimalTarget):
        default_sink_class = Probe

    target = ProbeTarget(config={})
    run(target, [schema_message()])
    sink = target._sinks_active[STREAM]
    sink.tally_record_read()
    sink.tally_record_written()
    assert sink.record_counter_metric.value == 0  # neither tally touches the metric
    target._process_record_message(json.loads(record_message({"id": 1})))
    assert sink.record_counter_metric.value == 1  # the SDK's record path does, once
    assert ("count_in_process_record", 0) in RecordingSink.events  # after process_record


def test_the_sdk_counts_records_only_through_get_sink_record_counter() -> None:
    """sinks.py returns a silent counter from `get_sink_record_counter`: the SDK's record path
    increments that counter once per record and `clean_up` (end of input) emits it with
    `exit()`. No other `record_count` comes from the SDK, so the target's outcome-tagged
    counts are the only ones (summing record_count by stream gives `received`)."""
    calls: list[tuple[str, int]] = []

    class Recording(metrics.Counter):
        def increment(self, value: int = 1) -> None:
            calls.append(("increment", value))

        def exit(self) -> None:
            calls.append(("exit", 0))

    class CountingSink(RecordingSink):
        def get_sink_record_counter(self) -> metrics.Counter:
            return Recording(metrics.Metric.RECORD_COUNT, {"stream": self.stream_name})

    class CountingTarget(MinimalTarget):
        default_sink_class = CountingSink

    seen: list[logging.LogRecord] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    handler = Collect()
    metrics_logger = metrics.get_metrics_logger()
    metrics_logger.addHandler(handler)
    try:
        run(
            CountingTarget(config={}),
            [schema_message()] + [record_message({"id": i}) for i in (1, 2)],
        )
    finally:
        metrics_logger.removeHandler(handler)
    assert calls == [("increment", 1), ("increment", 1), ("exit", 0)]
    assert not [r for r in seen if "record_count" in r.getMessage()]


def test_a_stream_map_expression_is_evaluated_in_the_mappers_eval_frame() -> None:
    """fatal.py names a failing expression from the frame of `singer_sdk.mapper`'s `_eval`
    (its `expr` and `property_name` locals: config text, never a record value; the module's
    simpleeval subclass has an `_eval` too, with neither local); an expression
    that errs on a value raises that value's own error, a name it cannot resolve raises
    MapExpressionError quoting the expression. `__filter__` is evaluated with no property."""
    from singer_sdk.exceptions import MapExpressionError

    def failing(maps: dict[str, Any], record: dict[str, Any]) -> BaseException:
        target = MinimalTarget(config={"stream_maps": {STREAM: maps}})
        with pytest.raises(Exception) as caught:
            run(target, [schema_message(), record_message(record)])
        return caught.value

    def eval_frames(error: BaseException) -> list[tuple[Any, Any]]:
        found, tb = [], error.__traceback__
        while tb is not None:
            frame = tb.tb_frame
            if (
                frame.f_code.co_name == "_eval"
                and frame.f_globals["__name__"] == "singer_sdk.mapper"
                and "property_name" in frame.f_locals  # the mapper's evaluator has an `_eval`
            ):
                found.append((frame.f_locals["expr"], frame.f_locals["property_name"]))
            tb = tb.tb_next
        return found

    on_value = failing({"name": "name + 1"}, {"id": 1, "name": "text"})
    assert isinstance(on_value, TypeError)
    assert eval_frames(on_value) == [("name + 1", "name")]

    unknown = failing({"__filter__": "no_such_name > 1"}, {"id": 1})
    assert isinstance(unknown, MapExpressionError)
    assert "no_such_name > 1" in str(unknown)
    assert eval_frames(unknown) == [("no_such_name > 1", None)]


def test_get_singer_command_takes_extra_options_that_reach_invoke() -> None:
    """target.py adds `--check` to the SDK's command; click hands it to `invoke` by name."""

    class WithCheck(MinimalTarget):
        @classmethod
        def get_singer_command(cls) -> click.Command:
            command = super().get_singer_command()
            command.params.append(click.Option(["--check"], is_flag=True, default=False))
            return command

    command = WithCheck.get_singer_command()
    assert command.callback == WithCheck.invoke
    context = command.make_context("target-contract", ["--check"])
    assert context.params["check"] is True
    assert {"about", "about_format", "config", "file_input"} <= set(context.params)


def test_parse_timestamps_hook_is_where_date_strings_become_dates() -> None:
    """sinks.py no-ops `_parse_timestamps_in_record`: dates must then stay strings."""
    run(
        MinimalTarget(config={}),
        [schema_message(), record_message({"id": 1, "born": "1980-02-29"})],
    )
    RecordingSink.keep_timestamps_as_strings = True
    run(
        MinimalTarget(config={}),
        [schema_message(), record_message({"id": 2, "born": "1980-02-29"})],
    )
    records = [value for name, value in RecordingSink.events if name == "process_record"]
    assert type(records[0]["born"]).__name__ == "date"
    assert records[1]["born"] == "1980-02-29"


def test_singer_validate_message_is_the_key_property_check() -> None:
    """sinks.py no-ops `_singer_validate_message` so a record without its key still counts."""
    with pytest.raises(MissingKeyPropertiesError):
        run(MinimalTarget(config={}), [schema_message(), record_message({"name": "no id"})])
    RecordingSink.events.clear()
    RecordingSink.skip_key_property_check = True
    run(MinimalTarget(config={}), [schema_message(), record_message({"name": "no id"})])
    assert ("process_record", {"name": "no id"}) in RecordingSink.events


SDC_COLUMNS = (
    "_sdc_extracted_at",
    "_sdc_received_at",
    "_sdc_batched_at",
    "_sdc_deleted_at",
    "_sdc_sequence",
    "_sdc_table_version",
    "_sdc_sync_started_at",
)


def test_record_metadata_is_added_only_when_configured() -> None:
    """The lean path is skipped when `include_sdc_metadata_properties` is true."""
    plain = MinimalTarget(config={})
    meta = MinimalTarget(config={"add_record_metadata": True})
    for target in (plain, meta):
        run(target, [schema_message(), record_message({"id": 1})])
    records = [value for name, value in RecordingSink.events if name == "process_record"]
    assert "_sdc_received_at" not in records[0]
    assert "_sdc_received_at" in records[1]
    assert not plain._sinks_active[STREAM].include_sdc_metadata_properties
    assert meta._sinks_active[STREAM].include_sdc_metadata_properties


def test_sdk_path_removes_a_taps_sdc_columns_with_remove_sdc_metadata() -> None:
    """`CareCycleSink.prepare_plain_record` mirrors this step on the lean path: a tap's own
    `_sdc_*` columns are removed when metadata is off, by `_remove_sdc_metadata_from_record`."""
    target = MinimalTarget(config={})
    tapped = {"id": 1, "_sdc_extracted_at": "2026-01-01T00:00:00Z", "_sdc_sequence": 7}
    run(target, [schema_message(), record_message(tapped)])
    records = [value for name, value in RecordingSink.events if name == "process_record"]
    assert records == [{"id": 1}]
    sink = target._sinks_active[STREAM]
    record = {"id": 1, **{name: 1 for name in SDC_COLUMNS}, "_sdc_other": 1}
    sink._remove_sdc_metadata_from_record(record)
    assert record == {"id": 1, "_sdc_other": 1}


def test_validator_is_none_when_get_validator_returns_none() -> None:
    class NoValidator(RecordingSink):
        def get_validator(self) -> None:
            return None

    class NoValidatorTarget(MinimalTarget):
        default_sink_class = NoValidator

    target = NoValidatorTarget(config={})
    target._process_schema_message(json.loads(schema_message()))
    assert target._sinks_active[STREAM]._validator is None


# Draining and state


def test_a_full_sink_is_drained_by_current_size_against_max_size() -> None:
    """sinks.py overrides both properties: `is_full` and `drain_one` must read them."""

    class TwoPerBatch(RecordingSink):
        @property
        def max_size(self) -> int:
            return 2

    class TwoPerBatchTarget(MinimalTarget):
        default_sink_class = TwoPerBatch

    run(
        TwoPerBatchTarget(config={}),
        [schema_message()] + [record_message({"id": i}) for i in range(5)],
    )
    batches = [value for name, value in RecordingSink.events if name == "process_batch"]
    assert batches == [[0, 1], [2, 3], [4]]


def test_drain_one_skips_a_sink_whose_current_size_is_zero() -> None:
    """sinks.py counts only queued leads in `current_size` (rejected records take no room)."""

    class AlwaysEmpty(RecordingSink):
        @property
        def current_size(self) -> int:
            return 0

    class EmptyTarget(MinimalTarget):
        default_sink_class = AlwaysEmpty

    run(EmptyTarget(config={}), [schema_message(), record_message({"id": 1})])
    assert "process_batch" not in names(RecordingSink.events)


@pytest.mark.skipif(sys.version_info < (3, 11), reason="typing.final marks only from 3.11")
def test_drain_methods_stay_final() -> None:
    """target.py hooks around draining (process_endofpipe, state) because these are final."""
    assert getattr(Target.drain_all, "__final__", False)
    assert getattr(Target.drain_one, "__final__", False)


def test_state_is_written_after_every_sink_drained(capsys: pytest.CaptureFixture[str]) -> None:
    """`_write_state_message` receives `_latest_state` only after process_batch of all sinks."""
    written: list[dict[str, Any]] = []

    class StateRecordingTarget(MinimalTarget):
        def _write_state_message(self, state: dict[str, Any]) -> None:
            RecordingSink.events.append(("write_state", state))
            written.append(state)
            super()._write_state_message(state)

    target = StateRecordingTarget(config={})
    run(
        target,
        [schema_message(), record_message({"id": 1}), state_message({"bookmarks": {STREAM: 1}})],
    )
    assert target._latest_state == {"bookmarks": {STREAM: 1}}
    assert names(RecordingSink.events)[-2:] == ["process_batch", "write_state"]
    assert written == [{"bookmarks": {STREAM: 1}}]
    assert json.loads(capsys.readouterr().out) == {"bookmarks": {STREAM: 1}}


def test_repeated_identical_state_is_not_a_new_state() -> None:
    target = MinimalTarget(config={})
    target._process_state_message({"type": "STATE", "value": {"a": {"b": 1}}})
    first = target._latest_state
    target._process_state_message({"type": "STATE", "value": {"a": {"b": 1}}})
    assert target._latest_state is first


def test_end_of_pipe_drains_everything() -> None:
    target = MinimalTarget(config={})
    target.process_lines(io.StringIO(schema_message() + "\n" + record_message({"id": 7}) + "\n"))
    assert "process_batch" not in names(RecordingSink.events)
    target.process_endofpipe()
    assert ("process_batch", [7]) in RecordingSink.events


def test_max_record_age_check_exists_and_drains_old_records() -> None:
    target = MinimalTarget(config={})
    run(target, [schema_message()])
    target._process_record_message(json.loads(record_message({"id": 3})))
    target._last_full_drain_at -= (target._MAX_RECORD_AGE_IN_MINUTES + 1) * 60
    target._handle_max_record_age()
    assert ("process_batch", [3]) in RecordingSink.events


def test_max_parallelism_can_be_set_to_one() -> None:
    target = MinimalTarget(config={})
    target.max_parallelism = 1
    assert target.max_parallelism == 1


# BATCH messages


def test_batch_message_reaches_process_batch_as_context_records(tmp_path: Path) -> None:
    """A BATCH message's JSONL files arrive in one `process_batch({"records": [...]})` call
    per file, bypassing process_record (so the sink must map them there)."""
    batch_file = tmp_path / "people-0001.json.gz"
    with gzip.open(batch_file, "wt", encoding="utf-8") as out:
        for i in (10, 11):
            out.write(json.dumps({"id": i, "name": f"n{i}"}) + "\n")
    batch = {
        "type": "BATCH",
        "stream": STREAM,
        "encoding": {"format": "jsonl", "compression": "gzip"},
        "manifest": [batch_file.as_uri()],
    }
    target = MinimalTarget(config={})
    run(target, [schema_message(), json.dumps(batch)])
    assert names(RecordingSink.events) == ["process_batch"]
    assert RecordingSink.events == [("process_batch", [10, 11])]


# The shims themselves (target_carecycle/sdk_shims.py)


def _shim_overrides() -> list[tuple[type, str]]:
    from target_carecycle.sdk_shims import ShimmedBatchSink, ShimmedTarget

    return [
        (shim, name)
        for shim in (ShimmedTarget, ShimmedBatchSink)
        for name in vars(shim)
        if name.startswith("_") and not name.startswith("__") and name != "_abc_impl"
    ]


def test_every_shim_override_replaces_an_sdk_method_of_the_same_signature() -> None:
    """A private method the SDK renames or re-signs makes its shim dead code: fail here."""
    overrides = _shim_overrides()
    assert len(overrides) >= 10
    for shim, name in overrides:
        sdk_base = shim.__mro__[1]
        theirs = inspect.getattr_static(sdk_base, name, None)
        assert theirs is not None, f"singer_sdk no longer has {sdk_base.__name__}.{name}"
        ours = inspect.getattr_static(shim, name)
        if callable(ours) and callable(theirs):
            assert inspect.signature(ours) == inspect.signature(theirs) or list(
                inspect.signature(ours).parameters
            ) == list(inspect.signature(theirs).parameters), name


def test_every_shim_is_marked_override_and_says_why_and_when_to_remove_it() -> None:
    """GUIDE: each private override carries @override and a comment (why, missing hook,
    when to remove it)."""
    import ast

    from target_carecycle import sdk_shims

    source = Path(sdk_shims.__file__).read_text()
    lines = source.splitlines()
    tree = ast.parse(source)
    methods = [
        node
        for cls in tree.body
        if isinstance(cls, ast.ClassDef)
        for node in cls.body
        if isinstance(node, ast.FunctionDef)
        and node.name.startswith("_")
        and not node.name.startswith("__")
    ]
    assert {m.name for m in methods} == {name for _, name in _shim_overrides()}
    for method in methods:
        decorators = [ast.unparse(d) for d in method.decorator_list]
        assert "override" in decorators, f"{method.name} lacks @override"
        first = min(d.lineno for d in method.decorator_list)
        comment = []
        for line in reversed(lines[: first - 1]):
            if not line.strip().startswith("#"):
                break
            comment.append(line)
        text = " ".join(comment).lower()
        assert "private" in text and "remove" in text and "hook" in text, method.name


def test_shimmed_target_with_default_hooks_behaves_as_the_sdk_target(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Each `on_*` hook defaults to the SDK's own step: the same sink calls, the same STATE."""
    from target_carecycle.sdk_shims import ShimmedTarget

    class ShimmedMinimal(ShimmedTarget):
        name = "target-contract"
        config_jsonschema = MinimalTarget.config_jsonschema
        default_sink_class = RecordingSink

    lines = [
        schema_message(),
        record_message({"id": 1, "born": "1980-02-29"}),
        state_message({"n": 1}),
    ]
    run(MinimalTarget(config={}), lines)
    sdk_events, sdk_out = list(RecordingSink.events), capsys.readouterr().out
    RecordingSink.events.clear()
    run(ShimmedMinimal(config={}), lines)
    assert RecordingSink.events == sdk_events
    assert capsys.readouterr().out == sdk_out


def test_shimmed_target_routes_each_private_step_to_its_hook() -> None:
    from target_carecycle.sdk_shims import ShimmedTarget

    called: list[str] = []

    class Hooked(ShimmedTarget):
        name = "target-contract"
        config_jsonschema = MinimalTarget.config_jsonschema
        default_sink_class = RecordingSink

        def check_settings(self, config: dict[str, Any], *, raise_errors: bool) -> list[str]:
            called.append("check_settings")
            config["token"] = "filled"  # the mutable config the SDK is building
            return []

        def on_schema_message(self, message: dict[str, Any]) -> None:
            called.append("schema")
            self.register_stream(message)

        def on_record_message(self, message: dict[str, Any]) -> None:
            called.append("record")
            self.sdk_record_path(message)

        def on_batch_message(self, message: dict[str, Any]) -> None:
            called.append("batch")

        def on_activate_version_message(self, message: dict[str, Any]) -> None:
            called.append("activate_version")

        def on_state_ready(self, state: dict[str, Any]) -> None:
            called.append("state")

        def on_stop_signal(self, signum: int) -> None:
            called.append(f"signal {signum}")

    target = Hooked(config={})
    assert target.config["token"] == "filled"
    batch = {"type": "BATCH", "stream": STREAM, "encoding": {"format": "jsonl"}, "manifest": []}
    activate = {"type": "ACTIVATE_VERSION", "stream": STREAM, "version": 1}
    run(
        target,
        [
            schema_message(),
            record_message({"id": 1}),
            json.dumps(batch),
            json.dumps(activate),
            state_message({"n": 1}),
        ],
    )
    signal.getsignal(signal.SIGTERM)(signal.SIGTERM, None)  # type: ignore[operator,misc]
    assert called == [
        "check_settings",
        "schema",
        "record",
        "batch",
        "activate_version",
        "state",
        f"signal {signal.SIGTERM.value}",
    ]
    assert target.latest_state == {"n": 1}
    sink = target.active_sink(STREAM)
    assert isinstance(sink, RecordingSink)
    assert target.active_sink("no-such-stream") is None
    assert target.every_sink() == [sink]


def test_shimmed_target_reads_retired_sinks_and_checks_record_age() -> None:
    from target_carecycle.sdk_shims import ShimmedTarget

    class ShimmedMinimal(ShimmedTarget):
        name = "target-contract"
        config_jsonschema = MinimalTarget.config_jsonschema
        default_sink_class = RecordingSink

    target = ShimmedMinimal(config={})
    target.on_schema_message(json.loads(schema_message()))
    old = target.active_sink(STREAM)
    target.on_schema_message(json.loads(schema_message(keys=["name"])))
    assert target.every_sink() == [target.active_sink(STREAM), old]
    target.on_record_message(json.loads(record_message({"id": 3, "name": "x"})))
    target.check_record_age()  # not old yet: nothing drained
    assert "process_batch" not in names(RecordingSink.events)
    target._last_full_drain_at -= (target._MAX_RECORD_AGE_IN_MINUTES + 1) * 60
    target.check_record_age()
    assert ("process_batch", [3]) in RecordingSink.events


def test_shimmed_sink_keeps_dates_and_keyless_records_and_reads_its_validator() -> None:
    from target_carecycle.sdk_shims import ShimmedBatchSink

    class Sink(ShimmedBatchSink):
        def process_record(self, record: dict[str, Any], context: dict[str, Any]) -> None:
            RecordingSink.events.append(("process_record", copy.deepcopy(record)))

        def process_batch(self, context: dict[str, Any]) -> None:
            pass

    class SinkTarget(Target):
        name = "target-contract"
        config_jsonschema = MinimalTarget.config_jsonschema
        default_sink_class = Sink

    target = SinkTarget(config={})
    run(target, [schema_message(), record_message({"name": "no id", "born": "1980-02-29"})])
    assert ("process_record", {"name": "no id", "born": "1980-02-29"}) in RecordingSink.events
    sink = target._sinks_active[STREAM]
    assert isinstance(sink, Sink)
    assert sink.record_validator is sink._validator
    record = {"id": 1, **{name: 1 for name in SDC_COLUMNS}}
    sink.remove_sdc_metadata(record)
    assert record == {"id": 1}


def test_load_dotenv_is_the_sdks_env_parser_with_no_properties(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`sdk_shims.load_dotenv` calls `parse_environment_config` with no properties: it loads
    the `.env` file the SDK would find into the environment and returns no setting."""
    from singer_sdk.configuration._dict_config import parse_environment_config

    parameters = list(inspect.signature(parse_environment_config).parameters)
    assert parameters[:3] == ["config_schema", "prefix", "dotenv_path"]
    dotenv = tmp_path / ".env"
    dotenv.write_text("TARGET_CONTRACT_FROM_DOTENV=yes\n")
    monkeypatch.delenv("TARGET_CONTRACT_FROM_DOTENV", raising=False)
    found = parse_environment_config({"properties": {}}, "TARGET_CONTRACT_", dotenv_path=dotenv)
    assert found == {}
    assert os.environ.get("TARGET_CONTRACT_FROM_DOTENV") == "yes"
    monkeypatch.delenv("TARGET_CONTRACT_FROM_DOTENV")


def test_failing_map_expression_names_the_expression_and_property() -> None:
    from target_carecycle.sdk_shims import failing_map_expression

    for maps, record, expected in (
        ({"name": "name + 1"}, {"id": 1, "name": "text"}, ("name", "name + 1")),
        ({"__filter__": "no_such_name > 1"}, {"id": 1}, ("__filter__", "no_such_name > 1")),
    ):
        target = MinimalTarget(config={"stream_maps": {STREAM: maps}})
        with pytest.raises(Exception) as caught:
            run(target, [schema_message(), record_message(record)])
        assert failing_map_expression(caught.value) == expected
    assert failing_map_expression(ValueError("elsewhere")) is None


def test_batch_config_and_storage_target_open_a_manifest_url(tmp_path: Path) -> None:
    from target_carecycle.sdk_shims import BatchConfig, StorageTarget

    path = tmp_path / "part.jsonl"
    path.write_text("{}\n")
    head, tail = StorageTarget.split_url(path.as_uri())
    with StorageTarget.from_url(head).open(tail, mode="rb") as handle:
        assert handle.read() == b"{}\n"
    config = BatchConfig.from_dict(
        {"encoding": {"format": "jsonl"}, "storage": {"root": tmp_path.as_uri()}}
    )
    assert isinstance(config.storage, StorageTarget)
