"""Read `config.yaml` and the environment into a `Config`, and the secret file beside it."""

from __future__ import annotations

import dataclasses
import os
import secrets
import stat
import typing
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from synthorg_tornado.config.rules import validate
from synthorg_tornado.config.schema import DEFAULT_HSTS_MAX_AGE, SECTIONS, Config, ConfigError
from synthorg_tornado.config.sources import CONFIG_ENV, coerce, env_values, file_values, read_yaml
from synthorg_tornado.config.urls import resolve_sqlite_url


def resolve_config_path(explicit: str | None, environ: Mapping[str, str] | None = None) -> Path:
    """`--config` wins, then `SYNTHORG_CONFIG`, then `config.yaml` in the working directory."""
    environ = os.environ if environ is None else environ
    chosen = explicit or environ.get(CONFIG_ENV) or "config.yaml"
    return Path(chosen).expanduser().resolve()


def load_config(path: Path | str | None, environ: Mapping[str, str] | None = None) -> Config:
    """Read, override from the environment, and validate. Raises `ConfigError`."""
    environ = os.environ if environ is None else environ
    problems: list[str] = []
    config_path = Path(path).resolve() if path is not None else None
    raw = read_yaml(config_path, problems)

    sources: dict[str, str] = {}
    sections: dict[str, Any] = {}
    from_file = file_values(raw, SECTIONS, problems)
    from_env_vars = env_values(environ, SECTIONS, problems)
    base_dir = config_path.parent if config_path else Path.cwd()

    for section_name, section_cls in SECTIONS.items():
        hints = typing.get_type_hints(section_cls)
        values: dict[str, Any] = {}
        for spec in dataclasses.fields(section_cls):
            dotted = f"{section_name}.{spec.name}"
            raw_value, source, from_env = spec.default, "default", False
            if dotted in from_file:
                raw_value, source = from_file[dotted], "file"
            if dotted in from_env_vars:
                (env_name, raw_value), from_env = from_env_vars[dotted], True
                source = f"env:{env_name}"
            try:
                value = coerce(dotted, hints[spec.name], spec.metadata, raw_value, from_env)
            except ValueError as exc:
                problems.append(str(exc))
                value = spec.default
            if spec.metadata.get("path") and value is not None:
                value = str((base_dir / Path(value).expanduser()).resolve())
            values[spec.name] = value
            sources[dotted] = source
        sections[section_name] = values

    sections["server"]["base_url"] = _normalise_base_url(sections["server"]["base_url"])
    sections["settings"]["values"] = MappingProxyType(dict(sections["settings"]["values"] or {}))
    sections["database"]["url"] = resolve_sqlite_url(sections["database"]["url"], base_dir, problems)

    built = {name: SECTIONS[name](**values) for name, values in sections.items()}
    config = Config(path=config_path, sources=sources, **built)
    warnings = validate(config, problems)
    if problems:
        raise ConfigError(problems)
    return dataclasses.replace(config, warnings=tuple(warnings))


def _normalise_base_url(base_url: str) -> str:
    return "/" + base_url.strip("/") + "/" if base_url.strip("/") else "/"


def ensure_secret(config: Config) -> bytes:
    """Read the signing secret, creating it 0600 on first run; refuse one others can read."""
    path = config.secret_path
    if path.exists():
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            raise ConfigError(
                [f"auth.secret_file {path} is readable by group or others; run: chmod 600 {path}"]
            )
        secret = path.read_bytes().strip()
        if len(secret) < 32:
            raise ConfigError([f"auth.secret_file {path} is shorter than 32 bytes; delete it to regenerate"])
        return secret
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(48).encode()
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(secret + b"\n")
    os.chmod(path, 0o600)
    return secret


def describe(config: Config) -> list[tuple[str, str, str]]:
    """(key, shown value, source) rows for `config show`, secrets masked."""
    rows = []
    for section_name in SECTIONS:
        section = getattr(config, section_name)
        for spec in dataclasses.fields(section):
            dotted = f"{section_name}.{spec.name}"
            value = getattr(section, spec.name)
            if dotted == "database.url":
                shown = config.database.masked_url
            elif isinstance(value, tuple):
                shown = "[" + ", ".join(value) + "]"
            elif isinstance(value, Mapping):
                shown = "{" + ", ".join(f"{k}: {v!r}" for k, v in value.items()) + "}"
            elif value is None:
                shown = _describe_unset(config, dotted)
            else:
                shown = str(value).lower() if isinstance(value, bool) else str(value)
            rows.append((dotted, shown, config.sources.get(dotted, "default")))
    return rows


def _describe_unset(config: Config, dotted: str) -> str:
    if dotted == "auth.secret_file":
        return f"{config.secret_path} (derived)"
    if dotted == "server.hsts_max_age":
        return f"{DEFAULT_HSTS_MAX_AGE} under HTTPS"
    return "(not set)"
