"""The shipped nginx config in front of a real lab server (SPEC section 7, deploy/nginx/).

nginx runs from `deploy/nginx/synthorg.conf` with a throwaway self-signed certificate; only ports,
names and paths differ (tests/nginx.py). The lab server trusts 127.0.0.1, the address nginx
connects from. Clients connect from 127.0.0.2, so "the client's real IP" is an address that
neither nginx nor the lab could mistake for their own.
"""

from __future__ import annotations

import http.client
import re
import socket
import ssl
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import pytest
from tornado.httpclient import HTTPClientError
from tornado.websocket import WebSocketClientConnection

from tests.client import Client
from tests.nginx import NginxServer
from tests.realtime import connect, receive_until, request
from tests.servers import USER_PASSWORD, Lab, ServerProcess, make_certificate, write_config

CLIENT_IP = "127.0.0.2"
SPOOFED = {
    "X-Forwarded-For": "6.6.6.6",
    "X-Real-IP": "6.6.6.7",
    "X-Forwarded-Proto": "http",
    "X-Scheme": "http",
    "Forwarded": "for=6.6.6.8;proto=http",
}
HSTS = "max-age=31536000; includeSubDomains"


def trusting(certificate: Path) -> ssl.SSLContext:
    """A client context that trusts exactly the test certificate (host name checked)."""
    return ssl.create_default_context(cafile=str(certificate))


class Deployment(NamedTuple):
    lab: Lab
    nginx: NginxServer
    certificate: Path

    @property
    def tls(self) -> ssl.SSLContext:
        return trusting(self.certificate)

    @property
    def url(self) -> str:
        """The lab as browsers see it: through nginx over HTTPS, under the base URL."""
        return self.nginx.https_url + urlsplit(self.lab.url).path.lstrip("/")

    def client(self, **kwargs: Any) -> Client:
        return Client(self.url, context=self.tls, source_address=CLIENT_IP, **kwargs)

    def login_cookie(self, **kwargs: Any) -> tuple[Client, http.client.HTTPMessage]:
        user = self.lab.create_user()
        browser = self.client(**kwargs)
        reply = browser.post("/api/v1/auth/login", {"username": user["username"], "password": USER_PASSWORD})
        assert reply.status == 200, reply
        return browser, reply.headers


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_certificate(tmp_path_factory.mktemp("nginx-tls"), "localhost")


def deploy(directory: Path, certificate: tuple[Path, Path], **server: Any) -> Iterator[Deployment]:
    config = write_config(
        directory / "lab",
        f"sqlite+aiosqlite:///{directory / 'lab' / 'synthorg.db'}",
        server={"trusted_proxies": ["127.0.0.1"], **server},
    )
    backend = ServerProcess(config).start()
    nginx: NginxServer | None = None
    try:
        lab = Lab(backend)
        nginx = NginxServer(
            directory / "nginx",
            upstream=f"127.0.0.1:{backend.port}",
            certificate=certificate[0],
            key=certificate[1],
            base_url=server.get("base_url", "/"),
        ).start()
        yield Deployment(lab, nginx, certificate[0])
    finally:
        if nginx is not None:
            nginx.stop()
        backend.terminate()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, certificate) -> Iterator[Deployment]:
    yield from deploy(tmp_path_factory.mktemp("site"), certificate)


@pytest.fixture(scope="module")
def sub_path_site(tmp_path_factory: pytest.TempPathFactory, certificate) -> Iterator[Deployment]:
    yield from deploy(tmp_path_factory.mktemp("sub-path-site"), certificate, base_url="/lab/")


async def connect_wss(
    deployment: Deployment,
    token: str | None = None,
    cookies: dict[str, str] | None = None,
    origin: str | None = None,
) -> WebSocketClientConnection:
    """tests/realtime.connect, over TLS through nginx (and from the client address)."""
    return await connect(
        deployment.url,
        token=token,
        cookies=cookies,
        origin=origin,
        ssl_options=deployment.tls,
        network_interface=CLIENT_IP,
    )


def set_cookies(headers: http.client.HTTPMessage) -> dict[str, str]:
    """Raw Set-Cookie headers by cookie name, attributes included."""
    return {header.split("=", 1)[0]: header for header in headers.get_all("Set-Cookie") or []}


def own_origin(deployment: Deployment) -> str:
    return f"https://{deployment.nginx.server_name}:{deployment.nginx.https_port}"


def access_line(server: ServerProcess, path: str, request_id: str) -> re.Match:
    """What the lab server believed about a request: (status, client IP, scheme)."""
    return server.wait_for_log(
        rf"{re.escape(path)} (\d+) \S+ms client=(\S+) scheme=(\S+) user=\S+ request_id={request_id}\b"
    )


# --- The configuration itself -----------------------------------------------------------------


def test_nginx_accepts_the_shipped_config(site: Deployment) -> None:
    result = site.nginx.check()
    assert result.returncode == 0, result.stderr
    assert "syntax is ok" in result.stderr and "test is successful" in result.stderr
    # Warnings (deprecated directives, duplicate settings) would show up here.
    assert "[warn]" not in result.stderr and "[emerg]" not in result.stderr


def test_plain_http_redirects_to_the_same_url_over_https(site: Deployment) -> None:
    plain = Client(site.nginx.http_url, source_address=CLIENT_IP)
    reply = plain.get("/api/v1/me?x=1")
    assert reply.status == 301
    assert reply.headers["Location"] == f"{site.nginx.https_url}api/v1/me?x=1"


def test_certificate_renewal_challenge_is_served_over_plain_http(site: Deployment) -> None:
    challenge = site.nginx.webroot / ".well-known" / "acme-challenge"
    challenge.mkdir(parents=True, exist_ok=True)
    (challenge / "token-123").write_text("token-123.thumbprint")
    reply = Client(site.nginx.http_url).get("/.well-known/acme-challenge/token-123")
    assert reply.status == 200 and reply.body == b"token-123.thumbprint"


def test_tls_1_2_with_a_modern_cipher_and_tls_1_3_are_accepted(site: Deployment) -> None:
    for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        context = site.tls
        context.minimum_version = context.maximum_version = version
        connection = http.client.HTTPSConnection(
            "localhost", site.nginx.https_port, timeout=10, context=context
        )
        try:
            connection.request("GET", "/api/v1/health")
            reply = connection.getresponse()
            reply.read()
            assert reply.status == 200
            assert connection.sock.version() == version.name.replace("v1_", "v1.")
        finally:
            connection.close()


def test_tls_1_1_is_refused(site: Deployment) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # naming TLSv1_1 warns, rightly
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        try:
            context.minimum_version = context.maximum_version = ssl.TLSVersion.TLSv1_1
            context.set_ciphers("DEFAULT:@SECLEVEL=0")  # OpenSSL 3 speaks TLS 1.1 only at level 0
        except (ValueError, ssl.SSLError) as exc:
            pytest.skip(f"this OpenSSL cannot build a TLS 1.1 client: {exc}")
    connection = http.client.HTTPSConnection("localhost", site.nginx.https_port, timeout=10, context=context)
    try:
        connection.connect()
    except ssl.SSLError as exc:
        if exc.reason in ("NO_PROTOCOLS_AVAILABLE", "NO_CIPHERS_AVAILABLE"):
            pytest.skip(f"this OpenSSL refuses to offer TLS 1.1 itself ({exc.reason})")
        assert exc.reason in ("TLSV1_ALERT_PROTOCOL_VERSION", "SSLV3_ALERT_HANDSHAKE_FAILURE"), exc
    else:
        pytest.fail(f"nginx completed a {connection.sock.version()} handshake")
    finally:
        connection.close()


def test_tls_1_2_with_a_legacy_cbc_cipher_is_refused(site: Deployment) -> None:
    context = site.tls
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers("ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA384")
    connection = http.client.HTTPSConnection("localhost", site.nginx.https_port, timeout=10, context=context)
    try:
        with pytest.raises(ssl.SSLError, match=r"HANDSHAKE_FAILURE|NO_SHARED_CIPHER"):
            connection.connect()
    finally:
        connection.close()


def test_unknown_host_names_are_dropped_by_nginx(site: Deployment) -> None:
    # The lab server skips its Host check for requests from a trusted proxy, so this is the
    # protection against DNS rebinding behind nginx.
    with pytest.raises(http.client.RemoteDisconnected):
        site.client(headers={"Host": "rebind.attacker.example"}).get("/api/v1/health")
    with pytest.raises(http.client.RemoteDisconnected):
        Client(site.nginx.http_url, headers={"Host": "rebind.attacker.example"}).get("/")
    # A client that connects by IP address sends no server name: its handshake is refused.
    no_sni = site.tls
    no_sni.check_hostname = False
    with pytest.raises(ssl.SSLError, match=r"UNRECOGNIZED_NAME|HANDSHAKE_FAILURE|INTERNAL_ERROR"):
        Client(f"https://127.0.0.1:{site.nginx.https_port}/", context=no_sni).get("/api/v1/health")


# --- Through nginx over HTTPS -----------------------------------------------------------------


def test_login_through_nginx_sets_secure_cookies_and_one_hsts_header(site: Deployment) -> None:
    browser, headers = site.login_cookie()
    cookies = set_cookies(headers)
    session, xsrf = cookies["synthorg_session"], cookies["_xsrf"]
    assert "Secure" in session and "HttpOnly" in session and "Path=/;" in session
    assert "Secure" in xsrf
    assert headers.get_all("Strict-Transport-Security") == [HSTS]
    assert browser.get("/api/v1/me").json()["auth"] == "session"


def test_session_shows_the_real_client_ip_whatever_the_client_claims(site: Deployment) -> None:
    browser, headers = site.login_cookie(headers=SPOOFED)
    # X-Forwarded-Proto/X-Scheme "http" from the client did not downgrade the scheme.
    assert "Secure" in set_cookies(headers)["synthorg_session"]
    sessions = browser.get("/api/v1/auth/sessions").json()
    current = next(session for session in sessions if session["is_current"])
    assert current["ip_address"] == CLIENT_IP
    assert not any(session["ip_address"].startswith("6.6.6.") for session in sessions)

    request_id = uuid.uuid4().hex
    assert browser.get("/api/v1/health", headers={"X-Request-ID": request_id}).status == 200
    line = access_line(site.lab.server, "GET /api/v1/health", request_id)
    assert line.group(2, 3) == (CLIENT_IP, "https")


def test_metrics_are_not_served_on_the_public_site(site: Deployment) -> None:
    reply = site.client().get("/metrics")
    assert reply.status == 404 and b"synthorg_http_requests_total" not in reply.body
    # Even past nginx's rule, a relayed request from loopback is not a trusted scraper.
    relayed = site.lab.client(headers={"X-Forwarded-For": "198.51.100.7"}).get("/metrics")
    assert relayed.status == 401


def test_a_restarting_backend_shows_the_maintenance_page(
    tmp_path: Path, certificate: tuple[Path, Path]
) -> None:
    # Nothing listens upstream, as during a restart: nginx answers 502 with the shipped page. The
    # port stays bound (never listening) for the whole test, so no other process can take it.
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        upstream = f"127.0.0.1:{held.getsockname()[1]}"
        nginx = NginxServer(
            tmp_path, upstream=upstream, certificate=certificate[0], key=certificate[1]
        ).start()
        try:
            reply = Client(nginx.https_url, context=trusting(certificate[0])).get("/sessions")
        finally:
            nginx.stop()
    assert reply.status == 502
    assert b"Back in a moment" in reply.body
    assert reply.headers.get_all("Strict-Transport-Security") == [HSTS]


def test_head_probes_of_health_and_liveness_pass_through_nginx(site: Deployment) -> None:
    for path in ("/api/v1/health", "/api/v1/health/live"):
        reply = site.client().request("HEAD", path)
        assert reply.status == 200, path
        assert reply.body == b""


def test_xsrf_protected_write_with_the_cookie_works_through_nginx(site: Deployment) -> None:
    browser, _ = site.login_cookie()
    refused = browser.patch("/api/v1/me", {"display_name": "Through nginx"})
    assert refused.status == 403
    reply = browser.patch("/api/v1/me", {"display_name": "Through nginx"}, xsrf=True)
    assert reply.status == 200 and reply.json()["display_name"] == "Through nginx"


def test_nginx_error_pages_also_carry_hsts(site: Deployment) -> None:
    # nginx answers an oversized body itself, before the lab sees it (client_max_body_size 1m).
    reply = site.client().post("/api/v1/auth/login", raw=b"x" * (1024 * 1024 + 1))
    assert reply.status == 413
    assert reply.headers.get_all("Strict-Transport-Security") == [HSTS]


@pytest.mark.gen_test(timeout=30)
async def test_wss_through_nginx_subscribes_and_receives_events(site: Deployment) -> None:
    socket = await connect_wss(site, token=site.lab.admin.token)
    try:
        reply = await request(socket, {"action": "subscribe", "channels": ["lab"]})
        assert "lab" in reply["channels"] and reply["denied"] == []
        marker = uuid.uuid4().hex
        published = site.lab.admin.post(
            "/api/v1/events", {"channel": "lab", "event_type": "nginx.test", "payload": {"marker": marker}}
        )
        assert published.status == 202
        event = await receive_until(socket, lambda message: message.get("event_type") == "nginx.test")
        assert event["channel"] == "lab" and event["payload"] == {"marker": marker}
    finally:
        socket.close()


@pytest.mark.gen_test(timeout=30)
async def test_cookie_websocket_from_the_lab_origin_is_accepted(site: Deployment) -> None:
    browser, _ = site.login_cookie()
    socket = await connect_wss(site, cookies=browser.cookies, origin=own_origin(site))
    try:
        assert await request(socket, {"action": "ping"}) == {"action": "pong"}
    finally:
        socket.close()


@pytest.mark.gen_test(timeout=30)
async def test_cookie_websocket_from_a_foreign_origin_is_refused(site: Deployment) -> None:
    browser, _ = site.login_cookie()
    with pytest.raises(HTTPClientError) as refused:
        socket = await connect_wss(site, cookies=browser.cookies, origin="https://evil.example")
        socket.close()
    assert refused.value.code == 403


# --- Straight to the backend, bypassing nginx -------------------------------------------------


def test_direct_client_cannot_spoof_ip_or_scheme_past_nginx(site: Deployment) -> None:
    direct = Client(site.lab.url, source_address=CLIENT_IP, headers={**SPOOFED, "X-Forwarded-Proto": "https"})
    user = site.lab.create_user()
    reply = direct.post("/api/v1/auth/login", {"username": user["username"], "password": USER_PASSWORD})
    assert reply.status == 200
    assert "Secure" not in reply.cookies()["synthorg_session"]
    assert "Strict-Transport-Security" not in reply.headers
    sessions = direct.get("/api/v1/auth/sessions").json()
    assert next(session for session in sessions if session["is_current"])["ip_address"] == CLIENT_IP


# --- Under a sub-path: base_url /lab/ behind `location /lab/` ----------------------------------


def test_sub_path_login_api_and_pages_work_with_cookie_path_lab(sub_path_site: Deployment) -> None:
    assert sub_path_site.url.endswith(f":{sub_path_site.nginx.https_port}/lab/")
    browser, headers = sub_path_site.login_cookie()
    cookies = set_cookies(headers)
    assert "Path=/lab/" in cookies["synthorg_session"] and "Secure" in cookies["synthorg_session"]
    assert "Path=/lab/" in cookies["_xsrf"]
    assert browser.get("/api/v1/me").json()["auth"] == "session"
    assert browser.patch("/api/v1/me", {"display_name": "Sub path"}, xsrf=True).status == 200
    home = browser.get("/")
    assert home.status == 200 and b"<html" in home.body.lower()
    anonymous = sub_path_site.client().get("/")
    assert anonymous.status == 302 and anonymous.headers["Location"].startswith("/lab/login")


def test_sub_path_static_files_are_served(sub_path_site: Deployment) -> None:
    reply = sub_path_site.client().get("/static/style.css")
    assert reply.status == 200 and reply.headers["Content-Type"].startswith("text/css")


def test_outside_the_sub_path_nginx_does_not_reach_the_lab(sub_path_site: Deployment) -> None:
    outside = Client(sub_path_site.nginx.https_url, context=sub_path_site.tls)
    assert outside.get("/api/v1/health").status == 404
    assert outside.get("/api/v1/health").code is None  # nginx's page, not the lab's problem JSON


@pytest.mark.gen_test(timeout=30)
async def test_sub_path_websocket_with_the_cookie_receives_events(sub_path_site: Deployment) -> None:
    browser, _ = sub_path_site.login_cookie()
    socket = await connect_wss(sub_path_site, cookies=browser.cookies, origin=own_origin(sub_path_site))
    try:
        reply = await request(socket, {"action": "subscribe", "channels": ["lab"]})
        assert "lab" in reply["channels"]
        published = sub_path_site.lab.admin.post(
            "/api/v1/events", {"channel": "lab", "event_type": "sub.path", "payload": {"n": 1}}
        )
        assert published.status == 202
        event = await receive_until(socket, lambda message: message.get("event_type") == "sub.path")
        assert event["payload"] == {"n": 1}
    finally:
        socket.close()
