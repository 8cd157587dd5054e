"""Native TLS (SPEC sections 3 and 7): HTTPS with HSTS, TLS 1.2 or newer, client certificates
when `ssl_ca_certs` is set, and SIGHUP reloading the certificate without dropping connections.

Every test talks to a real `synthorg-tornado serve` on SQLite with certificates made by the
openssl CLI. Servers that the tests only read are shared by the module; the reload tests change
their server's files, so each of them starts its own.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import shutil
import signal
import socket
import ssl
import urllib.error
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple
from urllib.parse import urlsplit

import pytest
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

from tests.client import Client
from tests.servers import ServerProcess, http_request, make_certificate, setup_token, write_config

HEALTH = "api/v1/health"
# With TLS 1.3 the server judges the client certificate after the client has finished its
# handshake, so a refusal can surface on the first write or read rather than in connect().
REFUSED = (ssl.SSLError, ConnectionResetError, BrokenPipeError, urllib.error.URLError)


class Pki(NamedTuple):
    server: tuple[Path, Path]
    client_ca: tuple[Path, Path]
    client: tuple[Path, Path]
    stranger: tuple[Path, Path]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    client_ca = make_certificate(directory, "client-ca")
    return Pki(
        server=make_certificate(directory, "server"),
        client_ca=client_ca,
        client=make_certificate(directory, "alice", ca=client_ca),
        # Valid, but signed by nobody the server trusts.
        stranger=make_certificate(directory, "mallory"),
    )


def start_server(directory: Path, certificate: tuple[Path, Path], **server: object) -> ServerProcess:
    config = write_config(
        directory,
        f"sqlite+aiosqlite:///{directory / 'synthorg.db'}",
        server={"ssl_certfile": str(certificate[0]), "ssl_keyfile": str(certificate[1]), **server},
    )
    return ServerProcess(config).start()


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[ServerProcess]:
    server = start_server(tmp_path_factory.mktemp("tls"), pki.server)
    yield server
    server.kill()


@pytest.fixture(scope="module")
def mtls_server(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[ServerProcess]:
    server = start_server(tmp_path_factory.mktemp("mtls"), pki.server, ssl_ca_certs=str(pki.client_ca[0]))
    yield server
    server.kill()


@pytest.fixture
def own_tls_server(tmp_path: Path, pki: Pki) -> Iterator[tuple[ServerProcess, tuple[Path, Path]]]:
    """A server of its own whose certificate files the test may replace."""
    live = (tmp_path / "live.crt", tmp_path / "live.key")
    shutil.copy(pki.server[0], live[0])
    shutil.copy(pki.server[1], live[1])
    server = start_server(tmp_path, live)
    yield server, live
    server.kill()


def trusting(*certificates: Path, client: tuple[Path, Path] | None = None) -> ssl.SSLContext:
    """A client context that verifies the server against exactly these certificates."""
    context = ssl.create_default_context()
    for certificate in certificates:
        context.load_verify_locations(cafile=str(certificate))
    if client is not None:
        context.load_cert_chain(str(client[0]), str(client[1]))
    return context


def address(server: ServerProcess) -> tuple[str, int]:
    parts = urlsplit(server.url)
    return parts.hostname or "127.0.0.1", server.port


def served_certificate(server: ServerProcess, context: ssl.SSLContext) -> bytes:
    """The DER certificate a brand-new connection is handshaken with."""
    with (
        socket.create_connection(address(server), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        certificate = tls.getpeercert(binary_form=True)
    assert certificate is not None
    return certificate


def der(certificate: Path) -> bytes:
    return ssl.PEM_cert_to_DER_cert(certificate.read_text())


def get_health(connection: http.client.HTTPConnection) -> int:
    connection.request("GET", "/" + HEALTH)
    reply = connection.getresponse()
    reply.read()
    return reply.status


# --- HTTPS ------------------------------------------------------------------------------------


def test_native_tls_serves_health_over_https_with_hsts(tls_server: ServerProcess, pki: Pki) -> None:
    assert tls_server.url.startswith("https://")
    reply = http_request(tls_server.url + HEALTH, context=trusting(pki.server[0]))
    assert reply.status == 200
    assert reply.json()["database"] == "ok"
    assert reply.headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"


def test_plain_http_to_the_tls_port_fails_and_the_server_keeps_serving(
    tls_server: ServerProcess, pki: Pki
) -> None:
    connection = http.client.HTTPConnection(*address(tls_server), timeout=10)
    try:
        with pytest.raises((http.client.HTTPException, ConnectionError)):
            get_health(connection)
    finally:
        connection.close()
    assert http_request(tls_server.url + HEALTH, context=trusting(pki.server[0])).status == 200


def test_tls_1_2_is_accepted(tls_server: ServerProcess, pki: Pki) -> None:
    context = trusting(pki.server[0])
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    with (
        socket.create_connection(address(tls_server), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        assert tls.version() == "TLSv1.2"


def test_tls_1_1_and_lower_are_refused_by_the_server(tls_server: ServerProcess) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # naming TLSv1/TLSv1_1 warns, rightly
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        try:
            context.minimum_version = ssl.TLSVersion.TLSv1
            context.maximum_version = ssl.TLSVersion.TLSv1_1
            # OpenSSL 3 only speaks TLS 1.0/1.1 (SHA-1 handshakes) at security level 0.
            context.set_ciphers("DEFAULT:@SECLEVEL=0")
        except (ValueError, ssl.SSLError) as exc:
            pytest.skip(f"this OpenSSL cannot build a TLS 1.1 client, so the server cannot be probed: {exc}")
    with socket.create_connection(address(tls_server), timeout=10) as raw:
        try:
            tls = context.wrap_socket(raw, server_hostname="127.0.0.1")
        except ssl.SSLError as exc:
            if exc.reason in ("NO_PROTOCOLS_AVAILABLE", "NO_CIPHERS_AVAILABLE"):
                pytest.skip(f"this OpenSSL refuses to offer TLS 1.1 itself ({exc.reason}); nothing to probe")
            # The server's protocol_version alert: it read our TLS 1.1 hello and said no.
            assert exc.reason == "TLSV1_ALERT_PROTOCOL_VERSION", exc
        else:
            version = tls.version()
            tls.close()
            pytest.fail(f"the server completed a {version} handshake")


# --- Client certificates (mutual TLS) ---------------------------------------------------------


def test_client_certificate_signed_by_the_configured_ca_gets_200(
    mtls_server: ServerProcess, pki: Pki
) -> None:
    reply = http_request(mtls_server.url + HEALTH, context=trusting(pki.server[0], client=pki.client))
    assert reply.status == 200


@pytest.mark.parametrize("who", ["no-certificate", "certificate-from-another-ca"])
def test_client_without_an_accepted_certificate_is_refused(
    mtls_server: ServerProcess, pki: Pki, who: str
) -> None:
    context = trusting(pki.server[0], client=pki.stranger if who == "certificate-from-another-ca" else None)
    with pytest.raises(REFUSED):
        http_request(mtls_server.url + HEALTH, context=context)


# --- SIGHUP reload ----------------------------------------------------------------------------


def test_sighup_serves_the_new_certificate_to_new_connections_and_keeps_old_ones(
    own_tls_server: tuple[ServerProcess, tuple[Path, Path]], pki: Pki, tmp_path: Path
) -> None:
    server, live = own_tls_server
    renewed = make_certificate(tmp_path / "renewed", "renewed")
    context = trusting(pki.server[0], renewed[0])
    earlier = http.client.HTTPSConnection(*address(server), timeout=10, context=context)
    try:
        assert get_health(earlier) == 200
        earlier_socket = earlier.sock
        assert served_certificate(server, context) == der(pki.server[0])

        shutil.copy(renewed[0], live[0])
        shutil.copy(renewed[1], live[1])
        assert server.process is not None
        server.process.send_signal(signal.SIGHUP)
        server.wait_for_log("TLS certificate reloaded")

        assert served_certificate(server, context) == der(renewed[0])
        # The keep-alive connection from before the reload is the same socket and still answers.
        assert get_health(earlier) == 200
        assert earlier.sock is earlier_socket
        assert earlier.sock.getpeercert(binary_form=True) == der(pki.server[0])
    finally:
        earlier.close()


def test_sighup_with_a_mismatched_key_keeps_serving_the_old_certificate(
    own_tls_server: tuple[ServerProcess, tuple[Path, Path]], pki: Pki, tmp_path: Path
) -> None:
    server, live = own_tls_server
    # An operator copies the renewed certificate but forgets its key.
    shutil.copy(make_certificate(tmp_path / "renewed", "renewed")[0], live[0])
    assert server.process is not None
    server.process.send_signal(signal.SIGHUP)
    server.wait_for_log("TLS certificate reload failed")
    assert served_certificate(server, trusting(pki.server[0])) == der(pki.server[0])
    assert http_request(server.url + HEALTH, context=trusting(pki.server[0])).status == 200


# --- WSS --------------------------------------------------------------------------------------


@pytest.mark.gen_test(timeout=60)
async def test_wss_works_and_an_open_websocket_survives_a_certificate_reload(
    own_tls_server: tuple[ServerProcess, tuple[Path, Path]], pki: Pki, tmp_path: Path
) -> None:
    server, live = own_tls_server
    renewed = make_certificate(tmp_path / "renewed", "renewed")
    context = trusting(pki.server[0], renewed[0])
    setup = Client(server.url, context=context).post(
        "/api/v1/auth/setup",
        {"token": setup_token(server), "username": "admin", "password": "admin-password-1"},
    )
    assert setup.status == 201
    token = setup.json()["token"]

    async def open_socket():  # type: ignore[no-untyped-def]
        request = HTTPRequest(
            server.url.replace("https://", "wss://") + "api/v1/ws",
            headers={"Authorization": f"Bearer {token}"},
            ssl_options=context,
        )
        return await websocket_connect(request)

    async def ping(socket) -> dict:  # type: ignore[no-untyped-def]
        await socket.write_message(json.dumps({"action": "ping"}))
        return json.loads(await asyncio.wait_for(socket.read_message(), 5))

    before = await open_socket()
    assert await ping(before) == {"action": "pong"}
    shutil.copy(renewed[0], live[0])
    shutil.copy(renewed[1], live[1])
    assert server.process is not None
    server.process.send_signal(signal.SIGHUP)
    await asyncio.get_running_loop().run_in_executor(None, server.wait_for_log, "TLS certificate reloaded")
    assert await ping(before) == {"action": "pong"}  # the open socket stays connected
    after = await open_socket()
    assert await ping(after) == {"action": "pong"}
    assert served_certificate(server, context) == der(renewed[0])
    before.close()
    after.close()
