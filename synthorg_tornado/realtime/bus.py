"""The event bus: the low seam between services and everything that reacts to them.

Services announce changes here (a session was revoked, a user changed, a setting was updated, an
event was published) without knowing who listens, nor whether the lab has one process or many.
Every message gets a place in one ordered log (`Message.id`), and every process applies the log in
that order, its own messages through the same listeners as everyone else's, each exactly once.

Two implementations share this interface, chosen from the database URL (`services.py`):
- `LocalBus`: SQLite, one process. The log lives in memory.
- `PostgresBus` (`pg_bus.py`): the log is the `bus_events` table, and NOTIFY wakes the other
  processes, which read what they have not applied yet.

A change that commits to the database announces itself in the same transaction where it can:
`await bus.stage(db_session, topic, payload)` before the commit, `await bus.deliver(messages)`
after it. So on PostgreSQL a revocation and its message commit together, or neither does.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import count
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from synthorg_tornado.clock import utcnow

log = logging.getLogger("synthorg.bus")

SESSION_REVOKED = "session.revoked"
USER_CHANGED = "user.changed"
USER_UNLOCKED = "user.unlocked"
API_TOKEN_REVOKED = "api_token.revoked"
SETTING_UPDATED = "setting.updated"
EVENT_PUBLISHED = "event.published"
PRESENCE = "presence"

# What a reconnecting socket can ask to have replayed: the topics that become channel events
# by themselves (presence is state, re-read with GET /api/v1/presence).
REPLAYABLE = (EVENT_PUBLISHED, SETTING_UPDATED)
# The most a LocalBus keeps in memory for replays, whatever the retention window says.
LOCAL_LOG_LIMIT = 100_000
# `realtime.event_log_max_bytes`: the retained log's byte budget, counted as stored JSON.
DEFAULT_LOG_BYTES = 64 * 1024 * 1024


def stored_size(payload: Any) -> int:
    """The bytes a message's payload takes in the log: its compact JSON, which is ASCII (so
    len() is bytes), as `bus_events` stores it."""
    return len(json.dumps(payload, separators=(",", ":"), default=str))


@dataclass(eq=False)
class Message:
    topic: str
    payload: dict[str, Any]
    # The place in the lab's ordered log; 0 until the bus has given it one.
    id: int = 0
    created_at: datetime = field(default_factory=utcnow)
    # Sockets of this process the message reached (the hub counts them for POST /events).
    delivered: int = 0
    # What it counts against a LocalBus's byte budget (`stored_size`), once retained.
    size: int = 0


Listener = Callable[[Message], Awaitable[None] | None]


@dataclass(frozen=True)
class Replay:
    """The retained messages after a position, and whether nothing after it was pruned."""

    messages: list[Message]
    recovered: bool


class Bus:
    """The interface every service and the hub use; subclasses say where the log lives."""

    def __init__(self, retention_seconds: float = 300.0) -> None:
        self.retention = timedelta(seconds=retention_seconds)
        self._listeners: dict[str, list[Listener]] = defaultdict(list)
        # The position of the last message applied in this process.
        self.last_applied = 0

    def subscribe(self, topic: str, listener: Listener) -> None:
        self._listeners[topic].append(listener)

    async def stage(self, db_session: AsyncSession, topic: str, payload: dict[str, Any]) -> Message:
        """Announce a change in the caller's transaction (its last statement before commit)."""
        raise NotImplementedError

    async def deliver(self, messages: Iterable[Message]) -> None:
        """After the commit: apply the staged messages here, in log order."""
        raise NotImplementedError

    async def publish(self, topic: str, payload: dict[str, Any]) -> Message:
        """Announce something that is no part of a database change (an event, presence)."""
        raise NotImplementedError

    async def replay(self, after: int, topics: Sequence[str] = REPLAYABLE) -> Replay:
        """Retained messages of `topics` after `after` up to `last_applied`, in order."""
        raise NotImplementedError

    async def start(self) -> None:
        """Begin applying what other processes announce (a no-op for one process)."""

    async def stop(self) -> None:
        """Stop listening; messages still staged by this process are not lost (they are logged)."""

    async def prune(self) -> None:
        """Drop what is older than the retention window."""

    def retained(self) -> int:
        """Messages held in this process's memory for resumes (none where the database keeps them)."""
        return 0

    async def forget_channel(self, channel: str) -> None:
        """Drop the retained events of `channel` (a deleted user's own): no resume replays them."""

    async def apply(self, message: Message) -> None:
        """Every listener of the topic; one failing listener never stops the others."""
        for listener in list(self._listeners.get(message.topic, ())):
            try:
                result = listener(message)
                if result is not None:
                    await result
            except Exception:
                log.exception("listener for %s failed", message.topic)


class LocalBus(Bus):
    """One process: the log is a window of recent replayable messages in memory, bounded by age
    (`retention_seconds`), by count (`LOCAL_LOG_LIMIT`) and by bytes (`max_bytes`): whichever
    bound is reached first drops the oldest, and a resume from before them is not `recovered`."""

    def __init__(self, retention_seconds: float = 300.0, max_bytes: int = DEFAULT_LOG_BYTES) -> None:
        super().__init__(retention_seconds)
        self.max_bytes = max_bytes
        self.retained_bytes = 0
        # Ids start at the microseconds of the start, so a restart never hands out an id of the
        # run before it (no run issues a million a second): a `since` from before the restart
        # is older than anything here and answered `"recovered": false`, never confused with
        # a new event that reused its id.
        first = int(utcnow().timestamp() * 1_000_000)
        self._ids = count(first)
        self._log: deque[Message] = deque()
        self._pruned_through = self.last_applied = first - 1

    async def stage(self, db_session: AsyncSession, topic: str, payload: dict[str, Any]) -> Message:
        return Message(topic, payload)

    async def deliver(self, messages: Iterable[Message]) -> None:
        for message in messages:
            await self._append_and_apply(message)

    async def publish(self, topic: str, payload: dict[str, Any]) -> Message:
        message = Message(topic, payload)
        await self._append_and_apply(message)
        return message

    async def _append_and_apply(self, message: Message) -> None:
        message.id = next(self._ids)
        message.created_at = utcnow()
        # Only what a resume can ask for is kept: a logout's announcement, once applied, is
        # nobody's business, and keeping it for the retention window cost every login memory.
        if message.topic in REPLAYABLE:
            message.size = stored_size(message.payload)
            self._log.append(message)
            self.retained_bytes += message.size
            while len(self._log) > 1 and (
                len(self._log) > LOCAL_LOG_LIMIT or self.retained_bytes > self.max_bytes
            ):
                self._drop_oldest()
        self.last_applied = message.id
        await self.apply(message)

    def retained(self) -> int:
        return len(self._log)

    async def replay(self, after: int, topics: Sequence[str] = REPLAYABLE) -> Replay:
        self._prune_before(utcnow() - self.retention)
        wanted = set(topics)
        messages = [m for m in self._log if m.id > after and m.topic in wanted]
        return Replay(messages, recovered=after >= self._pruned_through)

    async def prune(self) -> None:
        self._prune_before(utcnow() - self.retention)

    async def forget_channel(self, channel: str) -> None:
        kept = [m for m in self._log if m.topic != EVENT_PUBLISHED or m.payload.get("channel") != channel]
        if len(kept) < len(self._log):
            self._log = deque(kept)
            self.retained_bytes = sum(message.size for message in kept)

    def _prune_before(self, cutoff: datetime) -> None:
        # The newest message always stays, so "nothing was pruned after N" can be told apart
        # from "nothing was ever logged".
        while len(self._log) > 1 and self._log[0].created_at < cutoff:
            self._drop_oldest()

    def _drop_oldest(self) -> None:
        dropped = self._log.popleft()
        self.retained_bytes -= dropped.size
        self._pruned_through = dropped.id
