"""Load and validate `config.yaml` into one immutable, typed `Config`.

Every problem found is collected, so a sysadmin sees all of them at once: `ConfigError.problems`
holds one self-contained line each, and the command line prints them and exits 2. The schema is
the dataclasses below: a key exists if and only if it is a field here, which keeps the reference
docs, the environment overrides and the validation in step.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import secrets
import stat
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from sqlalchemy.engine import make_url

from synthorg_tornado.config_rules import (
    build_ssl_context,
    is_loopback_host,
    parse_url,
    resolve_sqlite_url,
    validate,
)
from synthorg_tornado.config_sources import (
    CONFIG_ENV,
    ENV_PREFIX,
    SETTING_ENV_PREFIX,
    coerce,
    env_values,
    file_values,
    read_yaml,
)

__all__ = ["CONFIG_ENV", "ENV_PREFIX", "SETTING_ENV_PREFIX", "build_ssl_context", "parse_url"]

DEFAULT_HSTS_MAX_AGE = 31536000
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_FORMATS = ("text", "json")


class ConfigError(Exception):
    """The configuration cannot be used. `problems` has one clear line per problem."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


def _key(default: Any, doc: str, **rules: Any) -> Any:
    return field(default=default, metadata={"doc": doc, **rules})


@dataclass(frozen=True)
class ServerConfig:
    host: str = _key("127.0.0.1", "Address to bind.")
    port: int = _key(8888, "TCP port to bind (0 picks a free one).", min=0, max=65535)
    base_url: str = _key("/", "Path prefix of every page, API route, WebSocket and cookie.")
    processes: int = _key(1, "Worker processes; more than one needs PostgreSQL.", min=1, max=64)
    ssl_certfile: str | None = _key(None, "PEM certificate (chain) for native HTTPS.", path=True)
    ssl_keyfile: str | None = _key(None, "PEM private key for native HTTPS.", path=True)
    ssl_ca_certs: str | None = _key(None, "CA bundle; when set, client certificates are required.", path=True)
    trusted_proxies: tuple[str, ...] = _key((), "IPs or CIDRs whose forwarded headers are honoured.")
    allowed_origins: tuple[str, ...] = _key((), "Extra origins allowed for CORS and WebSockets.")
    allowed_hosts: tuple[str, ...] = _key((), "Host header values accepted on a loopback bind.")
    allow_plain_http_remote: bool = _key(False, "Permit plain HTTP on a non-loopback address.")
    hsts_max_age: int | None = _key(None, "HSTS max-age under HTTPS (0 turns HSTS off).", min=0)
    max_body_size: int = _key(1024 * 1024, "Largest accepted request body in bytes.", min=1024)
    shutdown_grace_seconds: int = _key(10, "Time allowed to close connections on shutdown.", min=0)
    header_timeout_seconds: float = _key(
        10, "A new connection must send its request headers within this.", min=0.1
    )
    body_timeout_seconds: float = _key(60, "A request body must arrive within this.", min=0.1)
    keepalive_timeout_seconds: float = _key(
        75, "An idle keep-alive connection is closed after this.", min=0.1
    )
    max_connections: int | None = _key(
        None, "Open connections per process (unset: derived from the open-files limit).", min=1
    )

    @property
    def tls_enabled(self) -> bool:
        return bool(self.ssl_certfile and self.ssl_keyfile)

    @property
    def trusted_networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        return tuple(ipaddress.ip_network(entry) for entry in self.trusted_proxies)

    @property
    def effective_hsts_max_age(self) -> int:
        return DEFAULT_HSTS_MAX_AGE if self.hsts_max_age is None else self.hsts_max_age

    @property
    def is_loopback(self) -> bool:
        return is_loopback_host(self.host)


@dataclass(frozen=True)
class DatabaseConfig:
    url: str = _key("sqlite+aiosqlite:///synthorg.db", "SQLAlchemy URL (SQLite or PostgreSQL).")
    auto_upgrade: bool = _key(True, "Apply pending migrations at start-up.")
    pool_size: int = _key(10, "Connections per process (PostgreSQL).", min=1, max=200)
    echo: bool = _key(False, "Log every SQL statement (debugging only).")

    @property
    def is_sqlite(self) -> bool:
        parsed = parse_url(self.url)
        return parsed is not None and parsed.get_backend_name() == "sqlite"

    @property
    def is_postgresql(self) -> bool:
        parsed = parse_url(self.url)
        return parsed is not None and parsed.get_backend_name() == "postgresql"

    @property
    def sqlite_path(self) -> Path | None:
        """The SQLite database file, or None (PostgreSQL, in-memory, unparseable)."""
        parsed = parse_url(self.url)
        if parsed is None or parsed.get_backend_name() != "sqlite":
            return None
        if not parsed.database or parsed.database == ":memory:":
            return None
        return Path(parsed.database)

    @property
    def masked_url(self) -> str:
        return make_url(self.url).render_as_string(hide_password=True)


@dataclass(frozen=True)
class AuthConfig:
    secret_file: str | None = _key(None, "Signing secret (created 0600 next to the database).", path=True)
    session_ttl_minutes: int = _key(1440, "Absolute session lifetime.", min=1)
    idle_timeout_minutes: float = _key(
        480, "End sessions idle this long (0 = off; fractions allowed).", min=0
    )
    max_sessions_per_user: int = _key(10, "Oldest session is revoked past this.", min=1)
    bcrypt_rounds: int = _key(12, "bcrypt cost factor.", min=4, max=16)
    password_min_length: int = _key(12, "Shortest accepted password.", min=1, max=72)
    login_rate_limit_per_minute: int = _key(10, "Failed logins per client IP per minute.", min=1)
    lockout_threshold: int = _key(10, "Failures that lock an account for one client IP.", min=1)
    lockout_minutes: int = _key(15, "How long such a lock lasts.", min=1)
    rate_limit_allowlist: tuple[str, ...] = _key(
        (), "Client IPs or CIDRs (a lab's NAT) exempt from the per-IP limit, not from the lockout."
    )
    api_token_max_days: int = _key(365, "Longest API token lifetime.", min=1)
    cookie_name: str = _key("synthorg_session", "Name of the session cookie.")
    cleanup_interval_seconds: int = _key(60, "How often expired sessions are pruned.", min=1)
    max_api_tokens_per_user: int = _key(50, "Live API tokens one user may hold.", min=1, max=10_000)

    @property
    def rate_limit_networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        return tuple(ipaddress.ip_network(entry) for entry in self.rate_limit_allowlist)


@dataclass(frozen=True)
class WebSocketConfig:
    ping_interval: int = _key(20, "Seconds between server pings (0 = off).", min=0)
    ping_timeout: int = _key(20, "Seconds to wait for a pong.", min=1)
    max_message_bytes: int = _key(4096, "Largest accepted client message.", min=64)
    max_subscriptions: int = _key(64, "Channels one socket may subscribe to.", min=1)
    max_connections_per_user: int = _key(20, "Open sockets per user.", min=1)
    outbound_queue_limit: int = _key(1000, "Queued messages before a slow client is dropped.", min=1)
    ticket_ttl_seconds: int = _key(30, "Lifetime of a WebSocket ticket.", min=1)


@dataclass(frozen=True)
class RealtimeConfig:
    event_retention_seconds: int = _key(
        300,
        "How long the lab's event log keeps each event: the furthest back a reconnecting socket "
        "can resume, and a process can catch up after losing its listener connection.",
        min=10,
        max=86400,
    )


@dataclass(frozen=True)
class SettingsConfig:
    require_if_match: bool = _key(True, "Writes must send If-Match.")
    values: Mapping[str, Any] = _key(None, "Overrides of setting defaults, `namespace.key: value`.")


@dataclass(frozen=True)
class AuditConfig:
    retention_days: int = _key(
        365, "Audit entries older than this many days are pruned (0 = keep all).", min=0, max=36500
    )


@dataclass(frozen=True)
class LoggingConfig:
    level: str = _key("INFO", "DEBUG, INFO, WARNING, ERROR or CRITICAL.", choices=LOG_LEVELS)
    format: str = _key("text", "`text` or `json` (one object per line).", choices=LOG_FORMATS)
    access_log: bool = _key(True, "One line per request.")


@dataclass(frozen=True)
class MetricsConfig:
    allow_networks: tuple[str, ...] = _key(
        ("127.0.0.0/8", "::1/128"), "CIDRs that may scrape /metrics without credentials."
    )
    token_file: str | None = _key(None, "File with a bearer token for scrapers (Prometheus).", path=True)

    @property
    def networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        return tuple(ipaddress.ip_network(entry, strict=False) for entry in self.allow_networks)


SECTIONS: dict[str, type] = {
    "server": ServerConfig,
    "database": DatabaseConfig,
    "auth": AuthConfig,
    "websocket": WebSocketConfig,
    "realtime": RealtimeConfig,
    "settings": SettingsConfig,
    "audit": AuditConfig,
    "logging": LoggingConfig,
    "metrics": MetricsConfig,
}


@dataclass(frozen=True)
class Config:
    """The effective configuration. `sources` maps `section.key` to default, file or env:NAME."""

    path: Path | None
    server: ServerConfig
    database: DatabaseConfig
    auth: AuthConfig
    websocket: WebSocketConfig
    realtime: RealtimeConfig
    settings: SettingsConfig
    audit: AuditConfig
    logging: LoggingConfig
    metrics: MetricsConfig
    sources: Mapping[str, str]
    warnings: tuple[str, ...] = ()

    @property
    def base_dir(self) -> Path:
        return self.path.parent if self.path else Path.cwd()

    @property
    def secret_path(self) -> Path:
        if self.auth.secret_file:
            return Path(self.auth.secret_file)
        url = parse_url(self.database.url)
        if self.database.is_sqlite and url and url.database and url.database != ":memory:":
            return Path(url.database).parent / "synthorg_secret"
        return self.base_dir / "synthorg_secret"

    def replace(self, **sections: Any) -> Config:
        return dataclasses.replace(self, **sections)


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
