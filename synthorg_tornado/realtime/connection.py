"""One live socket as the hub sees it: who it is, what it subscribed to, and its outbound queue."""

from __future__ import annotations

import json
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, Protocol

from synthorg_tornado.accounts.records import UserRecord
from synthorg_tornado.realtime import channels

CLOSE_GOING_AWAY = 1001
CLOSE_REVOKED = 4001
CLOSE_TOO_MANY = 4008
CLOSE_TOO_SLOW = 4009


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
    # While a resume reads the log, live messages wait here, to follow the replayed ones.
    held: list[str] | None = None

    @property
    def own_channel(self) -> str:
        return channels.user_channel(self.user.id)

    def send(self, message: dict[str, Any] | str) -> None:
        """Queue one message. A client that lets `queue_limit` messages pile up is dropped."""
        text = message if isinstance(message, str) else json.dumps(message, separators=(",", ":"))
        if self.held is not None:
            if len(self.held) >= self.queue_limit:
                self.close(CLOSE_TOO_SLOW, "too slow: outbound queue full")
            else:
                self.held.append(text)
            return
        self.write(text)

    def hold(self) -> None:
        if self.held is None:
            self.held = []

    def release(self) -> None:
        held, self.held = self.held or [], None
        for text in held:
            self.write(text)

    def write(self, text: str) -> None:
        """Onto the socket now, ahead of anything held."""
        if self.closed:
            return
        if self.pending >= self.queue_limit:
            self.close(CLOSE_TOO_SLOW, "too slow: outbound queue full")
            return
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
