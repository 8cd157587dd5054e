"""Rules that span configuration keys: TLS files, trusted proxies, exposure, database URLs.

Kept apart from the schema in `schema.py` so that each reads on its own; these functions see the
config only through its attributes and import nothing from `schema` at run time.
"""

from __future__ import annotations

import ipaddress
import os
import ssl
import stat
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from synthorg_tornado.config.schema import Config, ServerConfig

MIN_IPV4_PREFIX = 8
MIN_IPV6_PREFIX = 32


def validate(config: Config, problems: list[str]) -> list[str]:
    """Rules that span keys. Returns warnings; appends problems."""
    warnings: list[str] = []
    server = config.server
    _validate_tls(server, problems)
    _validate_proxies(server, problems)
    _validate_networks(
        "auth.rate_limit_allowlist",
        config.auth.rate_limit_allowlist,
        "list the NAT's own address or network",
        problems,
    )
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
    warnings.extend(_database_file_warnings(config))
    _validate_metrics(config, problems)
    warnings.extend(_local_scrape_warnings(config))
    warnings.extend(_realtime_rules(config, problems))
    secret = config.secret_path
    if server.processes > 1 and not secret.exists():
        warnings.append(
            f"auth.secret_file {secret} does not exist yet, so the server will generate it at "
            f"start-up; with server.processes: {server.processes} the lab is scaled out, and every "
            "instance on every host must read the same secret, or a session or cookie made by one "
            "is refused by the others: create it once (openssl rand -hex 48 > FILE; chmod 600 FILE), "
            "copy it to each host and point auth.secret_file at it"
        )
    if secret.exists():
        mode = stat.S_IMODE(secret.stat().st_mode)
        if mode & 0o077:
            problems.append(
                f"auth.secret_file {secret} is readable by group or others (mode {mode:o}); "
                f"run: chmod 600 {secret}"
            )
    return warnings


def _realtime_rules(config: Config, problems: list[str]) -> list[str]:
    """The event limits must fit inside each other; returns warnings, appends problems."""
    realtime = config.realtime
    if realtime.max_event_bytes > realtime.event_log_max_bytes:
        problems.append(
            f"realtime.max_event_bytes ({realtime.max_event_bytes}) exceeds realtime.event_log_max_bytes "
            f"({realtime.event_log_max_bytes}): one event would not fit in the retained log"
        )
    if realtime.max_event_bytes > config.server.max_body_size:
        return [
            f"realtime.max_event_bytes ({realtime.max_event_bytes}) exceeds server.max_body_size "
            f"({config.server.max_body_size}), so the body limit refuses large events first"
        ]
    return []


def _validate_metrics(config: Config, problems: list[str]) -> None:
    for entry in config.metrics.allow_networks:
        try:
            ipaddress.ip_network(entry, strict=True)
        except ValueError:
            problems.append(f"metrics.allow_networks: '{entry}' is not an IP network in CIDR form")
    path = config.metrics.token_file
    if path is None:
        return
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
        token = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(f"metrics.token_file: {path} cannot be read: {getattr(exc, 'strerror', None) or exc}")
        return
    if mode & 0o077:
        problems.append(f"metrics.token_file {path} is readable by group or others; run: chmod 600 {path}")
    if len(token) < 16:
        problems.append(
            f"metrics.token_file {path} holds fewer than 16 characters; write a long random token "
            "(for example: openssl rand -hex 32)"
        )


def _local_scrape_warnings(config: Config) -> list[str]:
    """docs/deploy.md promises that a Prometheus on this host scrapes `/metrics` with nothing to
    configure: it connects from a loopback address (or from server.host itself when that is one
    specific address), which must then be in metrics.allow_networks unless a token is set."""
    if config.metrics.token_file:
        return []
    sources = _local_scraper_addresses(config.server.host)
    networks = [network for _, network in _parsed_networks(config.metrics.allow_networks)]
    if not sources or any(source in network for source in sources for network in networks):
        return []
    listed = ", ".join(config.metrics.allow_networks) or "empty"
    return [
        f"metrics.allow_networks ({listed}) does not contain {sources[0]}, the address a Prometheus "
        "on this host scrapes from, and metrics.token_file is not set: its scrapes get 401; add "
        f"{sources[0]} to metrics.allow_networks or set metrics.token_file"
    ]


def _local_scraper_addresses(host: str) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """The source addresses of a connection from this host to server.host (none for a name)."""
    loopback = [ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")]
    if host in ("", "localhost", "0.0.0.0", "::"):
        return loopback if host != "0.0.0.0" else loopback[:1]
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return []
    return [address]


def _database_file_warnings(config: Config) -> list[str]:
    """The SQLite files hold password and token hashes: new ones are created 0600."""
    path = config.database.sqlite_path
    if path is None:
        return []
    found = []
    for candidate in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        if candidate.exists() and stat.S_IMODE(candidate.stat().st_mode) & 0o077:
            mode = stat.S_IMODE(candidate.stat().st_mode)
            found.append(
                f"database file {candidate} is readable by group or others (mode {mode:o}) and holds "
                f"password and token hashes; run: chmod 600 {candidate}"
            )
    return found


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
    _validate_networks(
        "server.trusted_proxies", server.trusted_proxies, "list the proxy's own address", problems
    )


def _validate_networks(key: str, entries: tuple[str, ...], narrower: str, problems: list[str]) -> None:
    """Addresses or CIDRs written exactly: no host bits, nothing broader than /8 (IPv6 /32).

    A list that widens what is trusted or exempted must not be mistyped into half the Internet.
    """
    for entry in entries:
        try:
            network = ipaddress.ip_network(entry, strict=True)
        except ValueError:
            try:
                meant = ipaddress.ip_network(entry, strict=False)
            except ValueError:
                problems.append(f"{key}: '{entry}' is not an IP address or CIDR")
                continue
            problems.append(f"{key}: '{entry}' has host bits set; did you mean '{meant}'?")
            continue
        floor = MIN_IPV4_PREFIX if network.version == 4 else MIN_IPV6_PREFIX
        if network.prefixlen < floor:
            problems.append(f"{key}: '{entry}' is too broad (shorter than /{floor}); {narrower}")
