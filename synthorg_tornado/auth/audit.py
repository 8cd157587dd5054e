"""The audit log: who did what, to what, from where, with what outcome. Never a secret."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, insert, or_, select

from synthorg_tornado import strict_json
from synthorg_tornado.clock import as_utc, isoformat, utcnow
from synthorg_tornado.db.engine import Database
from synthorg_tornado.db.models import AuditEntry
from synthorg_tornado.errors import InvalidValue, LabError, Unavailable

log = logging.getLogger("synthorg.audit")

MAX_PAGE = 500
FLUSH_DELAY_SECONDS = 0.2
# Entries kept for another try when the database is away; beyond this the oldest are dropped.
MAX_RETAINED = 10_000
MAX_ENTRY_ID = 2**31 - 1  # audit_log.id is an INTEGER column


@dataclass(frozen=True)
class Actor:
    """Who acts: a user, or the command line / the server itself (`user_id` None)."""

    user_id: int | None
    name: str
    ip_address: str = ""


SYSTEM = Actor(None, "system")


class AuditLog:
    """Entries are buffered and written in batches, a moment after they are recorded.

    A login storm or a burst of conflicting writes would otherwise cost one transaction per
    attempt. Reading the log flushes first, and so does shutdown, so nothing recorded is missing
    from a query or lost on a clean stop.
    """

    def __init__(self, database: Database) -> None:
        self.database = database
        self._pending: list[dict[str, Any]] = []
        self._flush_task: asyncio.Task | None = None
        # Held while a batch is written, so a reader that flushes first also waits for a batch
        # already on its way to the database.
        self._writing = asyncio.Lock()

    async def record(
        self,
        action: str,
        actor: Actor,
        *,
        target: str = "",
        outcome: str = "success",
        detail: dict[str, Any] | None = None,
    ) -> None:
        """Queue one entry. A failure to audit is logged loudly but does not undo the action."""
        self._pending.append(
            {
                "at": utcnow(),
                "actor_id": actor.user_id,
                "actor": actor.name[:64],
                "action": action[:64],
                "target": target[:256],
                "ip_address": actor.ip_address[:64],
                "outcome": outcome[:32],
                "detail": detail or None,
            }
        )
        if self._flush_task is None or self._flush_task.done():
            self._flush_task = asyncio.get_running_loop().create_task(self._flush_soon())

    async def _flush_soon(self) -> None:
        await asyncio.sleep(FLUSH_DELAY_SECONDS)
        await self.flush()

    async def flush(self) -> None:
        """Write every queued entry in one statement."""
        async with self._writing:
            batch, self._pending = self._pending, []
            if not batch:
                return
            try:
                await self._write(batch)
            except Unavailable:
                # The database is away: keep the entries for the next flush.
                log.warning("database unavailable; %d audit entries wait for it", len(batch))
                self._pending[:0] = batch[-MAX_RETAINED:]
            except Exception:
                # One entry the database refuses must not hold back the others: write them
                # one by one and report those that still fail.
                for entry in batch:
                    try:
                        await self._write([entry])
                    except Exception:
                        log.exception(
                            "audit entry %s by %s could not be written", entry["action"], entry["actor"]
                        )

    async def _write(self, entries: list[dict[str, Any]]) -> None:
        async with self.database.session() as session:
            await (await session.connection()).execute(insert(AuditEntry.__table__), entries)
            await session.commit()

    async def close(self) -> None:
        if self._flush_task is not None and not self._flush_task.done():
            self._flush_task.cancel()
        await self.flush()

    async def query(
        self,
        *,
        actor: str | None = None,
        action: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Newest first, keyset-paged on (at, id) so pages stay stable while entries arrive."""
        if not 1 <= limit <= MAX_PAGE:
            raise InvalidValue(f"limit must be between 1 and {MAX_PAGE}.")
        await self.flush()
        statement = select(AuditEntry)
        if actor:
            statement = statement.where(AuditEntry.actor == actor)
        if action:
            statement = statement.where(AuditEntry.action == action)
        if since:
            statement = statement.where(AuditEntry.at >= since)
        if until:
            statement = statement.where(AuditEntry.at < until)
        if cursor:
            at, entry_id = _decode_cursor(cursor)
            statement = statement.where(
                or_(AuditEntry.at < at, and_(AuditEntry.at == at, AuditEntry.id < entry_id))
            )
        statement = statement.order_by(AuditEntry.at.desc(), AuditEntry.id.desc()).limit(limit + 1)
        async with self.database.session() as session:
            rows = list((await session.scalars(statement)).all())
        more = len(rows) > limit
        rows = rows[:limit]
        next_cursor = _encode_cursor(rows[-1]) if more and rows else None
        return [_public(row) for row in rows], next_cursor


def _public(entry: AuditEntry) -> dict[str, Any]:
    return {
        "id": str(entry.id),
        "at": isoformat(entry.at),
        "actor": entry.actor,
        "actor_id": None if entry.actor_id is None else str(entry.actor_id),
        "action": entry.action,
        "target": entry.target,
        "ip_address": entry.ip_address,
        "outcome": entry.outcome,
        "detail": entry.detail or {},
    }


def _encode_cursor(entry: AuditEntry) -> str:
    raw = json.dumps([isoformat(entry.at), entry.id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, int]:
    """Only a cursor we could have issued: [RFC 3339 text, an id in the column's range]. A
    client may send anything here, so nothing it holds reaches the query unchecked."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        at_text, entry_id = strict_json.loads(base64.urlsafe_b64decode(padded))
        if not isinstance(at_text, str) or type(entry_id) is not int or not 0 < entry_id <= MAX_ENTRY_ID:
            raise ValueError(cursor)
        return as_utc(datetime.fromisoformat(at_text.replace("Z", "+00:00"))), entry_id
    except (LabError, ValueError, TypeError, OverflowError):
        raise InvalidValue("cursor is not valid; use the next_cursor of a previous page.") from None
