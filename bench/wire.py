"""Raw HTTP/1.1 over keep-alive sockets, shared by the load generators and the set-up steps.

Tornado answers every request of these benchmarks with a Content-Length, so that is all the
response parser understands; anything else (chunked, a closed connection) is an error, never a
silent mis-count.
"""

from __future__ import annotations

import http.client
import json
import socket
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

HEADER_END = b"\r\n\r\n"
CONTENT_LENGTH = b"\r\ncontent-length:"


class ProtocolError(Exception):
    """The server answered something this small parser does not handle."""


def build_request(method: str, url: str, headers: dict[str, str] | None = None, body: bytes = b"") -> bytes:
    """The exact bytes of one keep-alive request, built once and re-sent for every request."""
    parts = urlsplit(url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    lines = [f"{method} {target or '/'} HTTP/1.1", f"Host: {parts.netloc}", "Connection: keep-alive"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def parse_response(buffer: bytes | bytearray) -> tuple[int, int] | None:
    """(status, total length) of the first complete response in the buffer, or None if partial."""
    head_end = buffer.find(HEADER_END)
    if head_end < 0:
        return None
    head = bytes(buffer[:head_end]).lower()
    status = int(head[9:12])
    at = head.find(CONTENT_LENGTH)
    if at < 0:
        if status in (204, 304):
            return status, head_end + 4
        raise ProtocolError(f"response {status} has no Content-Length: {head[:200]!r}")
    line_end = head.find(b"\r\n", at + 2)
    length = int(head[at + len(CONTENT_LENGTH) : line_end if line_end > 0 else len(head)])
    total = head_end + 4 + length
    return (status, total) if len(buffer) >= total else None


class BlockingConnection:
    """One keep-alive socket sending one request at a time: the probe of B2."""

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        parts = urlsplit(url)
        self.sock = socket.create_connection((parts.hostname, parts.port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = bytearray()

    def exchange(self, request: bytes) -> int:
        self.sock.sendall(request)
        while True:
            parsed = parse_response(self.buffer)
            if parsed is not None:
                status, total = parsed
                del self.buffer[:total]
                return status
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ProtocolError("the server closed the connection")
            self.buffer += chunk

    def close(self) -> None:
        self.sock.close()


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def fetch(
    url: str,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
    timeout: float = 30.0,
) -> Reply:
    """One request with the standard library, for set-up steps (never inside a timed loop)."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        connection.request(method, target or "/", body=body, headers=headers or {})
        response = connection.getresponse()
        return Reply(response.status, response.headers, response.read())
    finally:
        connection.close()


def wait_until_answering(url: str, timeout: float, process: Any = None) -> None:
    """Poll a URL until the server answers at all (any status), with a deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode} before answering {url}")
        try:
            fetch(url, timeout=2.0)
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"no answer from {url} within {timeout}s")
