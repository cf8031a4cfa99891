"""The only module that touches a private singer-sdk name.

singer-sdk has no public hook for some things this target must do (parse env settings
strictly, keep a STATE back until its records are delivered, stop gracefully on a signal,
read a batch file record by record, ...). Every private method overridden, private attribute
read and private module imported is here, each with why, which public hook is missing and
when to remove it. target.py and sinks.py use the public-named hooks and helpers below.

An SDK upgrade is this file and tests/test_sdk_contract.py, which pins each shim against a
minimal Target and BatchSink (docs/sdk-upgrade.md). tests/test_architecture.py fails if any
other module of the package touches a private singer_sdk name.
"""

from __future__ import annotations

import sys
from types import FrameType, TracebackType
from typing import Any

# Private module: see `load_dotenv`.
from singer_sdk.configuration._dict_config import parse_environment_config

# Private module: `BatchConfig` and `StorageTarget` open a BATCH manifest's files (local or on
# object storage) exactly as the SDK's `Sink.process_batch_files` does; no public module
# exports them. Remove when the SDK exports them (or reads batch files record by record).
from singer_sdk.helpers._batch import BatchConfig, StorageTarget

# Private module: the SDK's own `classproperty`, needed to replace the private classproperty
# `_env_var_config` (below) with one of the same kind. Remove with that shim.
from singer_sdk.helpers._classproperty import classproperty
from singer_sdk.sinks import BatchSink, Sink
from singer_sdk.target_base import Target

if sys.version_info >= (3, 12):
    from typing import override
else:  # singer-sdk brings typing_extensions on Python < 3.13
    from typing_extensions import override

__all__ = [
    "BatchConfig",
    "ShimmedBatchSink",
    "ShimmedTarget",
    "StorageTarget",
    "failing_map_expression",
    "load_dotenv",
]

# The SDK evaluates each stream-map expression in this function of this module; its frame
# holds the expression (from the config) and the property it computes. Pinned in
# tests/test_sdk_contract.py.
SDK_MAPPER_MODULE = "singer_sdk.mapper"
SDK_EVAL_FUNCTION = "_eval"
FILTER_PROPERTY = "__filter__"


def load_dotenv(prefix: str) -> None:
    """Load a `.env` file into the environment the way the SDK does (reads no setting).

    Private function `singer_sdk.configuration._dict_config.parse_environment_config`: no
    public SDK function loads `.env` as `--config ENV` does. Remove together with the
    `_env_var_config` shim, once the SDK offers a public hook for env settings.
    """
    parse_environment_config({"properties": {}}, prefix)


def failing_map_expression(error: BaseException) -> tuple[str, str] | None:
    """(property, expression) of the stream-map expression that raised `error`, if one did.

    Reads the locals `expr` and `property_name` of the private `singer_sdk.mapper._eval`
    frame on the traceback (config text, never a record value): the SDK's MappingError does
    not say which expression failed, and no public attribute does. Remove when the SDK's
    error names the expression and property.
    """
    tb: TracebackType | None = error.__traceback__
    while tb is not None:
        frame = tb.tb_frame
        if _is_sdk_eval_frame(frame):
            expression = frame.f_locals.get("expr")
            prop = frame.f_locals.get("property_name")
            # The module's simpleeval subclass has an `_eval(node)` too: no `property_name`.
            if isinstance(expression, str) and "property_name" in frame.f_locals:
                return (prop if isinstance(prop, str) else FILTER_PROPERTY), expression
        tb = tb.tb_next
    return None


def _is_sdk_eval_frame(frame: FrameType) -> bool:
    return (
        frame.f_code.co_name == SDK_EVAL_FUNCTION
        and frame.f_globals.get("__name__") == SDK_MAPPER_MODULE
    )


class ShimmedTarget(Target):
    """The SDK's Target with its private steps turned into public-named hooks.

    Each `on_*` hook is called where the SDK's private method would run; its default here
    does what the SDK does, so a subclass overrides only the hooks it needs. The SDK's own
    step stays reachable (`register_stream`, `sdk_record_path`, `write_state`, ...).
    """

    # The SDK reads an env boolean it does not recognise as false (TARGET_CARECYCLE_DRY_RUN=
    # maybe would send), lets int() raise a traceback, and lets a variable silently beat the
    # config file. No public hook parses env settings, so this replaces the private
    # classproperty that PluginBase.__init__ merges into the config: the target resolves file
    # and environment itself (`setting_sources.resolve_settings`), so the SDK's merge gets
    # nothing. Remove once the SDK offers a hook for env parsing.
    @classproperty
    @override
    def _env_var_config(cls) -> dict[str, Any]:
        """Nothing: the target resolves its environment variables itself."""
        return {}

    # Private SDK method, overridden since the start of this project: the SDK's own check
    # echoes values in its messages and knows no rule beyond the schema. No public hook exists;
    # remove if the SDK offers a config-check hook with its own messages.
    @override
    def _validate_config(self, *, raise_errors: bool = True) -> list[str]:
        """Run `check_settings` on the config the SDK is building (it may still fill it)."""
        return self.check_settings(self._config, raise_errors=raise_errors)

    def check_settings(self, config: dict[str, Any], *, raise_errors: bool) -> list[str]:
        """Hook: check `config` (mutable, during __init__); return or raise the errors."""
        del config
        return super()._validate_config(raise_errors=raise_errors)

    # Private SDK method: registering a stream has no public hook after it (0.55's
    # `create_sink` is called before registering, not after). Remove when the SDK offers a
    # public "stream registered" hook.
    @override
    def _process_schema_message(self, message_dict: dict[str, Any]) -> None:
        self.on_schema_message(message_dict)

    def on_schema_message(self, message: dict[str, Any]) -> None:
        """Hook: a SCHEMA message; the default registers the stream as the SDK does."""
        self.register_stream(message)

    def register_stream(self, message: dict[str, Any]) -> None:
        """The SDK's SCHEMA step: stream maps, and a sink (retiring the stream's old one)."""
        super()._process_schema_message(message)

    # Private SDK method: the SDK's per-record path costs twice the rest of the target's work
    # per record (docs/performance.md) and has no public hook to skip steps that do nothing
    # for a plain stream. Remove if the SDK's own path becomes as cheap.
    @override
    def _process_record_message(self, message_dict: dict[str, Any]) -> None:
        self.on_record_message(message_dict)

    def on_record_message(self, message: dict[str, Any]) -> None:
        """Hook: a RECORD message; the default takes the SDK's record path."""
        self.sdk_record_path(message)

    def sdk_record_path(self, message: dict[str, Any]) -> None:
        """The SDK's record path: stream maps, validation, metadata, then `process_record`."""
        super()._process_record_message(message)

    # Private SDK method: the SDK reads a whole batch file and hands its records to
    # `Sink.process_batch` at once, skipping every per-record step (accounting, stream maps,
    # validation, merging, the ordering across sinks). No public hook reads a batch file record
    # by record; remove when the SDK offers one.
    @override
    def _process_batch_message(self, message_dict: dict[str, Any]) -> None:
        self.on_batch_message(message_dict)

    def on_batch_message(self, message: dict[str, Any]) -> None:
        """Hook: a BATCH message; the default is the SDK's (whole files to process_batch)."""
        super()._process_batch_message(message)

    # Private SDK method: the SDK's handler raises KeyError for a stream with no SCHEMA yet and
    # asks each sink, which warns twice per message. No public hook decides what an
    # ACTIVATE_VERSION means to a target; remove when the SDK warns for unknown streams.
    @override
    def _process_activate_version_message(self, message_dict: dict[str, Any]) -> None:
        self.on_activate_version_message(message_dict)

    def on_activate_version_message(self, message: dict[str, Any]) -> None:
        """Hook: an ACTIVATE_VERSION message; the default is the SDK's."""
        super()._process_activate_version_message(message)

    # Private SDK method: the one place a STATE leaves the target. Singer's promise (no STATE
    # before every record ahead of it is delivered) needs a wait here, the failure policy is
    # judged here, and the counts ride along. No public hook wraps state emission; remove if
    # the SDK adds one.
    @override
    def _write_state_message(self, state: dict[str, Any]) -> None:
        self.on_state_ready(state)

    def on_state_ready(self, state: dict[str, Any]) -> None:
        """Hook: every sink drained and `state` is due; the default writes it."""
        self.write_state(state)

    def write_state(self, state: dict[str, Any]) -> None:
        """Write a STATE message to stdout (the SDK's writer)."""
        super()._write_state_message(state)

    # Private SDK method: the SDK's handler exits at once, dropping requests on the wire and
    # their outcomes. No public hook for stop signals exists; 0.55 changes this method (see
    # docs/sdk-upgrade.md). Remove if the SDK offers a graceful-stop hook.
    @override
    def _handle_termination(self, signum: int, frame: FrameType | None) -> None:
        del frame
        self.on_stop_signal(signum)

    def on_stop_signal(self, signum: int) -> None:
        """Hook: SIGINT or SIGTERM arrived (in the signal handler); the default exits."""
        super()._handle_termination(signum, None)

    # Private attributes read: the SDK offers no public lookup of a stream's current sink
    # (`get_sink` creates one), no public list of retired sinks waiting for their drain and no
    # public read of the last state received. Remove each when the SDK offers it.

    def active_sink(self, stream: str) -> Sink | None:
        """The sink registered for `stream` now, if any (never creates one)."""
        return self._sinks_active.get(stream)

    def every_sink(self) -> list[Sink]:
        """Every sink of the run: active ones and retired ones not yet drained."""
        return [*self._sinks_active.values(), *self._sinks_to_clear]

    @property
    def latest_state(self) -> dict[str, Any] | None:
        """The last STATE received from the tap (None before the first)."""
        return self._latest_state

    def check_record_age(self) -> None:
        """Drain every sink if the oldest record waits longer than the SDK allows.

        Private `_handle_max_record_age`: the SDK checks it only on its own record path.
        """
        self._handle_max_record_age()


class ShimmedBatchSink(BatchSink):
    """The SDK's BatchSink with its private per-record steps made explicit."""

    # Private SDK hook: the SDK turns date-time strings into datetimes per the tap's schema,
    # and fails or nulls values it cannot parse; the lead normaliser parses the fields it
    # sends and reports the rest by name. No public switch turns the parsing off; remove if
    # one comes.
    @override
    def _parse_timestamps_in_record(
        self, record: dict[str, Any], schema: dict[str, Any], treatment: Any
    ) -> None:
        """Leave date strings as they are: the lead normaliser parses the fields it sends."""

    # Private SDK hook: the SDK raises on a record missing its key properties, which would
    # stop the run; here such a record still gets an externalId (mapping.py) or is rejected
    # and counted. No public hook relaxes the check; remove if the SDK makes it optional.
    @override
    def _singer_validate_message(self, record: dict[str, Any]) -> None:
        """A record missing its key properties still gets an ID (see mapping), never a crash."""

    def remove_sdc_metadata(self, record: dict[str, Any]) -> None:
        """Remove the SDK's `_sdc_*` columns, as its record path does with metadata off.

        Private `_remove_sdc_metadata_from_record`: no public function does it. Remove
        with the lean record path (target.py).
        """
        self._remove_sdc_metadata_from_record(record)

    @property
    def record_validator(self) -> object | None:
        """The schema validator the SDK made from `get_validator()` (None: no checks).

        Private `_validator`: the SDK exposes no public read of it.
        """
        return self._validator
