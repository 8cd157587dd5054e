"""The schema of `config.yaml`: one frozen dataclass per section, and `Config` that holds them.

A key exists if and only if it is a field here, which keeps the reference docs, the environment
overrides and the validation in step.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

from synthorg_tornado.config.urls import is_loopback_host, parse_url

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
    max_event_bytes: int = _key(
        64 * 1024,
        "Largest event a publisher may send, in bytes of the compact JSON the log stores; "
        "larger is refused with 413.",
        min=256,
        max=16 * 1024 * 1024,
    )
    event_log_max_bytes: int = _key(
        64 * 1024 * 1024,
        "Byte budget of the retained event log; past it the oldest events are dropped, and a "
        "resume that needs them answers recovered: false.",
        min=64 * 1024,
        max=16 * 1024 * 1024 * 1024,
    )
    publish_rate_per_minute: int = _key(
        120,
        "Events one user may publish per minute (per process), in bursts of up to as many; "
        "more is refused with 429 and Retry-After.",
        min=1,
        max=1_000_000,
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
