"""The sessions' writes that no request waits for: batched activity times and expiry pruning."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete

from synthorg_tornado.auth.session_cache import SessionCache
from synthorg_tornado.db.batches import update_each
from synthorg_tornado.db.engine import Database
from synthorg_tornado.db.models import Session as SessionRow
from synthorg_tornado.db.models import WsTicket


async def flush_activity(database: Database, cache: SessionCache) -> None:
    """Write the debounced `last_active_at` values in one batch.

    The one session write that is batched, and so may be lost by a crash (up to a minute of
    activity, see `session_cache`). A failed batch is kept for the next try.
    """
    pending, cache.pending_activity = cache.pending_activity, {}
    if not pending:
        return
    try:
        await update_each(database, SessionRow.__table__.c.last_active_at, pending)
    except Exception:
        # Put them back: the next flush tries again.
        for sid, at in pending.items():
            cache.pending_activity.setdefault(sid, at)
        raise


async def prune_expired(database: Database, now: datetime) -> None:
    """Delete expired sessions and spent or expired tickets; revoked-but-unexpired rows stay, so
    their tokens keep getting 1002 rather than 1001."""
    async with database.session() as session:
        await session.execute(delete(SessionRow).where(SessionRow.expires_at <= now))
        await session.execute(
            delete(WsTicket).where((WsTicket.expires_at <= now) | WsTicket.used_at.is_not(None))
        )
        await session.commit()
