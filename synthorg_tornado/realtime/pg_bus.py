"""The bus of a lab on PostgreSQL: a durable log (`bus_events`) with NOTIFY as the wake-up call.

Each message is a row, inserted in the transaction of the change it announces. NOTIFY carries
only `<id> <topic>`, so the 8,000-byte payload limit never matters, and it is only a hint: at most
once, lost when the listener is down. What counts is the log. A process applies every row after
`last_applied`, in id order, whenever it is woken, every `SAFETY_POLL_SECONDS` in any case, and
after it reconnects.

Ids are handed out before commit, so without care rows could become visible out of id order, and
a reader that moved past a gap would skip the late row forever. Every insert therefore first takes
one transaction-scoped advisory lock (`BUS_LOCK_KEY`), which PostgreSQL releases only once the
commit is visible. A transaction gets its id only after every lower id has committed or rolled
back, so whatever is visible after `last_applied` has no late row hiding in a gap. The price is
that bus-writing transactions commit one at a time; the insert is their last statement, so the
lock is held for one round trip and the commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

import psycopg
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession

from synthorg_tornado.clock import as_utc, utcnow
from synthorg_tornado.db.engine import Database
from synthorg_tornado.realtime.bus import DEFAULT_LOG_BYTES, EVENT_PUBLISHED, REPLAYABLE, Bus, Message, Replay

log = logging.getLogger("synthorg.bus")

NOTIFY_CHANNEL = "synthorg_bus"
LISTENER_NAME = "synthorg-listener"
BUS_LOCK_KEY = 0x53594E4F52474255  # "SYNORGBU": apart from the migration and login locks
SAFETY_POLL_SECONDS = 5.0
READ_BATCH = 500
BACKOFF_FIRST, BACKOFF_MAX = 0.1, 5.0

_STAGE = text(
    """
    WITH locked AS (SELECT pg_advisory_xact_lock(:lock_key)),
    added AS (
        INSERT INTO bus_events (topic, payload, origin, created_at)
        SELECT :topic, :payload, :origin, :created_at FROM locked
        RETURNING id
    )
    SELECT id, pg_notify(:channel, id::text || ' ' || :topic) FROM added
    """
)
_READ = text(
    "SELECT id, topic, payload, created_at FROM bus_events WHERE id > :after ORDER BY id LIMIT :limit"
)
_REPLAY = text(
    "SELECT id, topic, payload, created_at FROM bus_events"
    " WHERE id > :after AND id <= :through AND topic = ANY(:topics) ORDER BY id DESC LIMIT :limit"
)
_OLDEST = text("SELECT min(id) FROM bus_events")
_NEWEST = text("SELECT coalesce(max(id), 0) FROM bus_events")
# The newest row always stays, so "nothing after N was pruned" reads from the table alone.
_PRUNE = text("DELETE FROM bus_events WHERE created_at < :cutoff AND id < (SELECT max(id) FROM bus_events)")
# The byte budget: every row older than the newest one that takes the log past `budget`.
_PRUNE_BYTES = text(
    """
    DELETE FROM bus_events WHERE id < (SELECT max(id) FROM bus_events) AND id <= (
        SELECT id FROM (
            SELECT id, sum(octet_length(payload)) OVER (ORDER BY id DESC) AS newer_bytes FROM bus_events
        ) AS sized WHERE newer_bytes > :budget ORDER BY id DESC LIMIT 1
    )
    """
)
# Every process applies the message that asks for it; after the first, nothing is left to delete.
_FORGET_CHANNEL = text(
    "DELETE FROM bus_events WHERE topic = :topic AND (payload::json ->> 'channel') = :channel"
    " AND id < (SELECT max(id) FROM bus_events)"
)

Resync = Callable[[], Awaitable[None]]


def listener_dsn(url: str) -> str:
    """The SQLAlchemy URL as libpq understands it (no `+psycopg` driver suffix)."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


class PostgresBus(Bus):
    def __init__(
        self,
        database: Database,
        node: str,
        retention_seconds: float,
        max_replay: int,
        max_bytes: int = DEFAULT_LOG_BYTES,
    ) -> None:
        super().__init__(retention_seconds)
        self.max_bytes = max_bytes
        self.database = database
        self.node = node
        self.max_replay = max_replay
        self.dsn = listener_dsn(database.config.url)
        # Set by the services: re-read revocations, users and settings after a pruned gap.
        self.resync: Resync | None = None
        self.listening = False
        self._started = False
        self._own: dict[int, Message] = {}
        self._apply_lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._listener: psycopg.AsyncConnection[Any] | None = None

    # -- writing -----------------------------------------------------------------------

    async def stage(self, db_session: AsyncSession, topic: str, payload: dict[str, Any]) -> Message:
        message = Message(topic, payload)
        row = (
            await db_session.execute(
                _STAGE,
                {
                    "lock_key": BUS_LOCK_KEY,
                    "topic": topic,
                    "payload": json.dumps(payload, separators=(",", ":")),
                    "origin": self.node,
                    "created_at": message.created_at,
                    "channel": NOTIFY_CHANNEL,
                },
            )
        ).one()
        message.id = row.id
        return message

    async def deliver(self, messages: Iterable[Message]) -> None:
        staged = list(messages)
        if not staged:
            return
        if not self._started:  # the command line: nothing here listens but this process
            for message in staged:
                await self.apply(message)
            return
        for message in staged:
            self._own[message.id] = message
        try:
            await self.catch_up()
        except Exception:
            # Committed already: the log keeps it, and the catch-up loop applies it shortly.
            log.warning("could not read the event log after a commit; retrying in the background")
            self._wake.set()

    async def publish(self, topic: str, payload: dict[str, Any]) -> Message:
        async with self.database.session() as session:
            message = await self.stage(session, topic, payload)
            await session.commit()
        await self.deliver([message])
        return message

    # -- reading -----------------------------------------------------------------------

    async def catch_up(self) -> int:
        """Apply every visible row after `last_applied`, in order; returns how many."""
        applied = 0
        async with self._apply_lock:
            while True:
                # This process's own next message needs no read: it is in memory already.
                own = self._own.pop(self.last_applied + 1, None)
                if own is not None:
                    await self._apply_next(own)
                    applied += 1
                    continue
                async with self.database.connection() as connection:
                    rows = (
                        await connection.execute(_READ, {"after": self.last_applied, "limit": READ_BATCH})
                    ).all()
                    if rows and rows[0].id > self.last_applied + 1:
                        # A hole: a rolled-back id, or rows pruned before this process read them.
                        oldest = (await connection.execute(_OLDEST)).scalar()
                        if oldest is not None and oldest > self.last_applied + 1:
                            await self._resync(rows[0].id - 1)
                for row in rows:
                    message = self._own.pop(row.id, None) or _message(row)
                    await self._apply_next(message)
                    applied += 1
                if len(rows) < READ_BATCH:
                    break
        # A message of ours that committed but was never seen (e.g. read while it was in flight).
        for stale in [i for i in self._own if i <= self.last_applied]:
            del self._own[stale]
        return applied

    async def _apply_next(self, message: Message) -> None:  # with _apply_lock held
        self.last_applied = message.id
        await self.apply(message)

    async def replay(self, after: int, topics: Sequence[str] = REPLAYABLE) -> Replay:
        through = self.last_applied
        async with self.database.connection() as connection:
            oldest = (await connection.execute(_OLDEST)).scalar()
            rows = (
                await connection.execute(
                    _REPLAY,
                    {
                        "after": after,
                        "through": through,
                        "topics": list(topics),
                        "limit": self.max_replay + 1,
                    },
                )
            ).all()
        # Newest first from the database: a gap too long to send keeps its latest part.
        complete = len(rows) <= self.max_replay
        recovered = complete and (oldest is None or oldest <= after + 1 or after >= through)
        return Replay([_message(row) for row in reversed(rows[: self.max_replay])], recovered)

    async def prune(self) -> None:
        async with self.database.session() as session:
            await session.execute(_PRUNE, {"cutoff": utcnow() - self.retention})
            await session.execute(_PRUNE_BYTES, {"budget": self.max_bytes})
            await session.commit()

    async def forget_channel(self, channel: str) -> None:
        async with self.database.session() as session:
            await session.execute(_FORGET_CHANNEL, {"topic": EVENT_PUBLISHED, "channel": channel})
            await session.commit()

    # -- listening ---------------------------------------------------------------------

    async def start(self) -> None:
        """Called before the caches are loaded: what commits after this point is applied from
        the log, what committed before is in what the caches load."""
        async with self.database.connection() as connection:
            self.last_applied = int((await connection.execute(_NEWEST)).scalar_one())
        self._started = True
        self._tasks = [asyncio.create_task(self._listen()), asyncio.create_task(self._apply_loop())]

    async def stop(self) -> None:
        self._started = False
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    async def _apply_loop(self) -> None:
        """Woken by NOTIFY, and every few seconds regardless, since a NOTIFY may be lost."""
        failing = False
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), SAFETY_POLL_SECONDS)
            self._wake.clear()
            try:
                await self.catch_up()
            except Exception as exc:
                if not failing:
                    log.warning("cannot read the event log (%s); retrying", _reason(exc))
                failing = True
                continue
            if failing:
                log.info("reading the event log again")
                failing = False

    async def _listen(self) -> None:
        """One dedicated autocommit connection outside the pool, reconnected with jittered backoff."""
        lost_at: float | None = None
        attempt = 0
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    self.dsn,
                    autocommit=True,
                    application_name=LISTENER_NAME,
                    connect_timeout=5,
                    keepalives=1,
                    keepalives_idle=10,
                    keepalives_interval=5,
                    keepalives_count=3,
                ) as connection:
                    self._listener = connection
                    await connection.execute(f"LISTEN {NOTIFY_CHANNEL}")
                    self.listening = True
                    if lost_at is not None:
                        await self._recover(time.monotonic() - lost_at)
                    lost_at, attempt = None, 0
                    await self._receive(connection)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.listening = False
                if lost_at is None:
                    lost_at = time.monotonic()
                    log.warning("bus listener connection lost (%s); reconnecting", _reason(exc))
            finally:
                self._listener = None
            delay = min(BACKOFF_MAX, BACKOFF_FIRST * 2**attempt) * random.uniform(0.5, 1.0)  # noqa: S311 (jitter, not a secret)
            attempt += 1
            await asyncio.sleep(delay)

    async def _receive(self, connection: psycopg.AsyncConnection[Any]) -> None:
        while True:
            async for notify in connection.notifies(timeout=SAFETY_POLL_SECONDS):
                position = notify.payload.split(" ", 1)[0]
                if not position.isdigit() or int(position) > self.last_applied:
                    self._wake.set()
            # Quiet for a while: make sure the connection is still there (a lost host sends no FIN).
            await connection.execute("SELECT 1")

    async def _recover(self, outage_seconds: float) -> None:
        """After an outage: catch up from `last_applied` (resyncing if the gap was pruned)."""
        applied = await self.catch_up()
        log.info(
            "bus listener reconnected after %.1f s; applied %d events missed during the outage",
            outage_seconds,
            applied,
        )

    async def _resync(self, through: int) -> None:
        """Messages after `last_applied` were pruned unread: re-read what they could have changed."""
        missed = through - self.last_applied
        self.last_applied = through
        if self.resync is not None:
            await self.resync()
        log.warning(
            "up to %d events were pruned from the log before this process read them; revocations, "
            "users and settings were re-read from the database",
            missed,
        )


def _message(row: Any) -> Message:
    return Message(row.topic, json.loads(row.payload), id=row.id, created_at=as_utc(row.created_at))


def _reason(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
