"""Small asyncio clients for the WebSocket benchmarks: a WebSocket client and a keep-alive HTTP one.

The WebSocket client speaks just enough of RFC 6455 for these benchmarks and no more: the
handshake (with any extra headers, such as `Authorization`), masked text frames out, and
unfragmented, unmasked frames in (text, close, ping), which is what Tornado sends. It is written
on `asyncio.Protocol` rather than with the `websockets` library because B3 has one client
process receiving tens of thousands of messages a second: here a message costs a few
microseconds of client CPU (a regex on the frame, no JSON), so the client never becomes the
limit that the benchmark reports. Every received frame is stamped with `time.monotonic()`
(CLOCK_MONOTONIC, one clock for every process on the machine) when its bytes arrive.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import time
from collections.abc import Callable
from urllib.parse import urlsplit

from bench.wire import HEADER_END

OPCODE_TEXT = 0x1
OPCODE_CLOSE = 0x8
OPCODE_PING = 0x9
OPCODE_PONG = 0xA
NO_STATUS = 1005
ABNORMAL = 1006


def client_frame(payload: bytes, opcode: int = OPCODE_TEXT) -> bytes:
    """One final, masked frame, as a client must send it."""
    length = len(payload)
    if length < 126:
        header = bytes((0x80 | opcode, 0x80 | length))
    elif length < 65536:
        header = bytes((0x80 | opcode, 0x80 | 126)) + length.to_bytes(2, "big")
    else:
        header = bytes((0x80 | opcode, 0x80 | 127)) + length.to_bytes(8, "big")
    mask = os.urandom(4)
    key = (mask * (length // 4 + 1))[:length]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(length, "big")
    return header + mask + masked


def handshake_request(host: str, port: int, path: str, headers: dict[str, str]) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: {host}:{port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
    ] + [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


TextCallback = Callable[["WebSocketClient", bytes, float], None]


class WebSocketClient(asyncio.Protocol):
    """One socket. `opened` resolves with the handshake's status (101 = upgraded); `closed`
    resolves with the close code once a close frame arrives (or 1006 when the TCP connection
    ends without one), and `closed_at` is when its bytes arrived."""

    def __init__(self, request: bytes, on_text: TextCallback | None = None) -> None:
        loop = asyncio.get_running_loop()
        self.request = request
        self.on_text = on_text
        self.opened: asyncio.Future[int] = loop.create_future()
        self.closed: asyncio.Future[int] = loop.create_future()
        self.closed_at = 0.0
        self.transport: asyncio.Transport | None = None
        self.upgraded = False
        self.buffer = bytearray()
        self.texts: list[bytes] | None = None  # set to a list to keep messages (set-up steps)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.transport.write(self.request)  # type: ignore[union-attr]

    def send_text(self, text: str) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(client_frame(text.encode()))

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        buffer = self.buffer
        buffer += data
        if not self.upgraded:
            end = buffer.find(HEADER_END)
            if end < 0:
                return
            status = int(buffer[9:12])
            if status != 101:  # refused (401, 403, ...): the caller sees the status
                self._settle_open(status)
                self._settle_closed(ABNORMAL, now)
                self.abort()
                return
            del buffer[: end + 4]
            self.upgraded = True
            self._settle_open(101)
        position, size = 0, len(buffer)
        while size - position >= 2:
            first, second = buffer[position], buffer[position + 1]
            length, head = second & 0x7F, 2
            if length == 126:
                if size - position < 4:
                    break
                length, head = int.from_bytes(buffer[position + 2 : position + 4], "big"), 4
            elif length == 127:
                if size - position < 10:
                    break
                length, head = int.from_bytes(buffer[position + 2 : position + 10], "big"), 10
            if size - position < head + length:
                break
            payload = bytes(buffer[position + head : position + head + length])
            position += head + length
            opcode = first & 0x0F
            if opcode == OPCODE_TEXT:
                if self.texts is not None:
                    self.texts.append(payload)
                if self.on_text is not None:
                    self.on_text(self, payload, now)
            elif opcode == OPCODE_CLOSE:
                code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else NO_STATUS
                self._settle_closed(code, now)
                if self.transport is not None and not self.transport.is_closing():
                    self.transport.write(client_frame(payload[:2], OPCODE_CLOSE))
                    self.transport.close()
                break
            elif opcode == OPCODE_PING and self.transport is not None and not self.transport.is_closing():
                self.transport.write(client_frame(payload, OPCODE_PONG))
        del buffer[:position]

    def connection_lost(self, exc: Exception | None) -> None:
        self._settle_open(0)
        self._settle_closed(ABNORMAL, time.monotonic())

    def _settle_open(self, status: int) -> None:
        if not self.opened.done():
            self.opened.set_result(status)

    def _settle_closed(self, code: int, when: float) -> None:
        if not self.closed.done():
            self.closed_at = when
            self.closed.set_result(code)


async def open_socket(
    url: str,
    headers: dict[str, str] | None = None,
    on_text: TextCallback | None = None,
    timeout: float = 10.0,
) -> WebSocketClient:
    """Connect and upgrade; raises `ConnectionError` naming the status when the server refuses."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    request = handshake_request(host, port, path, headers or {})
    loop = asyncio.get_running_loop()
    _, client = await asyncio.wait_for(
        loop.create_connection(lambda: WebSocketClient(request, on_text), host, port), timeout
    )
    status = await asyncio.wait_for(client.opened, timeout)
    if status != 101:
        client.abort()
        raise ConnectionError(f"WebSocket handshake answered {status or 'nothing'}")
    return client


async def subscribe(client: WebSocketClient, message: str, timeout: float = 10.0) -> bytes:
    """Send a subscribe message and wait for the `subscribed` answer (other messages are kept)."""
    client.texts = client.texts if client.texts is not None else []
    client.send_text(message)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for text in client.texts:
            if b'"action":"subscribed"' in text.replace(b" ", b""):
                client.texts = None
                return text
        if client.closed.done():
            raise ConnectionError(f"closed with {client.closed.result()} before subscribing")
        await asyncio.sleep(0.005)
    raise TimeoutError("no subscribed answer")


class HttpConnection:
    """One keep-alive HTTP/1.1 connection, one request at a time (for B3's publisher, B4, B5).

    Understands what Tornado sends: responses with a Content-Length (or 204/304 without a body).
    """

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def connect(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    async def request(
        self, method: str, path: str, headers: dict[str, str] | None = None, body: bytes = b""
    ) -> tuple[int, dict[str, str], bytes]:
        if self.writer is None:
            await self.connect()
        assert self.reader is not None and self.writer is not None
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}", "Connection: keep-alive"]
        lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
        if body or method in ("POST", "PUT", "PATCH"):
            lines.append(f"Content-Length: {len(body)}")
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        head = await self.reader.readuntil(HEADER_END)
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        status = int(status_line.split(" ", 2)[1])
        response_headers: dict[str, str] = {}
        for line in header_lines:
            if ":" in line:
                name, value = line.split(":", 1)
                response_headers[name.strip().lower()] = value.strip()
        length = int(response_headers.get("content-length", "0"))
        payload = await self.reader.readexactly(length) if length else b""
        if response_headers.get("connection", "").lower() == "close":
            await self.close()
        return status, response_headers, payload

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(OSError):
                await self.writer.wait_closed()
            self.writer = self.reader = None
