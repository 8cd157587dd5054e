"""Per-request delegates of the HTTP layer: trusted forwarded headers, and the body limit.

Both sit between Tornado's HTTP/1 connection and the application, so what they decide holds for
every route (pages, API, static files, WebSocket handshakes) before any handler runs.
"""

from __future__ import annotations

import asyncio
import functools
import http
import json
import socket
import time
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from tornado import escape, gen, httputil, iostream

from synthorg_tornado.errors import BadRequest, LabError, PayloadTooLarge, classify, problem_for
from synthorg_tornado.serving.access_log import log_request, request_id_of
from synthorg_tornado.serving.proxies import TrustedProxies
from synthorg_tornado.serving.responses import PROBLEM_CONTENT_TYPE, SECURITY_HEADERS

if TYPE_CHECKING:
    from synthorg_tornado.serving.connections import LabHTTPServer, ServedConnection

# After a refusal, how long the rest of the client's upload is read and thrown away before the
# socket closes. Closing a socket with unread data makes the kernel send RST, and a client that
# is still sending then loses the answer; nginx calls this a lingering close.
LINGER_SECONDS = 2.0
_DISCARD_CHUNK = 64 * 1024


class ForwardedHeadersDelegate(httputil.HTTPMessageDelegate):
    """Applies `TrustedProxies` to one request.

    The connection context is per TCP connection and outlives the request: the real peer is
    remembered on it once, and every request on a keep-alive connection starts again from that
    peer, never from what an earlier request's headers claimed. Nothing is restored at the end,
    because the handler may still be running (and reading the context) after the body arrived.
    """

    def __init__(
        self,
        delegate: httputil.HTTPMessageDelegate,
        connection: httputil.HTTPConnection,
        proxies: TrustedProxies,
    ) -> None:
        self.delegate = delegate
        self.context = connection.context  # type: ignore[attr-defined]
        self.proxies = proxies
        if not hasattr(self.context, "tcp_peer"):
            self.context.tcp_peer = (self.context.remote_ip, self.context.protocol)

    def headers_received(self, start_line, headers):  # type: ignore[no-untyped-def]
        peer_ip, peer_scheme = self.context.tcp_peer
        client = self.proxies.resolve(peer_ip, peer_scheme, headers)
        self.context.remote_ip = client.ip
        self.context.protocol = client.scheme
        self.context.proxy_peer = client.via_proxy
        return self.delegate.headers_received(start_line, headers)

    def data_received(self, chunk: bytes):  # type: ignore[no-untyped-def]
        return self.delegate.data_received(chunk)

    def finish(self) -> None:
        self.delegate.finish()

    def on_connection_close(self) -> None:
        self.delegate.on_connection_close()


class RequestLimitsDelegate(httputil.HTTPMessageDelegate):
    """`server.max_body_size` for every route, and problem JSON where Tornado answers a bare 400.

    A declared `Content-Length` over the limit is refused from the headers, before a byte of the
    body is read; a chunked body is counted as it arrives and refused the moment it passes the
    limit, so at most the limit is ever buffered. Framing that Tornado would refuse (a
    non-numeric or conflicting `Content-Length`, `Transfer-Encoding` other than `chunked`) is
    refused here first, so the client learns why. API paths get problem JSON, pages a small
    HTML page, and the connection is closed after the answer: what the client still sends is
    read and thrown away for at most `LINGER_SECONDS`, never kept.

    What this cannot answer: a request line or header block that does not parse. There is no
    path to choose the format from, and Tornado answers `400 Bad Request` without a body and
    closes the connection before any delegate runs.
    """

    def __init__(
        self,
        delegate: httputil.HTTPMessageDelegate,
        server_conn: ServedConnection,
        request_conn: httputil.HTTPConnection,
        server: LabHTTPServer,
    ) -> None:
        self.delegate = delegate
        self.server_conn = server_conn
        self.request_conn = request_conn
        self.server = server
        self.limit = server.max_request_body
        self.received = 0
        self.forwarded = False  # the application has seen this request's headers
        self.rejected = False
        self.head: tuple[Any, httputil.HTTPHeaders] | None = None
        self._answered: asyncio.Future[None] | None = None

    def headers_received(self, start_line, headers):  # type: ignore[no-untyped-def]
        self.server_conn.headers_complete()
        self.head = (start_line, headers)
        problem = framing_problem(headers, self.limit)
        if problem is not None:
            # The body is never read: the stream leaves Tornado's hands with the answer.
            stream = self.request_conn.detach()  # type: ignore[attr-defined]
            self.server.spawn(answer_and_close(stream, self._answer(problem)))
            self._log_refusal(problem)
            return None
        self.forwarded = True
        return self.delegate.headers_received(start_line, headers)

    def data_received(self, chunk: bytes) -> Awaitable[None] | None:
        if self.rejected:
            return None  # read and thrown away until the client stops or the linger ends
        self.received += len(chunk)
        if self.received > self.limit:
            self._refuse_midway(PayloadTooLarge(too_large(self.limit)))
            return None
        return self.delegate.data_received(chunk)

    def finish(self) -> None:
        if self.rejected:
            # The whole body has been read: nothing is left to linger for once the answer is out.
            stream = self.server_conn.stream
            assert self._answered is not None
            self._answered.add_done_callback(lambda _: stream.close())
            return
        self.delegate.finish()

    def on_connection_close(self) -> None:
        if self.forwarded and not self.rejected:
            self.delegate.on_connection_close()

    def _refuse_midway(self, problem: LabError) -> None:
        """The body passed the limit after the headers went to the application: the handler is
        told the connection is gone (it stops quietly), and the answer goes out here."""
        self.rejected = True
        self.delegate.on_connection_close()
        stream = self.server_conn.stream
        self._answered = stream.write(self._answer(problem))
        self._answered.add_done_callback(lambda future: future.exception())
        stream.io_loop.call_later(LINGER_SECONDS, stream.close)
        self._log_refusal(problem)

    @functools.cached_property
    def request(self) -> httputil.HTTPServerRequest:
        """Built only for a refusal: the application builds its own for the requests it serves."""
        assert self.head is not None
        start_line, headers = self.head
        return httputil.HTTPServerRequest(
            connection=self.request_conn, start_line=start_line, headers=headers
        )

    def _answer(self, problem: LabError) -> bytes:
        api = self.server.is_api_path(self.request.path)
        return refusal_bytes(problem, self.request, api, self.server.config)

    def _log_refusal(self, problem: LabError) -> None:
        status, _ = classify(problem)
        log_request(RefusedRequest(self.request, status, self.server.app_settings))  # type: ignore[arg-type]


def too_large(limit: int) -> str:
    return f"The request body exceeds the limit of {limit} bytes."


def framing_problem(headers: httputil.HTTPHeaders, limit: int) -> LabError | None:
    """What is wrong with the body's framing or size, judged from the headers alone."""
    declared = headers.get("Content-Length")
    encoding = headers.get("Transfer-Encoding")
    if encoding is not None:
        if declared is not None:
            return BadRequest("A request may not carry both Content-Length and Transfer-Encoding.")
        if encoding.lower() != "chunked":
            return BadRequest("Transfer-Encoding must be chunked.")
        return None
    if declared is None:
        return None
    values = {value.strip() for value in declared.split(",")}
    if len(values) != 1 or not next(iter(values)).isascii() or not next(iter(values)).isdigit():
        return BadRequest("Content-Length must be one whole number.")
    if int(next(iter(values))) > limit:
        return PayloadTooLarge(too_large(limit))
    return None


def refusal_bytes(problem: LabError, request: httputil.HTTPServerRequest, api: bool, config: Any) -> bytes:
    """A complete `Connection: close` response, in the format the path's handler would use."""
    request_id = request_id_of(request)
    body = problem_for(problem, request_id)
    status = body["status"]
    if api:
        content_type, payload = PROBLEM_CONTENT_TYPE, json.dumps(body, separators=(",", ":"))
    else:
        title, detail = escape.xhtml_escape(body["title"]), escape.xhtml_escape(body["detail"])
        content_type = "text/html; charset=UTF-8"
        payload = (
            f"<!doctype html><html><head><meta charset='utf-8'><title>{status} {title}</title>"
            f"</head><body><h1>{status} {title}</h1><p>{detail}</p>"
            f"<p><small>Request {request_id}</small></p></body></html>"
        )
    data = payload.encode()
    lines = [
        f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}",
        f"Date: {httputil.format_timestamp(time.time())}",
        f"Content-Type: {content_type}",
        f"Content-Length: {len(data)}",
        "Connection: close",
        "Cache-Control: no-store",
        f"X-Request-ID: {request_id}",
        *(f"{name}: {value}" for name, value in SECURITY_HEADERS),
    ]
    max_age = config.server.effective_hsts_max_age
    if request.protocol == "https" and max_age > 0:
        lines.append(f"Strict-Transport-Security: max-age={max_age}; includeSubDomains")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + data


async def answer_and_close(stream: iostream.IOStream, response: bytes) -> None:
    """Send a final answer, then read and discard what the client still sends for a short
    while before closing, so that a client busy uploading still sees the answer."""
    loop_time = stream.io_loop.time
    try:
        await stream.write(response)
        if not isinstance(stream, iostream.SSLIOStream):
            stream.socket.shutdown(socket.SHUT_WR)  # the client sees the end of the answer now
        deadline = loop_time() + LINGER_SECONDS
        while True:
            await gen.with_timeout(
                deadline,
                stream.read_bytes(_DISCARD_CHUNK, partial=True),
                quiet_exceptions=(iostream.StreamClosedError,),
            )
    except (iostream.StreamClosedError, TimeoutError, OSError, asyncio.CancelledError):
        pass
    finally:
        stream.close()


class RefusedRequest:
    """What `log_request` reads from a handler, for a request refused before any handler ran:
    refusals get the same access line and metrics as every other request."""

    def __init__(self, request: httputil.HTTPServerRequest, status: int, settings: dict[str, Any]) -> None:
        self.request = request
        self.status = status
        self.settings = settings

    def get_status(self) -> int:
        return self.status

    def log_identity(self) -> str:
        return "-"
