"""The audit log: who did what, to what, from where, with what outcome. Never a secret.

Nothing here is buffered. An action that changes state adds its entry to its own transaction
(`AuditLog.add`), so the change and its entry commit together or not at all: an acknowledged
action always has its row, even after `kill -9`. An outcome that changes nothing (a refused
login, a conflict, an invalid value) has no transaction of its own, so `AuditLog.record` writes
and commits its entry before it returns. What the server does batch in memory, and may lose on a
crash, is activity timestamps only (sessions' `last_active_at`, API tokens' `last_used_at`).
"""

from __future__ import annotations

import base64
import json
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from synthorg_tornado import strict_json
from synthorg_tornado.clock import as_utc, isoformat, utcnow
from synthorg_tornado.db.engine import Database
from synthorg_tornado.db.models import AuditEntry
from synthorg_tornado.errors import InvalidValue, LabError

log = logging.getLogger("synthorg.audit")

MAX_PAGE = 500
MAX_ENTRY_ID = 2**31 - 1  # audit_log.id is an INTEGER column
# Rows removed per statement when pruning, so a first prune of a large log never holds SQLite's
# write lock (or a long PostgreSQL transaction) for more than a moment.
PRUNE_BATCH = 5_000


@dataclass(frozen=True)
class Actor:
    """Who acts: a user, or the command line / the server itself (`user_id` None)."""

    user_id: int | None
    name: str
    ip_address: str = ""


SYSTEM = Actor(None, "system")


@dataclass(frozen=True)
class AuditEvent:
    """An entry a caller hands to a service, to be written in the service's own transaction
    (the logout that a session revocation carries, the login that a new session carries)."""

    action: str
    actor: Actor
    target: str = ""
    outcome: str = "success"
    detail: dict[str, Any] | None = None


class AuditLog:
    """Writes entries synchronously with what they describe; reads them newest first."""

    def __init__(self, database: Database) -> None:
        self.database = database

    def add(
        self,
        db_session: AsyncSession,
        action: str,
        actor: Actor,
        *,
        target: str = "",
        outcome: str = "success",
        detail: dict[str, Any] | None = None,
    ) -> None:
        """Add one entry to the caller's open transaction: it commits (or not) with the action."""
        db_session.add(
            AuditEntry(
                at=utcnow(),
                actor_id=actor.user_id,
                actor=actor.name[:64],
                action=action[:64],
                target=target[:256],
                ip_address=actor.ip_address[:64],
                outcome=outcome[:32],
                detail=detail or None,
            )
        )

    def add_event(self, db_session: AsyncSession, event: AuditEvent) -> None:
        self.add(
            db_session,
            event.action,
            event.actor,
            target=event.target,
            outcome=event.outcome,
            detail=event.detail,
        )

    async def record(
        self,
        action: str,
        actor: Actor,
        *,
        target: str = "",
        outcome: str = "success",
        detail: dict[str, Any] | None = None,
    ) -> None:
        """Write and commit one entry before returning: for outcomes that change no state.

        A database that cannot take the entry raises (`Unavailable`), so the caller answers 503
        rather than an answer the log does not show.
        """
        async with self.database.session() as session:
            self.add(session, action, actor, target=target, outcome=outcome, detail=detail)
            await session.commit()

    async def prune(self, before: datetime) -> int:
        """Delete entries older than `before` (the retention limit); returns how many."""
        removed = 0
        while True:
            oldest = (
                select(AuditEntry.id).where(AuditEntry.at < before).order_by(AuditEntry.id).limit(PRUNE_BATCH)
            )
            async with self.database.session() as session:
                result = await session.execute(
                    delete(AuditEntry)
                    .where(AuditEntry.id.in_(oldest))
                    .execution_options(synchronize_session=False)
                )
                await session.commit()
            removed += result.rowcount or 0
            if (result.rowcount or 0) < PRUNE_BATCH:
                break
        if removed:
            log.info("pruned %d audit entries older than %s", removed, isoformat(before))
        return removed

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
