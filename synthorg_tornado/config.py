"""Load and validate `config.yaml` into one immutable, typed `Config`.

Every problem found is collected, so a sysadmin sees all of them at once: `ConfigError.problems`
holds one self-contained line each, and the command line prints them and exits 2. The schema is
the dataclasses below: a key exists if and only if it is a field here, which keeps the reference
docs, the environment overrides and the validation in step.
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import os
import secrets
import ssl
import stat
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

ENV_PREFIX = "SYNTHORG_"
CONFIG_ENV = "SYNTHORG_CONFIG"
SETTING_ENV_PREFIX = "SYNTHORG_SETTING_"
DEFAULT_HSTS_MAX_AGE = 31536000
MIN_IPV4_PREFIX = 8
MIN_IPV6_PREFIX = 32
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
    api_token_max_days: int = _key(365, "Longest API token lifetime.", min=1)
    cookie_name: str = _key("synthorg_session", "Name of the session cookie.")
    cleanup_interval_seconds: int = _key(60, "How often expired sessions are pruned.", min=1)


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
class SettingsConfig:
    require_if_match: bool = _key(True, "Writes must send If-Match.")
    values: Mapping[str, Any] = _key(None, "Overrides of setting defaults, `namespace.key: value`.")


@dataclass(frozen=True)
class LoggingConfig:
    level: str = _key("INFO", "DEBUG, INFO, WARNING, ERROR or CRITICAL.", choices=LOG_LEVELS)
    format: str = _key("text", "`text` or `json` (one object per line).", choices=LOG_FORMATS)
    access_log: bool = _key(True, "One line per request.")


SECTIONS: dict[str, type] = {
    "server": ServerConfig,
    "database": DatabaseConfig,
    "auth": AuthConfig,
    "websocket": WebSocketConfig,
    "settings": SettingsConfig,
    "logging": LoggingConfig,
}


@dataclass(frozen=True)
class Config:
    """The effective configuration. `sources` maps `section.key` to default, file or env:NAME."""

    path: Path | None
    server: ServerConfig
    database: DatabaseConfig
    auth: AuthConfig
    websocket: WebSocketConfig
    settings: SettingsConfig
    logging: LoggingConfig
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


def is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_url(url: str) -> URL | None:
    """The parsed database URL, or None when it does not parse.

    An unparseable URL is reported once by `load_config`; the checks that run after it (secret
    file, processes) must still work so that every other problem is reported too.
    """
    try:
        return make_url(url)
    except (ArgumentError, ValueError):
        return None


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
    raw = _read_yaml(config_path, problems)

    sources: dict[str, str] = {}
    sections: dict[str, Any] = {}
    file_values = _file_values(raw, problems)
    env_values = _env_values(environ, problems)
    base_dir = config_path.parent if config_path else Path.cwd()

    for section_name, section_cls in SECTIONS.items():
        hints = typing.get_type_hints(section_cls)
        values: dict[str, Any] = {}
        for spec in dataclasses.fields(section_cls):
            dotted = f"{section_name}.{spec.name}"
            raw_value, source, from_env = spec.default, "default", False
            if dotted in file_values:
                raw_value, source = file_values[dotted], "file"
            if dotted in env_values:
                (env_name, raw_value), from_env = env_values[dotted], True
                source = f"env:{env_name}"
            try:
                value = _coerce(dotted, hints[spec.name], spec.metadata, raw_value, from_env)
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
    sections["database"]["url"] = _resolve_sqlite_url(sections["database"]["url"], base_dir, problems)

    built = {name: SECTIONS[name](**values) for name, values in sections.items()}
    config = Config(path=config_path, sources=sources, **built)
    warnings = _validate(config, problems)
    if problems:
        raise ConfigError(problems)
    return dataclasses.replace(config, warnings=tuple(warnings))


def _read_yaml(path: Path | None, problems: list[str]) -> dict[str, Any]:
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


def _file_values(raw: dict[str, Any], problems: list[str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for section_name, section in raw.items():
        if section_name not in SECTIONS:
            problems.append(f"unknown section '{section_name}'{_suggest(str(section_name), SECTIONS)}")
            continue
        if section is None:
            continue
        if not isinstance(section, dict):
            problems.append(f"section '{section_name}' must be a mapping of keys")
            continue
        known = [spec.name for spec in dataclasses.fields(SECTIONS[section_name])]
        for key, value in section.items():
            if key not in known:
                suggestion = _suggest(str(key), known, prefix=f"{section_name}.")
                problems.append(f"unknown key '{section_name}.{key}'{suggestion}")
                continue
            values[f"{section_name}.{key}"] = value
    return values


def _env_values(environ: Mapping[str, str], problems: list[str]) -> dict[str, tuple[str, str]]:
    values: dict[str, tuple[str, str]] = {}
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or name == CONFIG_ENV or name.startswith(SETTING_ENV_PREFIX):
            continue
        rest = name[len(ENV_PREFIX) :]
        for section_name, section_cls in SECTIONS.items():
            prefix = section_name.upper() + "_"
            if not rest.startswith(prefix):
                continue
            key = rest[len(prefix) :].lower()
            known = [spec.name for spec in dataclasses.fields(section_cls) if spec.name != "values"]
            if key in known:
                values[f"{section_name}.{key}"] = (name, value)
            else:
                env_known = [f"{ENV_PREFIX}{prefix}{k.upper()}" for k in known]
                problems.append(f"unknown environment variable {name}{_suggest(name, env_known)}")
            break
    return values


def _suggest(word: str, known: Any, prefix: str = "") -> str:
    close = difflib.get_close_matches(word, list(known), n=1, cutoff=0.6)
    return f"; did you mean '{prefix}{close[0]}'?" if close else ""


_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def _coerce(dotted: str, hint: Any, rules: Mapping[str, Any], value: Any, from_env: bool) -> Any:
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


def _normalise_base_url(base_url: str) -> str:
    return "/" + base_url.strip("/") + "/" if base_url.strip("/") else "/"


def _resolve_sqlite_url(url: str, base_dir: Path, problems: list[str]) -> str:
    """Relative SQLite paths resolve against the config file's folder, like every other path."""
    parsed = parse_url(url)
    if parsed is None:
        # The text itself is not shown: it may hold a password.
        problems.append(
            "database.url is not a valid database URL; write sqlite+aiosqlite:///PATH "
            "or postgresql+psycopg://USER:PASSWORD@HOST/DATABASE"
        )
        return url
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        database = parsed.database
        if database and database != ":memory:" and not Path(database).is_absolute():
            parsed = parsed.set(database=str((base_dir / database).resolve()))
        if parsed.drivername == "sqlite":
            parsed = parsed.set(drivername="sqlite+aiosqlite")
        return parsed.render_as_string(hide_password=False)
    if backend == "postgresql":
        if parsed.drivername in ("postgresql", "postgres"):
            parsed = parsed.set(drivername="postgresql+psycopg")
        return parsed.render_as_string(hide_password=False)
    problems.append(f"database.url: use sqlite+aiosqlite:/// or postgresql+psycopg://, not {backend}")
    return url


def _validate(config: Config, problems: list[str]) -> list[str]:
    """Rules that span keys. Returns warnings; appends problems."""
    warnings: list[str] = []
    server = config.server
    _validate_tls(server, problems)
    _validate_proxies(server, problems)
    for origin in server.allowed_origins:
        if "://" not in origin or origin.rstrip("/").count("/") != 2:
            problems.append(
                f"server.allowed_origins: '{origin}' is not an origin; write scheme://host[:port]"
            )
    if not server.is_loopback and not server.tls_enabled and not server.trusted_proxies:
        if not server.allow_plain_http_remote:
            problems.append(
                f"server.host {server.host or '(all interfaces)'} is reachable from the network but "
                "the server has neither TLS nor trusted proxies, so passwords would cross it in "
                "clear text: set server.ssl_certfile and server.ssl_keyfile, or run behind a TLS "
                "proxy listed in server.trusted_proxies, or set server.allow_plain_http_remote: true "
                "to accept the risk"
            )
        else:
            warnings.append(
                f"serving plain HTTP on {server.host}: passwords and cookies cross the network unencrypted"
            )
    if server.trusted_proxies and not server.is_loopback and not server.tls_enabled:
        warnings.append(
            f"server.host {server.host} is not loopback although trusted proxies are set: clients "
            "can bypass the proxy; bind 127.0.0.1 or firewall the port so only the proxy reaches it"
        )
    warnings.extend(_deployment_warnings(server))
    if server.processes > 1 and config.database.is_sqlite:
        problems.append(
            f"server.processes: {server.processes} needs PostgreSQL in database.url; SQLite serves "
            "one process, and separate processes need PostgreSQL to share revocations and events"
        )
    secret = config.secret_path
    if secret.exists():
        mode = stat.S_IMODE(secret.stat().st_mode)
        if mode & 0o077:
            problems.append(
                f"auth.secret_file {secret} is readable by group or others (mode {mode:o}); "
                f"run: chmod 600 {secret}"
            )
    return warnings


def _deployment_warnings(server: ServerConfig) -> list[str]:
    """Settings that work but defeat themselves; each is a failure docs/deploy.md troubleshoots."""
    warnings: list[str] = []
    origins = [origin.rstrip("/") for origin in server.allowed_origins]
    plain = [origin for origin in origins if origin.lower().startswith("http://")]
    secure = [origin for origin in origins if origin.lower().startswith("https://")]
    # The lab is known to be reached over HTTPS when it serves TLS itself, or when the sysadmin
    # lists HTTPS origins for it.
    if plain and (server.tls_enabled or secure):
        warnings.append(
            f"server.allowed_origins: {', '.join(plain)} "
            f"{'is a plain-HTTP origin' if len(plain) == 1 else 'are plain-HTTP origins'} although "
            "the lab is served over HTTPS; a page from such an origin can be altered on the network "
            "and would then open WebSockets with the user's cookie; list https:// origins only"
        )
    if secure and not server.tls_enabled and not server.trusted_proxies:
        warnings.append(
            "server.allowed_origins names HTTPS origins but the server has neither TLS nor trusted "
            "proxies; behind a TLS proxy, list the proxy in server.trusted_proxies, or session cookies "
            "lack Secure and every client's IP address is the proxy's"
        )
    if server.allowed_hosts and not server.is_loopback:
        warnings.append(
            f"server.allowed_hosts has no effect on server.host {server.host}: Host is checked only "
            "on a loopback bind; on the network, let the proxy's server_name refuse other names"
        )
    if server.is_loopback and server.trusted_proxies:
        reachable = _loopback_networks(server.host)
        unreachable = [
            entry
            for entry, network in _parsed_networks(server.trusted_proxies)
            if not any(network.version == own.version and network.overlaps(own) for own in reachable)
        ]
        if unreachable:
            warnings.append(
                f"server.trusted_proxies: {', '.join(unreachable)} can never connect to server.host "
                f"{server.host}, a loopback address; list the address the proxy connects from "
                "(127.0.0.1 for nginx on this machine with upstream 127.0.0.1)"
            )
    return warnings


def _loopback_networks(host: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """The addresses a peer of a loopback bind can have."""
    ipv4, ipv6 = ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128")
    if host == "localhost":
        return (ipv4, ipv6)
    return (ipv4,) if ipaddress.ip_address(host).version == 4 else (ipv6,)


def _parsed_networks(
    entries: tuple[str, ...],
) -> list[tuple[str, ipaddress.IPv4Network | ipaddress.IPv6Network]]:
    parsed = []
    for entry in entries:
        try:
            parsed.append((entry, ipaddress.ip_network(entry, strict=False)))
        except ValueError:
            continue  # reported as a problem by _validate_proxies
    return parsed


def _validate_tls(server: ServerConfig, problems: list[str]) -> None:
    cert, key, ca = server.ssl_certfile, server.ssl_keyfile, server.ssl_ca_certs
    if bool(cert) != bool(key):
        given, missing = ("ssl_certfile", "ssl_keyfile") if cert else ("ssl_keyfile", "ssl_certfile")
        problems.append(f"server.{given} is set but server.{missing} is not; set both or neither")
        return
    if ca and not cert:
        problems.append("server.ssl_ca_certs needs server.ssl_certfile and server.ssl_keyfile")
        return
    if not cert:
        return
    unusable = False
    for name, path in (("ssl_certfile", cert), ("ssl_keyfile", key), ("ssl_ca_certs", ca)):
        if not path:
            continue
        if not os.path.exists(path):
            state = "does not exist"
        elif not os.path.isfile(path):
            state = "is not a file"
        elif not os.access(path, os.R_OK):
            state = "is not readable"
        else:
            continue
        problems.append(f"server.{name}: {path} {state}")
        unusable = True
    if not unusable:
        _check_tls_files(cert, key, ca, problems)


class _EncryptedKey(Exception):
    """Raised from the passphrase callback: a server started by systemd has nobody to ask."""


def _refuse_passphrase() -> str:
    raise _EncryptedKey


def _check_tls_files(cert: str, key: str, ca: str | None, problems: list[str]) -> None:
    """Load the files one at a time into an `ssl.SSLContext`, so that each line names the file at fault."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_verify_locations(cafile=cert)
    except OSError:  # ssl.SSLError included
        problems.append(f"server.ssl_certfile: {cert} holds no PEM certificate")
        return
    try:
        context.load_cert_chain(cert, key, password=_refuse_passphrase)
    except _EncryptedKey:
        problems.append(
            f"server.ssl_keyfile: {key} is encrypted and the server cannot ask for its passphrase; "
            f"write it unencrypted (openssl pkey -in {key} -out NEW.key) and chmod 600 it"
        )
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            problems.append(f"server.ssl_keyfile {key} does not match server.ssl_certfile {cert}")
        else:
            problems.append(f"server.ssl_keyfile: {key} holds no usable PEM private key")
    except OSError as exc:
        problems.append(f"server.ssl_keyfile: {key} cannot be read: {exc.strerror or exc}")
    if ca:
        try:
            context.load_verify_locations(cafile=ca)
        except OSError:
            problems.append(f"server.ssl_ca_certs: {ca} holds no PEM CA certificate")


def build_ssl_context(server: ServerConfig) -> ssl.SSLContext:
    """TLS 1.2+ server context; with a CA bundle, client certificates are required."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(server.ssl_certfile, server.ssl_keyfile)
    if server.ssl_ca_certs:
        context.load_verify_locations(cafile=server.ssl_ca_certs)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def _validate_proxies(server: ServerConfig, problems: list[str]) -> None:
    for entry in server.trusted_proxies:
        try:
            network = ipaddress.ip_network(entry, strict=True)
        except ValueError:
            try:
                meant = ipaddress.ip_network(entry, strict=False)
            except ValueError:
                problems.append(f"server.trusted_proxies: '{entry}' is not an IP address or CIDR")
                continue
            problems.append(f"server.trusted_proxies: '{entry}' has host bits set; did you mean '{meant}'?")
            continue
        floor = MIN_IPV4_PREFIX if network.version == 4 else MIN_IPV6_PREFIX
        if network.prefixlen < floor:
            problems.append(
                f"server.trusted_proxies: '{entry}' is too broad (shorter than /{floor}); "
                "list the proxy's own address"
            )


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
