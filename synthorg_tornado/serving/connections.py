"""The connection layer: accepting, counting, timing out and draining TCP connections.

Tornado's HTTPServer bounds nothing a slow client controls: one timeout (an hour) covers both a
keep-alive connection between requests and a request whose headers trickle in, there is no cap
on connections, and when the process runs out of file descriptors its accept loop spins on
EMFILE and logs a traceback per attempt. `LabHTTPServer` keeps Tornado's request handling and
replaces the parts around it:

- its own accept loop (`accepting.Acceptor`), which pauses on EMFILE/ENFILE instead of
  spinning and logs the failure once a minute at most;
- a cap on open connections (`server.max_connections`, by default derived from the open-files
  limit); at the cap the oldest connection that has not sent a complete request head is shed,
  so a real request, such as a health check, still gets in;
- `ServedConnection`, the per-connection request loop, with a header timeout for a new
  connection, a longer keep-alive timeout between requests, and a body timeout;
- draining on shutdown: stop accepting, close idle connections, let requests in flight finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import resource
import socket
import ssl
import time
from collections.abc import Coroutine
from typing import Any

from tornado import httputil, iostream
from tornado.http1connection import HTTP1Connection
from tornado.httpserver import HTTPServer, _HTTPRequestContext
from tornado.log import gen_log
from tornado.netutil import ssl_wrap_socket

from synthorg_tornado.config import Config
from synthorg_tornado.serving.accepting import LOG_INTERVAL_SECONDS, Acceptor, RateLimitedLog
from synthorg_tornado.serving.http_limits import ForwardedHeadersDelegate, RequestLimitsDelegate
from synthorg_tornado.serving.proxies import TrustedProxies

log = logging.getLogger("synthorg.connections")

# Descriptors kept free of connections: the database pool (and its overflow), the bus listener,
# log and static files, the event loop's own.
FD_RESERVE = 100
MIN_CONNECTIONS = 16
BURST_OVER_FRACTION = 0.9
# Tornado checks the body size itself only to answer a bare 400: `RequestLimitsDelegate` does
# the checking, with a proper answer, so Tornado's own limit is out of its way.
UNLIMITED_BODY = 1 << 62


def default_max_connections(pool_size: int) -> int:
    """The open-files soft limit, less room for what the process opens besides connections."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        soft = 1 << 20
    return max(MIN_CONNECTIONS, soft - FD_RESERVE - 2 * pool_size)


class _CountedStream:
    """A stream that tells its server when its descriptor closes, whoever owns it by then
    (the request loop, a WebSocket, a refusal's lingering close)."""

    owner: LabHTTPServer

    def close_fd(self) -> None:
        try:
            super().close_fd()  # type: ignore[misc]
        finally:
            self.owner.stream_closed(self)  # type: ignore[arg-type]


class CountedIOStream(_CountedStream, iostream.IOStream):
    pass


class CountedSSLIOStream(_CountedStream, iostream.SSLIOStream):
    pass


class _RequestConnection(HTTP1Connection):
    """One request's HTTP/1 connection; while the server drains, answers say `Connection: close`."""

    def __init__(self, served: ServedConnection, params: Any) -> None:
        super().__init__(served.stream, False, params, served.context)
        # Only the server: a WebSocket's request keeps this object for the socket's lifetime.
        self.lab_server = served.server

    def write_headers(self, start_line, headers, chunk=None):  # type: ignore[no-untyped-def]
        if self.lab_server.draining and getattr(start_line, "code", 0) != 101:
            headers["Connection"] = "close"
        return super().write_headers(start_line, headers, chunk)


class ServedConnection:
    """One TCP connection's request loop (Tornado's `HTTP1ServerConnection`, with two timeouts).

    The first request must deliver its head within `header_timeout_seconds` of the connection
    opening (this includes a TLS handshake). Between requests a keep-alive connection may idle
    for `keepalive_timeout_seconds`, which covers the next request's head too. That is longer on
    purpose: nginx keeps idle upstream connections for 60 s (`keepalive` in the upstream), and a
    backend that closed them sooner would race nginx reusing one, costing a 502 on a POST. A
    slow client that first completes one request can therefore hold its connection for the
    keep-alive timeout, but it stays sheddable: at the connection cap every connection waiting
    for a request head, idle or trickling, is shed oldest first.
    """

    def __init__(self, server: LabHTTPServer, stream: iostream.IOStream, context: Any) -> None:
        self.server = server
        self.stream = stream
        self.context = context
        self._serving: asyncio.Future[None] | None = None

    def start_serving(self, delegate: httputil.HTTPServerConnectionDelegate) -> None:
        self.server.waiting[self] = time.monotonic()  # sheddable from the start, not from its first step
        self._serving = asyncio.ensure_future(self._serve(delegate))
        self._serving.add_done_callback(_log_failure)

    def headers_complete(self) -> None:
        self.server.waiting.pop(self, None)

    async def close(self) -> None:
        """Close now and wait for the request loop to end (`HTTPServer.close_all_connections`)."""
        self.stream.close()
        if self._serving is not None:
            with contextlib.suppress(Exception):
                await self._serving

    async def _serve(self, delegate: httputil.HTTPServerConnectionDelegate) -> None:
        params = self.server.first_request_params
        try:
            while not self.server.draining:
                request_conn = _RequestConnection(self, params)
                self.server.waiting[self] = time.monotonic()
                try:
                    keep_going = await request_conn.read_response(delegate.start_request(self, request_conn))
                except (iostream.StreamClosedError, iostream.UnsatisfiableReadError, asyncio.CancelledError):
                    return
                except Exception:
                    gen_log.error("Uncaught exception", exc_info=True)
                    request_conn.close()
                    return
                if not keep_going:
                    return  # closed, timed out, or detached (a WebSocket, a refusal)
                params = self.server.keepalive_params
                await asyncio.sleep(0)
            self.stream.close()  # draining: the request in flight was the last one
        finally:
            self.server.waiting.pop(self, None)
            delegate.on_close(self)


def _log_failure(future: asyncio.Future[None]) -> None:
    if not future.cancelled() and future.exception() is not None:
        gen_log.error("request loop failed", exc_info=future.exception())


class LabHTTPServer(HTTPServer):
    """Tornado's HTTPServer with trusted forwarded headers, body limits and connection limits.

    Tornado's `xheaders=True` trusts every peer, so it stays off and `ForwardedHeadersDelegate`
    does the job instead, for trusted peers only.
    """

    proxies: TrustedProxies = TrustedProxies(())

    def apply_limits(self, config: Config) -> None:
        """Limits from the configuration; called once, before any socket is added."""
        server = config.server
        self.config = config
        self.app_settings: dict[str, Any] = getattr(self.request_callback, "settings", {})
        self.max_request_body = server.max_body_size
        room = default_max_connections(config.database.pool_size)
        self.max_connections = server.max_connections or room
        if self.max_connections > room:
            log.warning(
                "server.max_connections is %d but the open-files limit leaves room for %d: "
                "descriptors may run out first (raise LimitNOFILE)",
                self.max_connections,
                room,
            )
        self.api_prefix = server.base_url + "api"
        self.keepalive_params = self.conn_params
        self.first_request_params = copy.copy(self.conn_params)
        self.first_request_params.header_timeout = server.header_timeout_seconds
        self.waiting: dict[ServedConnection, float] = {}  # awaiting a request head, oldest first
        self.streams: set[iostream.IOStream] = set()
        self.draining = False
        self.accept_failures = RateLimitedLog(log)
        self._burst: dict[str, Any] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._changed = asyncio.Event()

    def is_api_path(self, path: str) -> bool:
        return path == self.api_prefix or path.startswith(self.api_prefix + "/")

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """A task the server keeps until it ends (refusals' lingering closes)."""
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- accepting ----------------------------------------------------------------------

    def add_sockets(self, sockets: Any) -> None:
        for sock in sockets:
            self._sockets[sock.fileno()] = sock
            self._handlers[sock.fileno()] = Acceptor(self, sock).remove

    def admit(self, connection: socket.socket, address: Any) -> None:
        if len(self.streams) >= self.max_connections:
            shed = self.shed_oldest_waiting()
            self._note_cap(shed)
            if not shed:
                connection.close()  # every slot is busy with a request or a WebSocket
                return
        if self.ssl_options is not None:
            try:
                connection = ssl_wrap_socket(
                    connection, self.ssl_options, server_side=True, do_handshake_on_connect=False
                )
            except (ssl.SSLError, OSError):
                connection.close()  # gone before it started (a port scan)
                return
        stream_class = CountedSSLIOStream if self.ssl_options is not None else CountedIOStream
        stream = stream_class(
            connection, max_buffer_size=self.max_buffer_size, read_chunk_size=self.read_chunk_size
        )
        stream.owner = self
        self.streams.add(stream)
        self.handle_stream(stream, address)

    def handle_stream(self, stream: iostream.IOStream, address: tuple) -> None:
        context = _HTTPRequestContext(stream, address, self.protocol, self.trusted_downstream)
        connection = ServedConnection(self, stream, context)
        self._connections.add(connection)  # type: ignore[arg-type]
        connection.start_serving(self)

    def shed_oldest_waiting(self) -> bool:
        """Close the connection that has waited longest without sending a request head."""
        if not self.waiting:
            return False
        oldest = next(iter(self.waiting))
        self.waiting.pop(oldest)
        oldest.stream.close()
        return True

    def stream_closed(self, stream: iostream.IOStream) -> None:
        self.streams.discard(stream)
        if self._burst is not None and len(self.streams) <= BURST_OVER_FRACTION * self.max_connections:
            burst, self._burst = self._burst, None
            log.info(
                "connection limit no longer reached after %.1f s: %d waiting connections shed, %d refused",
                time.monotonic() - burst["since"],
                burst["shed"],
                burst["refused"],
            )
        if self.draining:
            self._changed.set()

    def _note_cap(self, shed: bool) -> None:
        """One warning when a burst reaches the cap, a reminder a minute while it lasts."""
        now = time.monotonic()
        if self._burst is None:
            self._burst = {"since": now, "logged": now, "shed": 0, "refused": 0}
            log.warning(
                "connection limit reached: %d connections open (server.max_connections); "
                "shedding the oldest that have not sent a request",
                self.max_connections,
            )
        elif now - self._burst["logged"] >= LOG_INTERVAL_SECONDS:
            self._burst["logged"] = now
            log.warning(
                "connection limit still reached: %d shed, %d refused so far",
                self._burst["shed"],
                self._burst["refused"],
            )
        self._burst["shed" if shed else "refused"] += 1

    # -- requests -----------------------------------------------------------------------

    def start_request(self, server_conn: object, request_conn: httputil.HTTPConnection):  # type: ignore[override]
        delegate: httputil.HTTPMessageDelegate = RequestLimitsDelegate(
            super().start_request(server_conn, request_conn),
            server_conn,  # type: ignore[arg-type]
            request_conn,
            self,
        )
        if self.proxies.networks:
            # Outermost, so that a refusal is logged with the client's address, not the proxy's.
            delegate = ForwardedHeadersDelegate(delegate, request_conn, self.proxies)
        return delegate

    def on_close(self, server_conn: object) -> None:
        super().on_close(server_conn)
        if self.draining:
            self._changed.set()

    # -- draining -----------------------------------------------------------------------

    def start_draining(self) -> None:
        """After `stop()`: connections without a request in flight close now; the others close
        once their answer is written (it says `Connection: close`)."""
        self.draining = True
        for connection in list(self.waiting):
            connection.stream.close()

    async def wait_for_requests(self, deadline: float) -> bool:
        """Until no HTTP request is in flight (WebSockets aside), or the deadline."""
        return await self._wait(lambda: not self._connections, deadline)

    async def wait_closed(self, deadline: float) -> bool:
        """Until every connection's descriptor is closed, or the deadline; then close the rest."""
        closed = await self._wait(lambda: not self.streams and not self._tasks, deadline)
        await self.close_all_connections()
        for stream in list(self.streams):
            stream.close()
        for task in list(self._tasks):
            task.cancel()
        return closed

    async def _wait(self, done: Any, deadline: float) -> bool:
        loop = asyncio.get_running_loop()
        while not done():
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(remaining, 0.5))
        return True
