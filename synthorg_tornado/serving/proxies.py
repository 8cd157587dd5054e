"""The one place that decides a request's client IP and scheme.

Forwarded headers are believed only when the TCP peer is a configured trusted proxy. Behind a
chain of proxies, the client is the right-most `X-Forwarded-For` entry that is not itself trusted:
entries to its left were written by the client and prove nothing. A client talking to us directly
can therefore never spoof its address or scheme, whatever headers it sends.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

log = logging.getLogger("synthorg.proxies")

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
SCHEMES = frozenset({"http", "https"})


@dataclass(frozen=True)
class ClientAddress:
    ip: str
    scheme: str
    # The trusted proxy the request came through, or None for a direct client.
    via_proxy: str | None


class TrustedProxies:
    def __init__(self, networks: Iterable[IPNetwork]) -> None:
        self.networks = tuple(networks)

    def is_trusted(self, address: str) -> bool:
        ip = _parse_ip(address)
        return ip is not None and any(ip in network for network in self.networks)

    def resolve(self, peer_ip: str, peer_scheme: str, headers: Mapping[str, str]) -> ClientAddress:
        if not self.networks or not self.is_trusted(peer_ip):
            if has_forwarding_headers(headers):
                log.debug("ignored forwarded headers from untrusted peer %s", peer_ip)
            return ClientAddress(peer_ip, peer_scheme, None)
        return ClientAddress(
            self._client_ip(peer_ip, headers),
            self._forwarded_scheme(peer_ip, headers) or peer_scheme,
            peer_ip,
        )

    def _client_ip(self, peer_ip: str, headers: Mapping[str, str]) -> str:
        chain = _all_values(headers, "X-Forwarded-For")
        if not chain:
            # An element without `for` stays in the chain as an empty entry: its writer vouched
            # for no address, so the walk must stop there rather than reach the client's own.
            chain = [element.get("for", "") for element in _forwarded_elements(headers)]
        if not chain:
            real_ip = _parse_ip(_single(headers, "X-Real-Ip") or "")
            return str(real_ip) if real_ip is not None else peer_ip
        return self._walk(peer_ip, chain)[0]

    def _walk(self, peer_ip: str, chain: list[str]) -> tuple[str, int]:
        """The client in a forwarding chain, and the index of the entry the walk stopped at.

        Walks from the right while entries are trusted proxies; the first untrusted entry is the
        client. A malformed entry stops the walk at the nearest trusted hop: nothing beyond it can
        be verified, and the garbage itself is never an address. Entries from the returned index
        rightwards were written by trusted proxies; everything to its left may be the client's.
        """
        nearest = peer_ip
        for index in range(len(chain) - 1, -1, -1):
            ip = _parse_ip(chain[index])
            if ip is None:
                log.debug("malformed forwarded address %r; using the nearest trusted hop", chain[index])
                return nearest, index
            if not any(ip in network for network in self.networks):
                return str(ip), index
            nearest = str(ip)
        return nearest, 0

    def _forwarded_scheme(self, peer_ip: str, headers: Mapping[str, str]) -> str | None:
        candidates = [
            _single(headers, "X-Forwarded-Proto"),
            _single(headers, "X-Scheme"),
            self._forwarded_proto(peer_ip, headers),
        ]
        for candidate in candidates:
            if candidate and candidate.lower() in SCHEMES:
                return candidate.lower()
        return None

    def _forwarded_proto(self, peer_ip: str, headers: Mapping[str, str]) -> str | None:
        """`proto` from an RFC 7239 element a trusted proxy wrote, nearest the client first.

        The element that names the client was written by the proxy that accepted the client's
        connection, so its `proto` is the client's scheme. Elements to its left came from the
        client and are never believed, even when the trusted proxy's own element has no `proto`.
        """
        elements = _forwarded_elements(headers)
        if not elements:
            return None
        _, start = self._walk(peer_ip, [element.get("for", "") for element in elements])
        return next((element["proto"] for element in elements[start:] if "proto" in element), None)


def has_forwarding_headers(headers: Mapping[str, str]) -> bool:
    """Whether a proxy relayed the request (nginx always adds these), whatever their values.

    A request from a trusted proxy's address without any of them came from that host itself,
    not through the proxy: a Prometheus next to nginx scrapes that way."""
    names = ("X-Forwarded-For", "X-Real-Ip", "X-Forwarded-Proto", "X-Scheme", "Forwarded")
    return any(name in headers for name in names)


def _all_values(headers: Mapping[str, str], name: str) -> list[str]:
    get_list = getattr(headers, "get_list", None)
    values = get_list(name) if get_list else ([headers[name]] if name in headers else [])
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


def _single(headers: Mapping[str, str], name: str) -> str | None:
    values = _all_values(headers, name)
    return values[-1] if values else None


def _forwarded_elements(headers: Mapping[str, str]) -> list[dict[str, str]]:
    """RFC 7239 `Forwarded`: comma-separated elements of `;`-separated `name=value` pairs."""
    elements = []
    for element in _all_values(headers, "Forwarded"):
        pairs: dict[str, str] = {}
        for pair in element.split(";"):
            name, _, value = pair.partition("=")
            pairs[name.strip().lower()] = value.strip().strip('"')
        elements.append(pairs)
    return elements


def _parse_ip(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """Accepts `1.2.3.4`, `1.2.3.4:80`, `::1`, `[::1]` and `[::1]:80`."""
    value = value.strip()
    if value.startswith("["):
        value = value[1:].split("]", 1)[0]
    elif value.count(":") == 1:
        value = value.split(":", 1)[0]
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        return None
