"""WebSocket helpers for the tests: real Tornado WebSocket clients against the real server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.websocket import WebSocketClientConnection, websocket_connect

TIMEOUT = 5.0


def ws_url(base_url: str, query: str = "") -> str:
    return base_url.replace("http://", "ws://", 1).replace("https://", "wss://", 1) + "api/v1/ws" + query


async def connect(
    base_url: str,
    token: str | None = None,
    ticket: str | None = None,
    cookies: dict[str, str] | None = None,
    origin: str | None = None,
    scheme: str = "Bearer",
    ssl_options: Any = None,
    network_interface: str | None = None,
) -> WebSocketClientConnection:
    """A client socket; `ssl_options` for wss, `network_interface` to pick the source address."""
    headers = {}
    if token:
        headers["Authorization"] = f"{scheme} {token}"
    if cookies:
        headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
    if origin:
        headers["Origin"] = origin
    query = f"?ticket={ticket}" if ticket else ""
    request = HTTPRequest(
        ws_url(base_url, query),
        headers=headers,
        connect_timeout=TIMEOUT,
        ssl_options=ssl_options,
        network_interface=network_interface,
    )
    return await websocket_connect(request)


async def handshake_status(base_url: str, **kwargs: Any) -> int:
    """The HTTP status of a refused handshake (raises if the handshake succeeds)."""
    try:
        connection = await connect(base_url, **kwargs)
    except HTTPClientError as error:
        return error.code
    connection.close()
    raise AssertionError("the handshake was accepted")


async def receive(connection: WebSocketClientConnection, timeout: float = TIMEOUT) -> dict[str, Any] | None:
    """The next message, parsed; None when the server closed the socket."""
    message = await asyncio.wait_for(connection.read_message(), timeout)
    return None if message is None else json.loads(message)


async def receive_until(
    connection: WebSocketClientConnection,
    predicate: Callable[[dict[str, Any]], bool],
    timeout: float = TIMEOUT,
) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        remaining = deadline - asyncio.get_running_loop().time()
        message = await receive(connection, max(remaining, 0.01))
        if message is None:
            raise AssertionError(f"socket closed ({connection.close_code}) before the expected message")
        if predicate(message):
            return message


async def request(connection: WebSocketClientConnection, message: dict[str, Any] | str) -> dict[str, Any]:
    """Send one protocol message and return the reply (events in between are skipped)."""
    text = message if isinstance(message, str) else json.dumps(message)
    await connection.write_message(text)
    return await receive_until(connection, lambda m: "action" in m)


async def closed_with(connection: WebSocketClientConnection, timeout: float = TIMEOUT) -> int | None:
    """Wait for the server to close the socket; return the close code."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        remaining = deadline - asyncio.get_running_loop().time()
        if remaining <= 0:
            raise AssertionError("the socket was not closed in time")
        message = await asyncio.wait_for(connection.read_message(), remaining)
        if message is None:
            return connection.close_code
