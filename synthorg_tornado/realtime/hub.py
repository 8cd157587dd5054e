"""The hub: channels, fan-out, presence, and the lifecycle rules for live connections.

Every delivery goes through `publish()`, which is also what the bus listeners call, so a later
bus that carries events between processes only has to call `publish()` on each process. The hub
knows connections only through the small `Transport` protocol, never Tornado's web layer.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from itertools import count
from typing import Any, Protocol

from synthorg_tornado import strict_json
from synthorg_tornado.auth.users import UserRecord
from synthorg_tornado.clock import isoformat, utcnow
from synthorg_tornado.errors import LabError
from synthorg_tornado.realtime import channels
from synthorg_tornado.realtime.bus import (
    API_TOKEN_REVOKED,
    SESSION_REVOKED,
    SETTING_UPDATED,
    USER_CHANGED,
    LocalBus,
)

log = logging.getLogger("synthorg.hub")

CLOSE_GOING_AWAY = 1001
CLOSE_REVOKED = 4001
CLOSE_TOO_MANY = 4008
CLOSE_TOO_SLOW = 4009
MAX_FILTER_KEYS = 10
MAX_FILTER_VALUE = 256


class Transport(Protocol):
    """What the hub needs from a socket: send text (returning a flush future) and close."""

    def write_text(self, text: str) -> Awaitable[None] | None: ...

    def close_with(self, code: int, reason: str) -> None: ...


@dataclass(eq=False)
class Connection:
    transport: Transport
    user: UserRecord
    session_id: str | None
    api_token_id: int | None
    queue_limit: int
    channels: set[str] = field(default_factory=set)
    filters: dict[str, dict[str, Any]] = field(default_factory=dict)
    pending: int = 0
    closed: bool = False

    @property
    def own_channel(self) -> str:
        return channels.user_channel(self.user.id)

    def send(self, message: dict[str, Any] | str) -> None:
        """Queue one message. A client that lets `queue_limit` messages pile up is dropped."""
        if self.closed:
            return
        if self.pending >= self.queue_limit:
            self.close(CLOSE_TOO_SLOW, "too slow: outbound queue full")
            return
        text = message if isinstance(message, str) else json.dumps(message, separators=(",", ":"))
        try:
            flushed = self.transport.write_text(text)
        except Exception:
            self.close(CLOSE_GOING_AWAY, "write failed")
            return
        if flushed is not None:
            self.pending += 1
            flushed.add_done_callback(self._flushed)  # type: ignore[attr-defined]

    def _flushed(self, future: Any) -> None:
        self.pending -= 1
        if not future.cancelled():
            future.exception()  # consume, so a closed socket does not log "never retrieved"

    def close(self, code: int, reason: str) -> None:
        if not self.closed:
            self.closed = True
            self.transport.close_with(code, reason)

    def accepts(self, channel: str, payload: Any) -> bool:
        wanted = self.filters.get(channel)
        if not wanted:
            return True
        if not isinstance(payload, dict):
            return False
        return all(payload.get(key) == value for key, value in wanted.items())


@dataclass
class Presence:
    user: UserRecord
    connections: int
    since: datetime


class Hub:
    def __init__(
        self,
        bus: LocalBus,
        max_subscriptions: Callable[[], int],
        max_connections_per_user: int,
        queue_limit: int,
    ) -> None:
        self.bus = bus
        self.max_subscriptions = max_subscriptions
        self.max_connections_per_user = max_connections_per_user
        self.queue_limit = queue_limit
        self.connections: set[Connection] = set()
        self.subscribers: dict[str, set[Connection]] = defaultdict(set)
        self.presence: dict[int, Presence] = {}
        self._event_ids: dict[str, count] = defaultdict(lambda: count(1))
        bus.subscribe(SESSION_REVOKED, self._on_session_revoked)
        bus.subscribe(API_TOKEN_REVOKED, self._on_token_revoked)
        bus.subscribe(USER_CHANGED, self._on_user_changed)
        bus.subscribe(SETTING_UPDATED, self._on_setting_updated)

    # -- lifecycle ---------------------------------------------------------------------

    def connect(
        self, transport: Transport, user: UserRecord, session_id: str | None, api_token_id: int | None
    ) -> Connection | None:
        """Register a socket, or close it with 4008 when the user already has too many."""
        connection = Connection(transport, user, session_id, api_token_id, self.queue_limit)
        existing = self.presence.get(user.id)
        if existing is not None and existing.connections >= self.max_connections_per_user:
            connection.close(CLOSE_TOO_MANY, "too many connections")
            return None
        self.connections.add(connection)
        self._subscribe(connection, connection.own_channel)
        if existing is None:
            self.presence[user.id] = Presence(user, 1, utcnow())
            self.publish(channels.PRESENCE, "presence.online", self._presence_payload(user))
        else:
            existing.connections += 1
        return connection

    def disconnect(self, connection: Connection) -> None:
        if connection not in self.connections:
            return
        connection.closed = True
        self.connections.discard(connection)
        for channel in list(connection.channels):
            self._unsubscribe(connection, channel)
        entry = self.presence.get(connection.user.id)
        if entry is not None:
            entry.connections -= 1
            if entry.connections <= 0:
                del self.presence[connection.user.id]
                self.publish(channels.PRESENCE, "presence.offline", self._presence_payload(connection.user))

    def close_all(self, code: int = CLOSE_GOING_AWAY, reason: str = "server shutting down") -> None:
        for connection in list(self.connections):
            connection.close(code, reason)

    # -- the protocol ------------------------------------------------------------------

    def handle(self, connection: Connection, text: str | bytes, max_bytes: int) -> None:
        """One client message (a text frame, or a binary one holding UTF-8 JSON); every problem
        is answered with an error, never a close."""
        size = len(text) if isinstance(text, bytes) else len(text.encode())
        if size > max_bytes:
            return self._error(connection, "message_too_large", f"Messages are limited to {max_bytes} bytes.")
        try:
            # The one strict reader: nesting that would exhaust the recursion limit, huge
            # numbers and unencodable strings are answered like any other bad JSON.
            message = strict_json.loads(text)
        except LabError as error:
            return self._error(connection, "invalid_json", error.detail)
        if not isinstance(message, dict):
            return self._error(connection, "not_an_object", "The message must be a JSON object.")
        action = message.get("action")
        if action == "ping":
            return connection.send({"action": "pong"})
        if action == "subscribe":
            return self._handle_subscribe(connection, message)
        if action == "unsubscribe":
            return self._handle_unsubscribe(connection, message)
        return self._error(connection, "unknown_action", f"Unknown action {str(action)[:64]!r}.")

    def _handle_subscribe(self, connection: Connection, message: dict[str, Any]) -> None:
        requested = _channel_list(message.get("channels"))
        if requested is None:
            return self._error(
                connection, "invalid_channels", "channels must be a non-empty list of strings."
            )
        filters = message.get("filters")
        if filters is not None and not _valid_filters(filters):
            return self._error(
                connection,
                "invalid_filters",
                f"filters must be an object of at most {MAX_FILTER_KEYS} keys with scalar values "
                f"(strings up to {MAX_FILTER_VALUE} characters).",
            )
        user = connection.user
        granted = [c for c in requested if channels.can_subscribe(user.role, user.id, c)]
        denied = sorted({c for c in requested if c not in granted})
        new = {c for c in granted if c not in connection.channels}
        if len(connection.channels | new) > self.max_subscriptions():
            return self._error(
                connection,
                "too_many_subscriptions",
                f"A connection may subscribe to at most {self.max_subscriptions()} channels.",
            )
        for channel in granted:
            self._subscribe(connection, channel)
            if channel != connection.own_channel:
                if filters:
                    connection.filters[channel] = dict(filters)
                else:
                    connection.filters.pop(channel, None)
        connection.send({"action": "subscribed", "channels": sorted(connection.channels), "denied": denied})

    def _handle_unsubscribe(self, connection: Connection, message: dict[str, Any]) -> None:
        requested = _channel_list(message.get("channels"))
        if requested is None:
            return self._error(
                connection, "invalid_channels", "channels must be a non-empty list of strings."
            )
        for channel in requested:
            if channel != connection.own_channel:  # the own channel always stays
                self._unsubscribe(connection, channel)
        connection.send({"action": "unsubscribed", "channels": sorted(connection.channels)})

    def _error(self, connection: Connection, code: str, text: str) -> None:
        connection.send({"action": "error", "code": code, "error": text})

    # -- delivery ----------------------------------------------------------------------

    def publish(self, channel: str, event_type: str, payload: Any) -> int:
        """Deliver one event to every subscriber of `channel` whose filters accept it."""
        event = {
            "event_type": event_type,
            "channel": channel,
            "timestamp": isoformat(utcnow()),
            "payload": payload,
            "id": next(self._event_ids[channel]),
        }
        subscribers = self.subscribers.get(channel)
        if not subscribers:
            return 0
        text = json.dumps(event, separators=(",", ":"))  # serialised once for every receiver
        delivered = 0
        for connection in list(subscribers):
            if connection.accepts(channel, payload):
                connection.send(text)
                delivered += 1
        return delivered

    def online(self) -> list[dict[str, Any]]:
        return [
            {
                **self._presence_payload(entry.user),
                "connections": entry.connections,
                "since": isoformat(entry.since),
            }
            for entry in sorted(self.presence.values(), key=lambda e: e.user.username.lower())
        ]

    def _presence_payload(self, user: UserRecord) -> dict[str, Any]:
        return {"user_id": str(user.id), "username": user.username, "display_name": user.display_name}

    def _subscribe(self, connection: Connection, channel: str) -> None:
        connection.channels.add(channel)
        self.subscribers[channel].add(connection)

    def _unsubscribe(self, connection: Connection, channel: str) -> None:
        connection.channels.discard(channel)
        connection.filters.pop(channel, None)
        members = self.subscribers.get(channel)
        if members is not None:
            members.discard(connection)
            if not members:
                del self.subscribers[channel]

    # -- reacting to the rest of the system ----------------------------------------------

    def _on_session_revoked(self, _topic: str, event: dict[str, Any]) -> None:
        for connection in list(self.connections):
            if connection.session_id == event["session_id"]:
                connection.close(CLOSE_REVOKED, "session revoked")

    def _on_token_revoked(self, _topic: str, event: dict[str, Any]) -> None:
        token_id = int(event["token_id"])
        for connection in list(self.connections):
            if connection.api_token_id == token_id:
                connection.close(CLOSE_REVOKED, "token revoked")

    def _on_user_changed(self, _topic: str, event: dict[str, Any]) -> None:
        user_id = int(event["user_id"])
        mine = [c for c in self.connections if c.user.id == user_id]
        if event.get("deleted") or event.get("disabled"):
            for connection in mine:
                connection.close(CLOSE_REVOKED, "account disabled")
            return
        for connection in mine:
            connection.user = _with_role(connection.user, event["role"])
            lost = [
                c for c in connection.channels if not channels.can_subscribe(connection.user.role, user_id, c)
            ]
            for channel in lost:
                self._unsubscribe(connection, channel)
            if lost:
                connection.send(
                    {
                        "action": "unsubscribed",
                        "channels": sorted(connection.channels),
                        "reason": "role_changed",
                    }
                )

    def _on_setting_updated(self, _topic: str, event: dict[str, Any]) -> None:
        self.publish(channels.SETTINGS, "setting.updated", event)
        if (event.get("namespace"), event.get("key")) == ("budget", "monthly_limit"):
            self.publish(channels.BUDGET, "budget.updated", {"monthly_limit": event.get("value")})


def _with_role(user: UserRecord, role: str) -> UserRecord:
    return replace(user, role=role)


def _channel_list(value: Any) -> list[str] | None:
    if not isinstance(value, list) or not value or len(value) > 256:
        return None
    if not all(isinstance(item, str) and 0 < len(item) <= 128 for item in value):
        return None
    return list(dict.fromkeys(value))


def _valid_filters(filters: Any) -> bool:
    if not isinstance(filters, dict) or len(filters) > MAX_FILTER_KEYS:
        return False
    for key, value in filters.items():
        if not isinstance(key, str) or len(key) > MAX_FILTER_VALUE:
            return False
        if not isinstance(value, str | int | float | bool):
            return False
        if isinstance(value, str) and len(value) > MAX_FILTER_VALUE:
            return False
    return True
