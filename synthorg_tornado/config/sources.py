"""Where configuration values come from: the YAML file and `SYNTHORG_*` environment variables.

Each function collects problems instead of raising, so `load_config` reports all of them at once;
`coerce` checks one raw value against its schema field.
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

ENV_PREFIX = "SYNTHORG_"
CONFIG_ENV = "SYNTHORG_CONFIG"
SETTING_ENV_PREFIX = "SYNTHORG_SETTING_"


def read_yaml(path: Path | None, problems: list[str]) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        problems.append(f"config file {path} does not exist")
        return {}
    except OSError as exc:
        problems.append(f"config file {path} cannot be read: {exc.strerror}")
        return {}
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None)
        problems.append(f"config file {path} is not valid YAML{where}" + (f": {problem}" if problem else ""))
        return {}
    if data is None:
        return {}
    if not isinstance(data, dict):
        problems.append(f"config file {path} must be a mapping of sections (server, database, ...)")
        return {}
    return data


def file_values(raw: dict[str, Any], sections: Mapping[str, type], problems: list[str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for section_name, section in raw.items():
        if section_name not in sections:
            problems.append(f"unknown section '{section_name}'{suggest(str(section_name), sections)}")
            continue
        if section is None:
            continue
        if not isinstance(section, dict):
            problems.append(f"section '{section_name}' must be a mapping of keys")
            continue
        known = [spec.name for spec in dataclasses.fields(sections[section_name])]
        for key, value in section.items():
            if key not in known:
                suggestion = suggest(str(key), known, prefix=f"{section_name}.")
                problems.append(f"unknown key '{section_name}.{key}'{suggestion}")
                continue
            values[f"{section_name}.{key}"] = value
    return values


def env_values(
    environ: Mapping[str, str], sections: Mapping[str, type], problems: list[str]
) -> dict[str, tuple[str, str]]:
    values: dict[str, tuple[str, str]] = {}
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or name == CONFIG_ENV or name.startswith(SETTING_ENV_PREFIX):
            continue
        rest = name[len(ENV_PREFIX) :]
        for section_name, section_cls in sections.items():
            prefix = section_name.upper() + "_"
            if not rest.startswith(prefix):
                continue
            key = rest[len(prefix) :].lower()
            known = [spec.name for spec in dataclasses.fields(section_cls) if spec.name != "values"]
            if key in known:
                values[f"{section_name}.{key}"] = (name, value)
            else:
                env_known = [f"{ENV_PREFIX}{prefix}{k.upper()}" for k in known]
                problems.append(f"unknown environment variable {name}{suggest(name, env_known)}")
            break
    return values


def suggest(word: str, known: Any, prefix: str = "") -> str:
    close = difflib.get_close_matches(word, list(known), n=1, cutoff=0.6)
    return f"; did you mean '{prefix}{close[0]}'?" if close else ""


_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def coerce(dotted: str, hint: Any, rules: Mapping[str, Any], value: Any, from_env: bool) -> Any:
    """Check one value against its field type and rules; environment strings are parsed first."""
    optional = type(None) in typing.get_args(hint)
    base = next((arg for arg in typing.get_args(hint) if arg is not type(None)), hint) if optional else hint
    origin = typing.get_origin(base) or base

    if isinstance(value, str) and optional and not value.strip():
        return None
    if value is None:
        if optional or origin is Mapping:
            return None
        raise ValueError(f"{dotted}: a value is required")

    if origin is bool:
        if from_env and isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        if not isinstance(value, bool):
            raise ValueError(f"{dotted}: expected true or false, got {value!r}")
        return value
    if origin is int or origin is float:
        kinds, noun = (int, "a whole number") if origin is int else ((int, float), "a number")
        if from_env and isinstance(value, str):
            try:
                value = int(value.strip()) if origin is int else float(value.strip())
            except ValueError:
                raise ValueError(f"{dotted}: expected {noun}, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, kinds):
            raise ValueError(f"{dotted}: expected {noun}, got {value!r}")
        if "min" in rules and value < rules["min"]:
            raise ValueError(f"{dotted}: must be at least {rules['min']}, got {value}")
        if "max" in rules and value > rules["max"]:
            raise ValueError(f"{dotted}: must be at most {rules['max']}, got {value}")
        return value
    if origin is tuple:
        if from_env and isinstance(value, str):
            value = [item.strip() for item in value.split(",") if item.strip()]
        if isinstance(value, str) or not isinstance(value, list | tuple):
            raise ValueError(f"{dotted}: expected a list, got {value!r}")
        if not all(isinstance(item, str) for item in value):
            raise ValueError(f"{dotted}: every entry must be a string")
        return tuple(item.strip() for item in value)
    if origin is Mapping:
        if not isinstance(value, dict):
            raise ValueError(f"{dotted}: expected a mapping of 'namespace.key: value'")
        return value
    if origin is str:
        if not isinstance(value, str | int) or isinstance(value, bool):
            raise ValueError(f"{dotted}: expected a string, got {value!r}")
        value = str(value).strip()
        choices = rules.get("choices")
        if choices:
            normalised = value.upper() if dotted == "logging.level" else value.lower()
            if normalised not in choices:
                raise ValueError(f"{dotted}: must be one of {', '.join(choices)}, got {value!r}")
            return normalised
        if not value and not optional:
            raise ValueError(f"{dotted}: must not be empty")
        return value or None
    raise ValueError(f"{dotted}: unsupported value {value!r}")
