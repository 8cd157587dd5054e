"""Forwarded headers count only when the TCP peer is a trusted proxy (SPEC section 7).

The unit tests pin down `TrustedProxies.resolve`, the one place that decides a request's client
IP and scheme. The end-to-end tests send spoofed headers to real servers, one with and one
without `trusted_proxies`, and read the verdict from the access log.
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple
from urllib.parse import urlsplit

import pytest
from tornado import web
from tornado.httputil import HTTPHeaders

from synthorg_tornado.config import load_config
from synthorg_tornado.handlers.base import LabHandlerMixin
from synthorg_tornado.handlers.decorators import allow_anonymous
from synthorg_tornado.serving.proxies import ClientAddress, TrustedProxies
from tests.servers import Response, ServerProcess, http_request, write_config

LOCAL_PROXY = TrustedProxies([ipaddress.ip_network("127.0.0.1/32")])
TWO_PROXIES = TrustedProxies([ipaddress.ip_network("127.0.0.1/32"), ipaddress.ip_network("10.0.0.0/8")])
IPV6_PROXIES = TrustedProxies([ipaddress.ip_network("::1/128"), ipaddress.ip_network("2001:db8:ffff::/48")])


def headers(*pairs: tuple[str, str]) -> HTTPHeaders:
    """Real Tornado headers; a name given twice becomes two header lines, as on the wire."""
    result = HTTPHeaders()
    for name, value in pairs:
        result.add(name, value)
    return result


# --- Untrusted peers: nothing they send changes the verdict ----------------------------------

SPOOFING_HEADERS = [
    pytest.param(("X-Forwarded-For", "6.6.6.6"), id="x-forwarded-for"),
    pytest.param(("X-Real-IP", "6.6.6.6"), id="x-real-ip"),
    pytest.param(("X-Forwarded-Proto", "https"), id="x-forwarded-proto"),
    pytest.param(("X-Scheme", "https"), id="x-scheme"),
    pytest.param(("Forwarded", "for=6.6.6.6;proto=https"), id="forwarded"),
]


@pytest.mark.parametrize("header", SPOOFING_HEADERS)
def test_untrusted_peer_cannot_spoof_ip_or_scheme(header: tuple[str, str]) -> None:
    resolved = LOCAL_PROXY.resolve("192.0.2.10", "http", headers(header))
    assert resolved == ClientAddress("192.0.2.10", "http", None)


def test_untrusted_peer_with_every_forwarded_header_at_once_is_still_itself() -> None:
    spoofed = headers(
        ("X-Forwarded-For", "6.6.6.6"),
        ("X-Real-IP", "6.6.6.7"),
        ("X-Forwarded-Proto", "https"),
        ("X-Scheme", "https"),
        ("Forwarded", "for=6.6.6.8;proto=https"),
    )
    assert LOCAL_PROXY.resolve("192.0.2.10", "http", spoofed) == ClientAddress("192.0.2.10", "http", None)


def test_no_trusted_proxies_configured_means_headers_are_ignored_even_from_loopback() -> None:
    resolved = TrustedProxies(()).resolve("127.0.0.1", "http", headers(("X-Forwarded-For", "6.6.6.6")))
    assert resolved == ClientAddress("127.0.0.1", "http", None)


def test_untrusted_https_peer_keeps_https_whatever_it_claims() -> None:
    resolved = LOCAL_PROXY.resolve("192.0.2.10", "https", headers(("X-Forwarded-Proto", "http")))
    assert resolved.scheme == "https"


# --- X-Forwarded-For from a trusted proxy -----------------------------------------------------


def test_trusted_peer_gives_the_forwarded_client_and_names_itself_as_the_proxy() -> None:
    resolved = LOCAL_PROXY.resolve("127.0.0.1", "http", headers(("X-Forwarded-For", "203.0.113.7")))
    assert resolved == ClientAddress("203.0.113.7", "http", "127.0.0.1")


def test_client_supplied_left_entry_is_ignored_in_favour_of_the_right_most_untrusted() -> None:
    # nginx appends the address it saw to whatever the client sent: only that last entry is proof.
    resolved = LOCAL_PROXY.resolve("127.0.0.1", "http", headers(("X-Forwarded-For", "6.6.6.6, 203.0.113.7")))
    assert resolved.ip == "203.0.113.7"


def test_chain_through_two_trusted_proxies_skips_both() -> None:
    chain = headers(("X-Forwarded-For", "6.6.6.6, 203.0.113.7, 10.1.2.3"))
    resolved = TWO_PROXIES.resolve("127.0.0.1", "http", chain)
    assert resolved == ClientAddress("203.0.113.7", "http", "127.0.0.1")


def test_when_every_entry_is_trusted_the_farthest_hop_is_the_client() -> None:
    chain = headers(("X-Forwarded-For", "10.0.0.5, 10.0.0.6"))
    assert TWO_PROXIES.resolve("127.0.0.1", "http", chain).ip == "10.0.0.5"


@pytest.mark.parametrize(
    ("chain", "expected"),
    [
        pytest.param("203.0.113.7, not-an-ip", "127.0.0.1", id="garbage-next-to-the-peer"),
        pytest.param("203.0.113.7, <script>, 10.0.0.2", "10.0.0.2", id="garbage-behind-a-trusted-hop"),
        pytest.param("999.1.1.1", "127.0.0.1", id="out-of-range-octet"),
        pytest.param("unknown, 10.0.0.2", "10.0.0.2", id="unknown-keyword"),
    ],
)
def test_malformed_entry_stops_at_the_nearest_trusted_hop_never_the_garbage(
    chain: str, expected: str
) -> None:
    resolved = TWO_PROXIES.resolve("127.0.0.1", "http", headers(("X-Forwarded-For", chain)))
    assert resolved.ip == expected


def test_several_x_forwarded_for_lines_form_one_chain_in_order() -> None:
    lines = headers(("X-Forwarded-For", "6.6.6.6"), ("X-Forwarded-For", "203.0.113.7, 10.0.0.9"))
    assert TWO_PROXIES.resolve("127.0.0.1", "http", lines).ip == "203.0.113.7"


def test_port_on_a_forwarded_ipv4_entry_is_dropped() -> None:
    resolved = LOCAL_PROXY.resolve("127.0.0.1", "http", headers(("X-Forwarded-For", "203.0.113.7:51234")))
    assert resolved.ip == "203.0.113.7"


# --- X-Real-IP --------------------------------------------------------------------------------


def test_x_real_ip_is_used_when_there_is_no_x_forwarded_for() -> None:
    resolved = LOCAL_PROXY.resolve("127.0.0.1", "http", headers(("X-Real-IP", "203.0.113.7")))
    assert resolved == ClientAddress("203.0.113.7", "http", "127.0.0.1")


def test_x_forwarded_for_wins_over_x_real_ip() -> None:
    both = headers(("X-Real-IP", "198.51.100.1"), ("X-Forwarded-For", "203.0.113.7"))
    assert LOCAL_PROXY.resolve("127.0.0.1", "http", both).ip == "203.0.113.7"


def test_malformed_x_real_ip_falls_back_to_the_proxy_itself() -> None:
    resolved = LOCAL_PROXY.resolve("127.0.0.1", "http", headers(("X-Real-IP", "localhost")))
    assert resolved.ip == "127.0.0.1"


def test_trusted_peer_without_forwarded_headers_is_the_client() -> None:
    assert LOCAL_PROXY.resolve("127.0.0.1", "http", headers()) == ClientAddress(
        "127.0.0.1", "http", "127.0.0.1"
    )


# --- RFC 7239 Forwarded -----------------------------------------------------------------------


def test_forwarded_for_and_proto_are_honoured_from_a_trusted_proxy() -> None:
    forwarded = headers(("Forwarded", "for=203.0.113.7;proto=https;by=127.0.0.1"))
    assert LOCAL_PROXY.resolve("127.0.0.1", "http", forwarded) == ClientAddress(
        "203.0.113.7", "https", "127.0.0.1"
    )


def test_forwarded_quoted_ipv6_with_port_is_unwrapped() -> None:
    forwarded = headers(("Forwarded", 'for="[2001:db8:cafe::17]:4711";proto=https'))
    resolved = LOCAL_PROXY.resolve("127.0.0.1", "http", forwarded)
    assert resolved == ClientAddress("2001:db8:cafe::17", "https", "127.0.0.1")


def test_forwarded_parameter_names_are_case_insensitive() -> None:
    forwarded = headers(("Forwarded", "For=203.0.113.7;Proto=https"))
    assert LOCAL_PROXY.resolve("127.0.0.1", "http", forwarded) == ClientAddress(
        "203.0.113.7", "https", "127.0.0.1"
    )


def test_forwarded_elements_take_the_right_most_untrusted_for() -> None:
    forwarded = headers(("Forwarded", "for=6.6.6.6, for=203.0.113.7"), ("Forwarded", "for=10.0.0.3"))
    assert TWO_PROXIES.resolve("127.0.0.1", "http", forwarded).ip == "203.0.113.7"


def test_forwarded_obfuscated_identifier_is_never_the_client_ip() -> None:
    forwarded = headers(("Forwarded", "for=_hidden;proto=https"))
    assert LOCAL_PROXY.resolve("127.0.0.1", "http", forwarded).ip == "127.0.0.1"


def test_forwarded_proto_in_a_client_written_element_is_ignored() -> None:
    # The client prepends its own element; the trusted proxy appends one with `for` only. The
    # client's `proto=https` was never vouched for by anyone we trust.
    forwarded = headers(("Forwarded", "for=6.6.6.6;proto=https"), ("Forwarded", "for=203.0.113.7"))
    assert LOCAL_PROXY.resolve("127.0.0.1", "http", forwarded) == ClientAddress(
        "203.0.113.7", "http", "127.0.0.1"
    )


def test_forwarded_element_without_for_from_the_proxy_hides_client_written_for() -> None:
    # A proxy that appends only `proto` vouches for no address: the client's `for` to its left
    # must not become the client IP.
    forwarded = headers(("Forwarded", "for=6.6.6.6"), ("Forwarded", "proto=https"))
    assert LOCAL_PROXY.resolve("127.0.0.1", "http", forwarded) == ClientAddress(
        "127.0.0.1", "https", "127.0.0.1"
    )


def test_forwarded_proto_of_the_client_hop_wins_over_inner_hops() -> None:
    # Edge proxy (10.0.0.3) took HTTPS from the client; the inner hop to us is plain HTTP.
    forwarded = headers(("Forwarded", "for=203.0.113.7;proto=https, for=10.0.0.3;proto=http"))
    assert TWO_PROXIES.resolve("127.0.0.1", "http", forwarded) == ClientAddress(
        "203.0.113.7", "https", "127.0.0.1"
    )


def test_x_forwarded_for_wins_over_forwarded_for() -> None:
    both = headers(("Forwarded", "for=198.51.100.1"), ("X-Forwarded-For", "203.0.113.7"))
    assert LOCAL_PROXY.resolve("127.0.0.1", "http", both).ip == "203.0.113.7"


# --- Scheme -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        pytest.param(("X-Forwarded-Proto", "https"), "https", id="x-forwarded-proto"),
        pytest.param(("X-Forwarded-Proto", "HTTPS"), "https", id="upper-case"),
        pytest.param(("X-Scheme", "https"), "https", id="x-scheme"),
        pytest.param(("X-Forwarded-Proto", "http, https"), "https", id="last-value-from-nearest-proxy"),
        pytest.param(("X-Forwarded-Proto", "ftp"), "http", id="ftp-rejected"),
        pytest.param(("X-Forwarded-Proto", "javascript"), "http", id="nonsense-rejected"),
        pytest.param(("X-Scheme", "wss"), "http", id="wss-rejected"),
        pytest.param(("Forwarded", "proto=gopher"), "http", id="forwarded-proto-rejected"),
    ],
)
def test_only_http_or_https_is_accepted_as_the_scheme(header: tuple[str, str], expected: str) -> None:
    assert LOCAL_PROXY.resolve("127.0.0.1", "http", headers(header)).scheme == expected


def test_trusted_proxy_without_proto_header_keeps_the_connection_scheme() -> None:
    resolved = LOCAL_PROXY.resolve("127.0.0.1", "https", headers(("X-Forwarded-For", "203.0.113.7")))
    assert resolved.scheme == "https"


# --- IPv6 -------------------------------------------------------------------------------------


def test_ipv6_trusted_networks_cover_peer_and_chain() -> None:
    chain = headers(("X-Forwarded-For", "2001:db8::66, 2001:db8::7, 2001:db8:ffff::2"))
    resolved = IPV6_PROXIES.resolve("::1", "http", chain)
    assert resolved == ClientAddress("2001:db8::7", "http", "::1")


def test_ipv6_entry_in_brackets_with_port_is_unwrapped() -> None:
    resolved = IPV6_PROXIES.resolve("::1", "http", headers(("X-Forwarded-For", "[2001:db8::7]:443")))
    assert resolved.ip == "2001:db8::7"


def test_ipv6_peer_outside_the_trusted_networks_is_ignored() -> None:
    resolved = IPV6_PROXIES.resolve("2001:db8::1", "http", headers(("X-Forwarded-For", "6.6.6.6")))
    assert resolved == ClientAddress("2001:db8::1", "http", None)


def test_ipv4_peer_is_not_trusted_by_ipv6_networks() -> None:
    resolved = IPV6_PROXIES.resolve("127.0.0.1", "http", headers(("X-Forwarded-For", "6.6.6.6")))
    assert resolved == ClientAddress("127.0.0.1", "http", None)


# --- End to end: real servers, the access log tells what they believed ------------------------


class Servers(NamedTuple):
    trusted: ServerProcess
    untrusted: ServerProcess


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    """Two servers on SQLite: one trusts 127.0.0.1 as a proxy, the other trusts nobody."""
    started: list[ServerProcess] = []
    try:
        for name, server_section in (("trusted", {"trusted_proxies": ["127.0.0.1"]}), ("untrusted", {})):
            directory = tmp_path_factory.mktemp(name)
            config = write_config(
                directory, f"sqlite+aiosqlite:///{directory / 'synthorg.db'}", server=server_section
            )
            started.append(ServerProcess(config).start())
        yield Servers(*started)
    finally:
        for server in started:
            server.kill()


SPOOF = {"X-Forwarded-For": "6.6.6.6", "X-Forwarded-Proto": "https"}


def access_line(server: ServerProcess, request_id: str) -> re.Match:
    return server.wait_for_log(
        rf"GET /api/v1/health (\d+) \S+ms client=(\S+) scheme=(\S+) user=\S+ request_id={request_id}\b"
    )


def get_health(server: ServerProcess, extra_headers: dict[str, str]) -> tuple[Response, str]:
    request_id = uuid.uuid4().hex
    reply = http_request(server.url + "api/v1/health", headers={**extra_headers, "X-Request-ID": request_id})
    assert reply.status == 200
    return reply, request_id


def test_direct_client_cannot_spoof_ip_or_scheme(servers: Servers) -> None:
    reply, request_id = get_health(servers.untrusted, SPOOF)
    line = access_line(servers.untrusted, request_id)
    assert (line.group(2), line.group(3)) == ("127.0.0.1", "http")
    assert "Strict-Transport-Security" not in reply.headers


def test_request_through_trusted_proxy_is_logged_with_forwarded_client_and_scheme(servers: Servers) -> None:
    reply, request_id = get_health(servers.trusted, SPOOF)
    line = access_line(servers.trusted, request_id)
    assert (line.group(2), line.group(3)) == ("6.6.6.6", "https")
    assert reply.headers["Strict-Transport-Security"].startswith("max-age=")


def test_plain_request_through_trusted_proxy_gets_no_hsts(servers: Servers) -> None:
    reply, request_id = get_health(servers.trusted, {"X-Forwarded-For": "6.6.6.6"})
    line = access_line(servers.trusted, request_id)
    assert (line.group(2), line.group(3)) == ("6.6.6.6", "http")
    assert "Strict-Transport-Security" not in reply.headers


def test_keep_alive_connection_restores_the_real_peer_for_each_request(servers: Servers) -> None:
    address = urlsplit(servers.trusted.url)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=10)
    try:
        seen = []
        for extra in (SPOOF, {}, {"X-Forwarded-For": "203.0.113.9"}):
            request_id = uuid.uuid4().hex
            connection.request("GET", "/api/v1/health", headers={**extra, "X-Request-ID": request_id})
            reply = connection.getresponse()
            reply.read()
            assert reply.status == 200
            if seen:
                assert connection.sock is seen[-1][0], "the connection was not reused"
            seen.append((connection.sock, request_id))
    finally:
        connection.close()
    verdicts = [access_line(servers.trusted, request_id).group(2, 3) for _, request_id in seen]
    assert verdicts == [("6.6.6.6", "https"), ("127.0.0.1", "http"), ("203.0.113.9", "http")]


# --- In process: handlers can tell that a request came through a proxy -----------------------


class ViaProxyHandler(LabHandlerMixin, web.RequestHandler):
    """Reports what a handler sees; the DNS-rebinding exemption relies on `via_proxy`."""

    @allow_anonymous
    async def get(self) -> None:
        self.write(
            {"ip": self.request.remote_ip, "scheme": self.request.protocol, "via_proxy": self.via_proxy}
        )


class TestHandlerView:
    @pytest.fixture
    def app(self, tmp_path: Path, sqlite_url: str) -> web.Application:
        config = load_config(
            write_config(tmp_path, sqlite_url, server={"trusted_proxies": ["127.0.0.1"]}), environ={}
        )
        return web.Application([(r"/who", ViaProxyHandler)], config=config)

    @pytest.mark.gen_test
    async def test_handler_sees_the_forwarded_client_and_scheme(self, http_client, base_url) -> None:
        response = await http_client.fetch(base_url.replace("localhost", "127.0.0.1") + "/who", headers=SPOOF)
        body = json.loads(response.body)
        assert (body["ip"], body["scheme"]) == ("6.6.6.6", "https")

    @pytest.mark.gen_test
    async def test_handler_sees_the_trusted_proxy_it_came_through(self, http_client, base_url) -> None:
        response = await http_client.fetch(base_url.replace("localhost", "127.0.0.1") + "/who", headers=SPOOF)
        assert json.loads(response.body)["via_proxy"] == "127.0.0.1"
