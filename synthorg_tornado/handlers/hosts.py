"""Which Host names a loopback-bound server answers to (DNS-rebinding protection)."""

from __future__ import annotations

from urllib.parse import urlsplit

from synthorg_tornado.config import Config


def host_name(host: str) -> str:
    """The Host header without its port: `[::1]:8888` -> `::1`, `Lab.Example:80` -> `lab.example`."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def allowed_host_names(config: Config) -> frozenset[str] | None:
    """The Host names a loopback-bound server answers to; None when it is not loopback-bound."""
    server = config.server
    if not server.is_loopback:
        return None
    names = {"localhost", "127.0.0.1", "::1", server.host.lower()}
    names.update(name.lower() for name in server.allowed_hosts)
    names.update(host_name(urlsplit(origin).netloc) for origin in server.allowed_origins)
    return frozenset(names)
