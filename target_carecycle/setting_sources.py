"""Where each setting comes from: one resolution of config files and the environment.

Every `TARGET_CARECYCLE_<SETTING>` variable is read, with or without `--config ENV`, and
parsed strictly (`settings.read_env_settings`). Meltano writes each setting both into the
config file it generates and into these variables, so a setting given in both places must
say the same thing; when it does not, the run stops naming the setting and the variable,
never a value. The environment can turn a dry run on, never off. The API key and the API URL
never come from two different places unless the user asked for that with `--config ENV`.
The table of rules is docs/settings.md.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from target_carecycle.settings import (
    DEFAULT_API_URL,
    ENV_PREFIX,
    UnreadableEnvValue,
    env_variable,
    guarded_lookalike,
    harmless_lookalike,
    json_types,
    parse_boolean,
    parse_env_value,
    read_env_settings,
)

FILE = "config file"
ENVIRONMENT = "environment"
BOTH = "config file and environment"
DEFAULT = "default"


@dataclass
class ResolvedSettings:
    """The merged config, where each setting came from, and what stops or warns."""

    config: dict[str, Any]
    sources: dict[str, str]
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    combined: bool = False  # `--config ENV`: the user asked to combine file and environment


def resolve_settings(
    file_config: Mapping[str, Any] | None,
    schema: Mapping[str, Any],
    *,
    combine: bool = False,
    environ: Mapping[str, str] | None = None,
    prefix: str = ENV_PREFIX,
) -> ResolvedSettings:
    """Merge the config file(s) with every `TARGET_CARECYCLE_*` setting variable.

    `combine` is `--config ENV`: the user asked for the environment to complete the files,
    so the key and the URL may then come from different places. Values that do not parse
    stay in the config as `UnreadableEnvValue` for `check_config` to report.
    """
    dotenv = combine and environ is None  # as the SDK: a .env file only with --config ENV
    environ = os.environ if environ is None else environ
    properties: Mapping[str, Any] = schema.get("properties", {})
    config = {name: value for name, value in (file_config or {}).items() if value is not None}
    if config.get("api_key") == "":
        del config["api_key"]  # an empty key in a file is no key: the environment's may fill it
    sources = dict.fromkeys(config, FILE)
    result = ResolvedSettings(config, sources, combined=combine)
    from_env = read_env_settings(schema, prefix, environ, load_dotenv=dotenv)
    for name, value in from_env.items():
        if name not in config:
            config[name], sources[name] = value, ENVIRONMENT
            continue
        sources[name] = BOTH
        if isinstance(value, UnreadableEnvValue):
            config[name] = value  # reported by check_config, naming the variable
        elif name == "dry_run":
            if value is True:
                config[name] = True  # the environment can turn a dry run on, never off
        elif not same_setting(config[name], value, properties.get(name, {})):
            result.errors.append(
                f"{name}: the config file and {env_variable(name, prefix)} give different "
                "values: set it in one place, or the same value in both"
            )
    if not combine:
        _check_key_and_url_places(result, prefix)
    _check_unknown_variables(result, properties, environ, prefix)
    return result


def _check_key_and_url_places(result: ResolvedSettings, prefix: str) -> None:
    """A key and a URL from two different places is how leads reach the wrong account."""
    places = {result.sources.get("api_key"), result.sources.get("api_url")}
    if places != {FILE, ENVIRONMENT}:
        return
    key_place = result.sources["api_key"]
    key_from = env_variable("api_key", prefix) if key_place == ENVIRONMENT else "the config file"
    url_from = env_variable("api_url", prefix) if key_place == FILE else "the config file"
    result.errors.append(
        f"api_key and api_url: api_key comes from {key_from} but api_url from {url_from}; "
        "put both in one place, or pass --config ENV to combine the environment with the "
        "config file"
    )


def _check_unknown_variables(
    result: ResolvedSettings,
    properties: Mapping[str, Any],
    environ: Mapping[str, str],
    prefix: str,
) -> None:
    """A `TARGET_CARECYCLE_*` variable that is not a setting: an error if it could send.

    Meltano also sets `TARGET_CARECYCLE__<EXTRA>` (its plugin extras) and, for an object
    setting such as `streams`, one `TARGET_CARECYCLE_STREAMS_<PATH>` per nested value next
    to `TARGET_CARECYCLE_STREAMS`: neither is a setting, and neither is worth a word.
    """
    known = {env_variable(name, prefix): name for name in properties}
    objects = [
        env_variable(name, prefix) + "_"
        for name, prop in properties.items()
        if "object" in json_types(prop)
    ]
    for variable in sorted(environ):
        if variable in known or not variable.upper().startswith(prefix):
            continue
        rest = variable[len(prefix) :]
        if rest.startswith("_"):
            continue  # a Meltano plugin extra (TARGET_CARECYCLE__DIALECT, ...)
        parent = next((p for p in objects if variable.startswith(p)), None)
        if parent is not None and parent[:-1] in environ:
            continue  # Meltano's copy of a nested value of an object setting
        guarded = guarded_lookalike(rest)
        if guarded is not None and not harmless_lookalike(guarded, environ[variable]):
            result.errors.append(
                f"{variable}: not a setting, and it looks like {guarded} "
                f"({env_variable(guarded, prefix)}); nothing is sent while a variable that "
                "could change where or whether leads go is misspelt: rename or unset it"
            )
        elif parent is not None:
            result.warnings.append(
                f"{variable} is ignored: nested settings are read from {parent[:-1]} (JSON)"
            )
        else:
            hint = f" (did you mean {env_variable(guarded, prefix)}?)" if guarded else ""
            result.warnings.append(f"{variable} is not a setting and is ignored{hint}")


# Comparing a setting given in two places


def same_setting(file_value: Any, env_value: Any, prop: Mapping[str, Any]) -> bool:
    """True when the file's value and the environment's say the same thing.

    Compared as parsed values: `30`, `30.0` and `"30"` agree; `"yes"` and `true` agree for a
    boolean. For an object (`streams`), every value the environment gives must be in the
    file at the same path: Meltano writes the object into the file merged with
    `meltano.yml`'s nested settings, and into the variable flattened to dotted keys.
    """
    types = json_types(prop)
    if "boolean" in types:
        return parse_boolean(file_value) is not None and (
            parse_boolean(file_value) == parse_boolean(env_value)
        )
    if isinstance(file_value, str) and types:
        file_value = parse_env_value(file_value, "", types)
        if isinstance(file_value, UnreadableEnvValue):
            return False
    if isinstance(file_value, dict) and isinstance(env_value, dict):
        in_file = _flattened(file_value)
        return all(
            path in in_file and in_file[path] == value
            for path, value in _flattened(env_value).items()
        )
    return bool(_comparable(file_value) == _comparable(env_value))


def _flattened(value: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} as {"a.b": 1}: the form Meltano gives an object setting's variable."""
    flat: dict[str, Any] = {}
    for key, item in value.items():
        path = f"{prefix}{key}"
        if isinstance(item, dict) and item:
            flat.update(_flattened(item, path + "."))
        else:
            flat[path] = _comparable(item)
    return flat


def _comparable(value: Any) -> Any:
    """A value with numbers as Decimals and text trimmed, so equal meanings compare equal."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int | float | Decimal):
        try:
            return Decimal(repr(value) if isinstance(value, float) else value).normalize()
        except (InvalidOperation, ValueError):
            return repr(value)
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, dict):
        return {key: _comparable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_comparable(item) for item in value]
    return value


# What the start of a run says about its settings


def provenance_line(sources: Mapping[str, str], prefix: str = ENV_PREFIX) -> str:
    """One line naming which settings came from where (names only, never a value)."""
    by_place: dict[str, list[str]] = {}
    for name, place in sorted(sources.items()):
        by_place.setdefault(place, []).append(name)
    parts = [
        f"from the {place}: {', '.join(by_place[place])}"
        if place != BOTH
        else f"from both the config file and the environment (same values): "
        f"{', '.join(by_place[place])}"
        for place in (FILE, ENVIRONMENT, BOTH)
        if by_place.get(place)
    ]
    if "api_url" not in sources:
        parts.append(f"api_url: not set, the default ({DEFAULT_API_URL})")
    line = "Settings " + ("; ".join(parts) if parts else "from nowhere: every setting is a default")
    others_from_file = any(
        place in (FILE, BOTH) for name, place in sources.items() if name != "api_key"
    )
    if sources.get("api_key") == ENVIRONMENT and others_from_file:
        line += (
            f". The API key comes from {env_variable('api_key', prefix)}, while other settings "
            "come from the config file"
        )
    return line


__all__ = [
    "BOTH",
    "DEFAULT",
    "ENVIRONMENT",
    "FILE",
    "ResolvedSettings",
    "provenance_line",
    "resolve_settings",
    "same_setting",
]
