"""SIGTERM drains: no new connections, requests in flight finish, idle connections do not wait."""

from __future__ import annotations

import json
import signal
import socket
from pathlib import Path

import pytest

from tests.servers import ServerProcess, wait_for, write_config
from tests.test_abuse_http import closed_by_server, raw, read_response

BODY = json.dumps({"username": "nobody", "password": "not-the-password"}).encode()
HEAD = (
    b"POST /api/v1/auth/login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    b"Content-Length: " + str(len(BODY)).encode() + b"\r\nExpect: 100-continue\r\n\r\n"
)
CONTINUE = b"HTTP/1.1 100 (Continue)\r\n\r\n"


@pytest.fixture
def server(tmp_path: Path) -> ServerProcess:
    # A grace period far longer than the drain needs: exiting early shows nothing waited for it.
    config = write_config(
        tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'synthorg.db'}", server={"shutdown_grace_seconds": 60}
    )
    server = ServerProcess(config).start()
    yield server
    server.kill()


def refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


def test_sigterm_lets_a_request_in_flight_finish_and_exits_0(server: ServerProcess) -> None:
    in_flight = raw(server, HEAD)
    assert in_flight.recv(len(CONTINUE), socket.MSG_WAITALL) == CONTINUE  # the server has the request's head
    in_flight.sendall(BODY[:10])
    idle = raw(server, b"GET /api/v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert read_response(idle)[0] == 200  # now an idle keep-alive connection
    server.process.send_signal(signal.SIGTERM)
    wait_for(lambda: refused(server.port), 10, "new connections to be refused")
    wait_for(lambda: closed_by_server(idle), 10, "the idle keep-alive connection to close")
    assert server.process.poll() is None  # still draining the request in flight

    in_flight.setblocking(True)
    in_flight.sendall(BODY[10:])
    status, headers, body = read_response(in_flight)
    assert status == 401 and json.loads(body)["error_code"] == 1000
    assert headers["connection"] == "close"
    wait_for(lambda: closed_by_server(in_flight), 10, "the drained connection to close")

    # Well inside the 60 s grace period: nothing is left to wait for.
    wait_for(lambda: server.process.poll() is not None, 20, "the process to exit")
    assert server.terminate() == 0
    log = server.log()
    assert "stopped" in log and "still open" not in log and "still in flight" not in log


def test_sigterm_with_only_idle_connections_exits_at_once(server: ServerProcess) -> None:
    idle = [raw(server, b"GET /api/v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n") for _ in range(3)]
    for sock in idle:
        assert read_response(sock)[0] == 200
    half_sent = raw(server, b"GET /api/v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    server.process.send_signal(signal.SIGTERM)
    wait_for(lambda: server.process.poll() is not None, 20, "the process to exit")
    assert server.terminate() == 0
    assert all(closed_by_server(sock) for sock in [*idle, half_sent])
    assert "still open" not in server.log()
