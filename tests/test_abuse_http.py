"""Slow, huge and malformed clients at the HTTP layer: timeouts, the connection cap, EMFILE and
the body limit on every route, all against a real server over raw sockets.

The connection layer does not touch the database, so these servers run on SQLite only.
"""

from __future__ import annotations

import contextlib
import json
import re
import resource
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import ServerProcess, http_request, make_certificate, wait_for, write_config

HALF_SENT = b"GET /api/v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "
CAP = 40


def start_server(directory: Path, **server: object) -> ServerProcess:
    url = f"sqlite+aiosqlite:///{directory / 'synthorg.db'}"
    return ServerProcess(write_config(directory, url, server=server)).start()


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """Short timeouts and a small cap, so that slow clients meet them within a test."""
    server = start_server(
        tmp_path_factory.mktemp("limited"),
        header_timeout_seconds=1.0,
        body_timeout_seconds=1.0,
        keepalive_timeout_seconds=30,
        max_connections=CAP,
    )
    yield server
    assert server.terminate() == 0
    assert "Traceback" not in server.log()


def raw(server: ServerProcess, data: bytes = b"") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    if data:
        sock.sendall(data)
    return sock


def closed_by_server(sock: socket.socket) -> bool:
    """True once the server has closed the connection (EOF or reset), without blocking."""
    sock.setblocking(False)
    try:
        return sock.recv(65536) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def read_response(sock: socket.socket, timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
    """One HTTP response read off a raw socket: status, headers (lower-case names), body."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return status, headers, body


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100.0  # utime + stime, in clock ticks


def rss_kib(pid: int) -> int:
    match = re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    assert match
    return int(match.group(1))


def health_ok(server: ServerProcess) -> bool:
    return http_request(server.url + "api/v1/health", timeout=10).status == 200


def count(pattern: str, server: ServerProcess) -> int:
    return len(re.findall(pattern, server.log()))


# -- slow clients ----------------------------------------------------------------------------


def test_half_sent_request_heads_are_closed_by_the_header_timeout(limited: ServerProcess) -> None:
    slow = [raw(limited, HALF_SENT) for _ in range(5)]
    try:
        wait_for(lambda: all(closed_by_server(sock) for sock in slow), 10, "the header timeout")
    finally:
        for sock in slow:
            sock.close()


def test_an_idle_keepalive_connection_outlives_the_header_timeout(limited: ServerProcess) -> None:
    keepalive = raw(limited, b"GET /api/v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert read_response(keepalive)[0] == 200
    slow = raw(limited, HALF_SENT)  # opened after: the header timeout closes it first
    try:
        wait_for(lambda: closed_by_server(slow), 10, "the header timeout")
        keepalive.setblocking(True)
        keepalive.sendall(b"GET /api/v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert read_response(keepalive)[0] == 200
    finally:
        keepalive.close()
        slow.close()


def test_a_body_that_stops_arriving_is_closed_by_the_body_timeout(limited: ServerProcess) -> None:
    head = b"POST /api/v1/auth/login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    sock = raw(limited, head + b"Content-Length: 100\r\n\r\n{")
    try:
        wait_for(lambda: closed_by_server(sock), 10, "the body timeout")
    finally:
        sock.close()


def test_many_half_sent_requests_meet_the_cap_and_health_still_answers(limited: ServerProcess) -> None:
    pid = limited.process.pid
    before = count(r"connection limit reached", limited)
    slow = [raw(limited, HALF_SENT) for _ in range(3 * CAP)]
    try:
        limited.wait_for_log(r"connection limit reached")
        cpu = cpu_seconds(pid)
        for _ in range(5):
            assert health_ok(limited)  # each health connection sheds the oldest slow one
        more = [raw(limited, HALF_SENT) for _ in range(CAP)]
        slow.extend(more)
        # Not a spin: the server sleeps while the slow clients hold their connections.
        wait_for(lambda: all(closed_by_server(sock) for sock in slow), 15, "every slow socket to close")
        assert cpu_seconds(pid) - cpu < 1.0
        limited.wait_for_log(r"connection limit no longer reached")
        assert count(r"connection limit reached", limited) - before == 1
        assert health_ok(limited)
    finally:
        for sock in slow:
            sock.close()


# -- the body limit, on every route ----------------------------------------------------------


def test_a_60_mib_post_to_the_login_page_gets_413_without_being_buffered(limited: ServerProcess) -> None:
    size = 60 * 1024 * 1024
    pid = limited.process.pid
    rss_before = rss_kib(pid)
    sock = raw(
        limited,
        b"POST /login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
        b"application/x-www-form-urlencoded\r\nContent-Length: " + str(size).encode() + b"\r\n\r\n",
    )

    def upload() -> None:
        block = b"a" * (1024 * 1024)
        try:
            for _ in range(60):
                sock.sendall(block)
        except OSError:
            pass  # the server stopped reading: that is the point

    sender = threading.Thread(target=upload, daemon=True)
    sender.start()
    try:
        status, headers, body = read_response(sock)
        assert status == 413
        assert headers["content-type"].startswith("text/html") and b"413" in body
        assert headers["connection"] == "close"
        sender.join(15)
        assert rss_kib(pid) - rss_before < 20 * 1024  # a 60 MiB body would show here
    finally:
        sock.close()
    assert health_ok(limited)


def chunked(head: bytes, total: int, piece: int = 64 * 1024) -> bytes:
    body = b"".join(b"%x\r\n" % piece + b"x" * piece + b"\r\n" for _ in range(total // piece))
    return head + b"Transfer-Encoding: chunked\r\n\r\n" + body + b"0\r\n\r\n"


def test_a_chunked_api_body_over_the_limit_gets_413_problem_json(limited: ServerProcess) -> None:
    head = b"POST /api/v1/auth/login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    sock = raw(limited)
    try:
        sender = threading.Thread(target=lambda: _send_quietly(sock, chunked(head, 2 * 1024 * 1024)))
        sender.start()
        status, headers, body = read_response(sock)
        sender.join(15)
        assert status == 413
        assert headers["content-type"] == "application/problem+json"
        problem = json.loads(body)
        assert problem["status"] == 413 and problem["error_code"] == 2001
        assert problem["instance"] == headers["x-request-id"]
    finally:
        sock.close()


def test_a_chunked_page_body_over_the_limit_gets_413_html(limited: ServerProcess) -> None:
    sock = raw(limited)
    try:
        head = b"POST /login HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        sender = threading.Thread(target=lambda: _send_quietly(sock, chunked(head, 2 * 1024 * 1024)))
        sender.start()
        status, headers, _ = read_response(sock)
        sender.join(15)
        assert status == 413 and headers["content-type"].startswith("text/html")
    finally:
        sock.close()


def _send_quietly(sock: socket.socket, data: bytes) -> None:
    with contextlib.suppress(OSError):  # the server may stop reading: that is the point
        sock.sendall(data)


def test_a_declared_api_body_over_the_limit_gets_413_before_it_is_sent(limited: ServerProcess) -> None:
    sock = raw(
        limited,
        b"POST /api/v1/auth/login HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Length: 2000000\r\nExpect: 100-continue\r\n\r\n",
    )
    try:
        status, _, body = read_response(sock)
        assert status == 413 and json.loads(body)["error_code"] == 2001
    finally:
        sock.close()


def test_a_malformed_content_length_on_the_api_gets_400_problem_json(limited: ServerProcess) -> None:
    sock = raw(limited, b"POST /api/v1/auth/login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 12x\r\n\r\n")
    try:
        status, headers, body = read_response(sock)
        assert status == 400 and headers["content-type"] == "application/problem+json"
        assert json.loads(body)["error_code"] == 2001
    finally:
        sock.close()


def test_a_malformed_request_line_gets_a_bare_400_and_the_server_keeps_serving(
    limited: ServerProcess,
) -> None:
    """Documented: without a parsable request line there is no path to pick a format from."""
    sock = raw(limited, b"NOT A REQUEST\r\n\r\n")
    try:
        status, _, body = read_response(sock)
        assert status == 400 and body == b""
        wait_for(lambda: closed_by_server(sock), 5, "the connection to close")
    finally:
        sock.close()
    assert health_ok(limited)


# -- out of file descriptors -----------------------------------------------------------------


def test_running_out_of_file_descriptors_is_logged_once_without_spinning(tmp_path: Path) -> None:
    server = start_server(tmp_path, header_timeout_seconds=3.0)
    pid = server.process.pid
    slow: list[socket.socket] = []
    try:
        # The cap derived at start-up no longer fits: accept() itself now fails with EMFILE.
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (64, 64))
        for _ in range(100):
            try:
                slow.append(raw(server, HALF_SENT))
            except OSError:
                break
        server.wait_for_log(r"cannot accept connections: Too many open files")
        cpu = cpu_seconds(pid)
        assert health_ok(server)
        # The header timeout closes the slow clients the server accepted, and the rest come in
        # from the listen queue as descriptors free up. A spinning accept loop would burn
        # several CPU seconds meanwhile.
        wait_for(lambda: all(closed_by_server(sock) for sock in slow), 30, "every slow socket to close")
        assert cpu_seconds(pid) - cpu < 1.0
        assert count(r"cannot accept connections", server) == 1
        assert "Traceback" not in server.log()
    finally:
        for sock in slow:
            sock.close()
    assert health_ok(server)
    assert server.terminate() == 0


# -- native TLS: the server faces clients directly ---------------------------------------------


@pytest.fixture(scope="module")
def tls_limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, ssl.SSLContext]]:
    directory = tmp_path_factory.mktemp("tls-limited")
    cert, key = make_certificate(directory, "server")
    server = start_server(directory, ssl_certfile=str(cert), ssl_keyfile=str(key), header_timeout_seconds=1.0)
    context = ssl.create_default_context(cafile=str(cert))
    yield server, context
    assert server.terminate() == 0
    assert "Traceback" not in server.log()


def test_a_tls_client_that_never_says_hello_is_closed_by_the_header_timeout(tls_limited) -> None:  # type: ignore[no-untyped-def]
    server, _ = tls_limited
    silent = [raw(server) for _ in range(3)]  # TCP only: no ClientHello ever comes
    try:
        wait_for(lambda: all(closed_by_server(sock) for sock in silent), 10, "the header timeout")
    finally:
        for sock in silent:
            sock.close()


def test_a_declared_body_over_the_limit_gets_413_over_tls(tls_limited) -> None:  # type: ignore[no-untyped-def]
    server, context = tls_limited
    with context.wrap_socket(raw(server), server_hostname="127.0.0.1") as sock:
        sock.sendall(
            b"POST /api/v1/auth/login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: 5000000\r\n\r\n"
        )
        status, headers, body = read_response(sock)  # type: ignore[arg-type]
        assert status == 413 and json.loads(body)["error_code"] == 2001
        assert headers["strict-transport-security"].startswith("max-age=")
