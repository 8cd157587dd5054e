"""The WebSocket endpoint, its tickets, publishing events, and presence."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from tornado import websocket
from tornado.concurrent import Future

from synthorg_tornado.errors import BadRequest, InvalidValue, LabError, NotAuthenticated, PermissionDenied
from synthorg_tornado.handlers.base import ApiHandler, BaseHandler, ProblemResponseMixin
from synthorg_tornado.handlers.decorators import allow_anonymous, authenticated
from synthorg_tornado.realtime import channels
from synthorg_tornado.realtime.hub import Connection

EVENT_TYPE_MAX = 64
CLOSE_INVALID_DATA = 1007  # RFC 6455: a text frame that is not UTF-8
OPCODE_TEXT = 0x1


class StrictUtf8Protocol(websocket.WebSocketProtocol13):
    """Tornado's protocol, except that a text frame that is not UTF-8 is closed with 1007.

    Tornado drops the TCP connection without a close frame there, so the client cannot tell a
    protocol error from a network failure (and reconnects in a loop). `_handle_message` is the
    one place that sees whole messages before they are decoded.
    """

    def _handle_message(self, opcode: int, data: bytes) -> Future[None] | None:
        if opcode == OPCODE_TEXT and not self._frame_compressed:
            if self.server_terminated:
                return None  # closing already: nothing more is delivered
            try:
                data.decode("utf-8")
            except UnicodeDecodeError:
                self.close(CLOSE_INVALID_DATA, "text frames must be UTF-8")
                return None
        return super()._handle_message(opcode, data)


class WebSocketTicketHandler(ApiHandler):
    @authenticated
    async def post(self) -> None:
        self.write_json(await self.services.tickets.issue(self.identity), status=201)


class EventsHandler(ApiHandler):
    @authenticated
    async def post(self) -> None:
        body = self.json_object()
        channel, event_type, payload = body.get("channel"), body.get("event_type"), body.get("payload", {})
        if not isinstance(channel, str) or not channels.is_known(channel):
            raise InvalidValue("channel must be one of system, settings, presence, lab, budget or user:<id>.")
        if not channels.can_publish(self.identity.user.role, channel):
            raise PermissionDenied(f"Your role cannot publish to {channel}.")
        if not isinstance(event_type, str) or not 0 < len(event_type) <= EVENT_TYPE_MAX:
            raise InvalidValue(f"event_type must be a string of 1-{EVENT_TYPE_MAX} characters.")
        delivered = await self.services.hub.publish(self.identity.user.id, channel, event_type, payload)
        self.write_json({"channel": channel, "event_type": event_type, "delivered": delivered}, status=202)


class PresenceHandler(ApiHandler):
    @authenticated
    async def get(self) -> None:
        self.write_json(self.services.hub.online())


class RealtimeSocket(ProblemResponseMixin, websocket.WebSocketHandler, BaseHandler):
    """`/api/v1/ws`: authenticated before the upgrade, then the JSON protocol of the hub.

    Credentials: `?ticket=` (single use), an Authorization header, or the session cookie. Only a
    cookie is sent by the browser on its own, so only a cookie connection must come from an
    allowed Origin: that is what stops another site's page from opening a socket as the user.
    """

    connection: Connection | None = None

    async def prepare(self) -> None:
        self.check_host()
        ticket = self.get_query_argument("ticket", None)
        if ticket is not None:
            try:
                self._identity = await self.services.tickets.redeem(ticket)
            except LabError as error:
                self._auth_error = error
        else:
            await self.identify()
        if self._identity is None:
            raise self._auth_error or NotAuthenticated("A WebSocket needs a ticket, a token or a session.")

    def check_origin(self, origin: str) -> bool:
        if self._identity is None or self._identity.source != "cookie":
            return True
        allowed = self.config.server.allowed_origins
        if origin.rstrip("/") in {o.rstrip("/") for o in allowed}:
            return True
        parts = urlsplit(origin)
        return parts.netloc.lower() == self.request.host.lower() and parts.scheme in ("http", "https")

    def get_websocket_protocol(self) -> websocket.WebSocketProtocol | None:
        protocol = super().get_websocket_protocol()
        if isinstance(protocol, websocket.WebSocketProtocol13):
            return StrictUtf8Protocol(self, False, protocol.params)
        return protocol

    @allow_anonymous  # authentication happens in prepare(), before the upgrade
    async def get(self, *args: Any, **kwargs: Any) -> None:
        # Tornado answers these two refusals in plain text; under /api they are problem+json.
        headers = self.request.headers
        connection = {part.strip().lower() for part in headers.get("Connection", "").split(",")}
        if headers.get("Upgrade", "").lower() != "websocket" or "upgrade" not in connection:
            raise BadRequest(
                "This endpoint needs a WebSocket upgrade (Connection: Upgrade, Upgrade: websocket)."
            )
        origin = headers.get("Origin", headers.get("Sec-Websocket-Origin"))
        if origin is not None and not self.check_origin(origin):
            raise PermissionDenied("Cross-origin WebSockets are not allowed from this Origin.")
        await super().get(*args, **kwargs)

    def open(self, *args: Any, **kwargs: Any) -> None:
        # Small frames (replies, close frames) go out at once instead of waiting for the
        # client's delayed ACK: that wait added ~40 ms to closing a freshly opened socket.
        self.set_nodelay(True)
        identity = self.identity
        self.connection = self.services.hub.connect(
            self, identity.user, identity.session_id, identity.api_token_id
        )
        if self.connection is not None:
            self.services.metrics.open_websockets.inc()

    def on_message(self, message: str | bytes) -> None:
        if self.connection is None:
            return
        # Binary frames are read as JSON too; bytes that are not UTF-8 get invalid_json.
        self.services.hub.handle(self.connection, message, self.config.websocket.max_message_bytes)

    def on_close(self) -> None:
        if self.connection is not None:
            self.services.hub.disconnect(self.connection)
            self.services.metrics.open_websockets.dec()
            self.connection = None

    # Transport, as the hub sees it.
    def write_text(self, text: str):  # type: ignore[no-untyped-def]
        return self.write_message(text)

    def close_with(self, code: int, reason: str) -> None:
        self.close(code, reason)


default_handlers = [
    (r"api/v1/auth/ws-ticket", WebSocketTicketHandler),
    (r"api/v1/events", EventsHandler),
    (r"api/v1/presence", PresenceHandler),
    (r"api/v1/ws", RealtimeSocket),
]
