"""The hub: channels, fan-out, presence, and the lifecycle rules for live connections.

Every event a socket receives comes from a bus message, applied in the order of the lab's log by
`_deliver()`: events published on this process and on any other, setting changes, presence. So an
event's `id` is its position in that log, which increases on every channel however many processes
publish, and a client that reconnects can ask for what it missed (`since`). The hub knows
connections only through the small `Transport` protocol, never Tornado's web layer.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from synthorg_tornado import strict_json
from synthorg_tornado.accounts.records import UserRecord
from synthorg_tornado.clock import isoformat
from synthorg_tornado.errors import LabError
from synthorg_tornado.realtime import channels, protocol
from synthorg_tornado.realtime.bus import (
    API_TOKEN_REVOKED,
    EVENT_PUBLISHED,
    SESSION_REVOKED,
    SETTING_UPDATED,
    USER_CHANGED,
    Bus,
    Message,
)
from synthorg_tornado.realtime.connection import (
    CLOSE_GOING_AWAY,
    CLOSE_REVOKED,
    CLOSE_TOO_MANY,
    Connection,
    Transport,
)
from synthorg_tornado.realtime.ended import RecentlyEnded
from synthorg_tornado.realtime.limits import PublishLimits
from synthorg_tornado.realtime.presence import LabPresence

log = logging.getLogger("synthorg.hub")

__all__ = ["CLOSE_GOING_AWAY", "CLOSE_REVOKED", "Connection", "Hub", "Transport"]


def channel_events(message: Message) -> list[tuple[str, str, Any]]:
    """The (channel, event type, payload) a replayable bus message becomes."""
    body = message.payload
    if message.topic == EVENT_PUBLISHED:
        return [(body["channel"], body["event_type"], body["payload"])]
    if message.topic == SETTING_UPDATED:
        event = body["event"]
        derived = [(channels.SETTINGS, "setting.updated", event)]
        if (event.get("namespace"), event.get("key")) == ("budget", "monthly_limit"):
            derived.append((channels.BUDGET, "budget.updated", {"monthly_limit": event.get("value")}))
        return derived
    return []


class Hub:
    def __init__(
        self,
        bus: Bus,
        presence: LabPresence,
        max_subscriptions: Callable[[], int],
        max_connections_per_user: int,
        queue_limit: int,
        limits: PublishLimits,
    ) -> None:
        self.bus = bus
        self.limits = limits
        self.presence = presence
        self.max_subscriptions = max_subscriptions
        self.max_connections_per_user = max_connections_per_user
        self.queue_limit = queue_limit
        self.connections: set[Connection] = set()
        self.subscribers: dict[str, set[Connection]] = defaultdict(set)
        self._resumes: set[asyncio.Task[None]] = set()
        self._ended = RecentlyEnded()
        presence.emit = self._on_presence
        bus.subscribe(SESSION_REVOKED, self._on_session_revoked)
        bus.subscribe(API_TOKEN_REVOKED, self._on_token_revoked)
        bus.subscribe(USER_CHANGED, self._on_user_changed)
        bus.subscribe(USER_CHANGED, self._forget_deleted_user)
        bus.subscribe(SETTING_UPDATED, self._on_replayable)
        bus.subscribe(EVENT_PUBLISHED, self._on_replayable)

    # -- lifecycle ---------------------------------------------------------------------

    def connect(
        self, transport: Transport, user: UserRecord, session_id: str | None, api_token_id: int | None
    ) -> Connection | None:
        """Register a socket, or close it with 4008 when the user already has too many."""
        connection = Connection(transport, user, session_id, api_token_id, self.queue_limit)
        ended = {("user", user.id), ("session", session_id), ("token", api_token_id)}
        if any(key in self._ended for key in ended):
            connection.close(CLOSE_REVOKED, "credential ended")
            return None
        if self.presence.count(user.id) >= self.max_connections_per_user:
            connection.close(CLOSE_TOO_MANY, "too many connections")
            return None
        self.connections.add(connection)
        self._subscribe(connection, connection.own_channel)
        self.presence.opened(user)
        return connection

    def disconnect(self, connection: Connection) -> None:
        if connection not in self.connections:
            return
        connection.closed = True
        self.connections.discard(connection)
        for channel in list(connection.channels):
            self._unsubscribe(connection, channel)
        self.presence.closed(connection.user.id)

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
        requested = protocol.channel_list(message.get("channels"))
        if requested is None:
            return self._error(
                connection, "invalid_channels", "channels must be a non-empty list of strings."
            )
        filters = message.get("filters")
        if filters is not None and not protocol.valid_filters(filters):
            return self._error(
                connection,
                "invalid_filters",
                f"filters must be an object of at most {protocol.MAX_FILTER_KEYS} keys with scalar "
                f"values (strings up to {protocol.MAX_FILTER_VALUE} characters).",
            )
        since = None
        if message.get("since") is not None:
            since = protocol.since_positions(message["since"], requested)
            if since is None:
                return self._error(
                    connection,
                    "invalid_since",
                    "since must map channels of this subscribe to the last event id seen "
                    "(a non-negative integer).",
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
        reply = {"action": "subscribed", "channels": sorted(connection.channels), "denied": denied}
        resumed = {c: p for c, p in (since or {}).items() if c in granted}
        if since is None:
            return connection.send(reply)
        # Live events wait until the missed ones are out; the log read is not on this loop turn.
        connection.hold()
        task = asyncio.create_task(self._resume(connection, reply, resumed))
        self._resumes.add(task)
        task.add_done_callback(self._resumes.discard)

    async def _resume(self, connection: Connection, reply: dict[str, Any], since: dict[str, int]) -> None:
        """Reply with `recovered`, then the retained events after each position, then the held."""
        try:
            replay = await self.bus.replay(min(since.values(), default=self.bus.last_applied))
        except Exception:
            log.warning("could not read the event log to resume a subscription")
            connection.write(json.dumps({**reply, "recovered": False}, separators=(",", ":")))
            connection.release()
            return
        missed = [
            _event_text(channel, event_type, payload, message)
            for message in replay.messages
            for channel, event_type, payload in channel_events(message)
            if channel in since and message.id > since[channel] and connection.accepts(channel, payload)
        ]
        # Room in the socket's queue for the reply, the replay and what is held meanwhile: a
        # longer gap sends its newest events and says it is not complete.
        room = max(1, self.queue_limit // 2)
        recovered = replay.recovered and len(missed) <= room
        connection.write(json.dumps({**reply, "recovered": recovered}, separators=(",", ":")))
        for text in missed[-room:]:
            connection.write(text)
        connection.release()

    def _handle_unsubscribe(self, connection: Connection, message: dict[str, Any]) -> None:
        requested = protocol.channel_list(message.get("channels"))
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

    async def publish(self, publisher_id: int, channel: str, event_type: str, payload: Any) -> int:
        """`POST /api/v1/events`: into the lab's log, within the publisher's size and rate
        limits; returns the sockets of this process it reached."""
        body = {"channel": channel, "event_type": event_type, "payload": payload}
        self.limits.admit(publisher_id, body)
        message = await self.bus.publish(EVENT_PUBLISHED, body)
        return message.delivered

    def _deliver(self, channel: str, event_type: str, payload: Any, message: Message) -> int:
        """Deliver one event to every subscriber of `channel` whose filters accept it."""
        subscribers = self.subscribers.get(channel)
        if not subscribers:
            return 0
        text = _event_text(channel, event_type, payload, message)  # serialised once for all
        delivered = 0
        for connection in list(subscribers):
            if connection.accepts(channel, payload):
                connection.send(text)
                delivered += 1
        return delivered

    def online(self) -> list[dict[str, Any]]:
        return self.presence.online()

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

    def _on_replayable(self, message: Message) -> None:
        for channel, event_type, payload in channel_events(message):
            message.delivered += self._deliver(channel, event_type, payload, message)

    def _on_presence(self, event_type: str, user: dict[str, Any], message: Message) -> None:
        self._deliver(channels.PRESENCE, event_type, user, message)

    def _on_session_revoked(self, message: Message) -> None:
        session_id = message.payload["session_id"]
        self._ended.add(("session", session_id))
        for connection in list(self.connections):
            if connection.session_id == session_id:
                connection.close(CLOSE_REVOKED, "session revoked")

    def _on_token_revoked(self, message: Message) -> None:
        token_id = int(message.payload["token_id"])
        self._ended.add(("token", token_id))
        for connection in list(self.connections):
            if connection.api_token_id == token_id:
                connection.close(CLOSE_REVOKED, "token revoked")

    async def _forget_deleted_user(self, message: Message) -> None:
        """A deleted user leaves nothing behind here: not in presence from this point of the log
        (whatever closes of its sockets are still on their way), nor in retained events."""
        if message.payload.get("deleted"):
            user_id = int(message.payload["user_id"])
            self.presence.forget(user_id, message)
            await self.bus.forget_channel(channels.user_channel(user_id))

    def _on_user_changed(self, message: Message) -> None:
        event = message.payload
        user_id = int(event["user_id"])
        mine = [c for c in self.connections if c.user.id == user_id]
        if event.get("deleted") or event.get("disabled"):
            self._ended.add(("user", user_id))
            for connection in mine:
                connection.close(CLOSE_REVOKED, "account disabled")
            return
        self._ended.discard(("user", user_id))
        for connection in mine:
            connection.user = replace(connection.user, role=event["role"])
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


def _event_text(channel: str, event_type: str, payload: Any, message: Message) -> str:
    event = {
        "event_type": event_type,
        "channel": channel,
        "timestamp": isoformat(message.created_at),
        "payload": payload,
        "id": message.id,
    }
    return json.dumps(event, separators=(",", ":"))
