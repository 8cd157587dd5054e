"""Server-side sessions: a row in the database AND an entry in this process's cache.

Authenticating a request reads only the cache; the database is read once per session and process
(a session created elsewhere), and written when sessions are created or revoked, plus a debounced
`last_active_at` so that a busy user costs one write a minute. Revocation updates the database
first, so a failed write is an error rather than a revocation that a restart would undo, and then
the cache, so the very next request sees it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, delete, select, update

from synthorg_tornado.auth.audit import Actor, AuditLog
from synthorg_tornado.auth.tokens import SessionTokens, new_session_id
from synthorg_tornado.auth.users import UserRecord, UserService
from synthorg_tornado.clock import isoformat, utcnow
from synthorg_tornado.db.engine import Database
from synthorg_tornado.db.models import Session as SessionRow
from synthorg_tornado.db.models import WsTicket
from synthorg_tornado.errors import (
    NotAuthenticated,
    NotFound,
    PersistenceFailure,
    SessionExpired,
    SessionRevoked,
    Unavailable,
)
from synthorg_tornado.realtime.bus import SESSION_REVOKED, LocalBus

log = logging.getLogger("synthorg.sessions")

ACTIVITY_DEBOUNCE = timedelta(minutes=1)
MAX_USER_AGENT = 512


@dataclass
class CachedSession:
    session_id: str
    user_id: int
    created_at: datetime
    expires_at: datetime
    last_active_at: datetime
    ip_address: str
    user_agent: str
    revoked: bool = False
    last_written_at: datetime | None = None
    # The Bearer identity last built for this session (see Authenticator.identify_cached).
    identity: Any = None

    def public(self, user: UserRecord | None, current_session_id: str | None) -> dict[str, Any]:
        return {
            "session_id": self.session_id,
            "user_id": str(self.user_id),
            "username": user.username if user else "",
            "ip_address": self.ip_address,
            "user_agent": self.user_agent,
            "created_at": isoformat(self.created_at),
            "last_active_at": isoformat(self.last_active_at),
            "expires_at": isoformat(self.expires_at),
            "is_current": self.session_id == current_session_id,
        }


def _cached(row: SessionRow) -> CachedSession:
    return CachedSession(
        session_id=row.id,
        user_id=row.user_id,
        created_at=row.created_at,
        expires_at=row.expires_at,
        last_active_at=row.last_active_at,
        ip_address=row.ip_address,
        user_agent=row.user_agent,
        revoked=row.revoked_at is not None,
        last_written_at=row.last_active_at,
    )


@dataclass(frozen=True)
class SessionPolicy:
    """Lifetimes and limits, read at each use so runtime settings apply without a restart."""

    ttl: Callable[[], timedelta]
    idle_timeout: Callable[[], timedelta | None]
    max_per_user: Callable[[], int]


class SessionCache:
    """Sessions known to this process, plus ids known to be revoked."""

    def __init__(self) -> None:
        self.sessions: dict[str, CachedSession] = {}
        self.revoked: set[str] = set()
        self.pending_activity: dict[str, datetime] = {}

    def get(self, session_id: str) -> CachedSession | None:
        return self.sessions.get(session_id)

    def put(self, session: CachedSession) -> None:
        if session.revoked:
            self.revoked.add(session.session_id)
        self.sessions[session.session_id] = session

    def revoke(self, session_id: str) -> None:
        self.revoked.add(session_id)
        self.pending_activity.pop(session_id, None)
        cached = self.sessions.get(session_id)
        if cached is not None:
            cached.revoked = True

    def touch(self, session: CachedSession, now: datetime) -> None:
        session.last_active_at = now
        if session.last_written_at is None or now - session.last_written_at >= ACTIVITY_DEBOUNCE:
            self.pending_activity[session.session_id] = now
            session.last_written_at = now

    def active_count(self, now: datetime) -> int:
        return sum(1 for s in self.sessions.values() if not s.revoked and s.expires_at > now)

    def evict_expired(self, now: datetime) -> list[tuple[str, int]]:
        """Forget expired sessions; returns those that were still live (to end their sockets)."""
        ended = []
        for session_id, session in list(self.sessions.items()):
            if session.expires_at <= now:
                del self.sessions[session_id]
                self.revoked.discard(session_id)
                if not session.revoked:
                    ended.append((session_id, session.user_id))
        return ended


class SessionService:
    def __init__(
        self,
        database: Database,
        tokens: SessionTokens,
        users: UserService,
        audit: AuditLog,
        bus: LocalBus,
        policy: SessionPolicy,
    ) -> None:
        self.database = database
        self.tokens = tokens
        self.users = users
        self.audit = audit
        self.bus = bus
        self.policy = policy
        self.cache = SessionCache()

    async def load_revoked(self) -> None:
        """At start-up: every unexpired revoked id, so a revoked token never needs the database."""
        now = utcnow()
        async with self.database.session() as session:
            rows = await session.scalars(
                select(SessionRow).where(SessionRow.revoked_at.is_not(None), SessionRow.expires_at > now)
            )
            for row in rows:
                self.cache.put(_cached(row))

    async def create(self, user: UserRecord, ip_address: str, user_agent: str) -> tuple[str, CachedSession]:
        now = utcnow()
        row = SessionRow(
            id=new_session_id(),
            user_id=user.id,
            created_at=now,
            last_active_at=now,
            expires_at=now + self.policy.ttl(),
            ip_address=ip_address or "",
            user_agent=(user_agent or "")[:MAX_USER_AGENT],
        )
        async with self.database.session() as session:
            session.add(row)
            await session.commit()
        cached = _cached(row)
        self.cache.put(cached)
        await self._enforce_limit(user)
        return self.tokens.issue(user.id, row.id, row.created_at, row.expires_at), cached

    def authenticate_cached(self, token: str) -> tuple[UserRecord, CachedSession] | None:
        """The hot path, with no coroutine at all: None when the database must be asked (a
        session or user this process has not seen yet); every verdict is otherwise final."""
        now = utcnow()
        claims = self.tokens.read(token, now)
        if claims.session_id in self.cache.revoked:
            raise SessionRevoked()
        cached = self.cache.get(claims.session_id)
        user = self.users.peek(cached.user_id) if cached is not None else None
        if cached is None or user is None:
            return None
        if cached.user_id != claims.user_id:
            raise NotAuthenticated("The token is invalid.")
        return self._admit(cached, user, now)

    async def authenticate(self, token: str) -> tuple[UserRecord, CachedSession]:
        """Signature, cache, lifetimes; the database only for a session new to this process."""
        known = self.authenticate_cached(token)
        if known is not None:
            return known
        claims = self.tokens.read(token)
        user, cached = await self.authenticate_session_id(claims.session_id)
        if cached.user_id != claims.user_id:
            raise NotAuthenticated("The token is invalid.")
        return user, cached

    async def authenticate_session_id(self, session_id: str) -> tuple[UserRecord, CachedSession]:
        """A session id already vouched for (a signed token, a redeemed ticket)."""
        if session_id in self.cache.revoked:
            raise SessionRevoked()
        cached = self.cache.get(session_id)
        if cached is None:
            cached = await self._load(session_id)
        user = self.users.peek(cached.user_id) or await self.users.cached(cached.user_id)
        if user is None:
            raise NotAuthenticated("The account no longer exists.")
        return self._admit(cached, user)

    def _admit(
        self, cached: CachedSession, user: UserRecord, now: datetime | None = None
    ) -> tuple[UserRecord, CachedSession]:
        """Revocation, lifetimes and the account state; records the activity."""
        if cached.revoked:
            raise SessionRevoked()
        now = now or utcnow()
        if cached.expires_at <= now:
            raise SessionExpired()
        idle = self.policy.idle_timeout()
        if idle is not None and now - cached.last_active_at > idle:
            raise SessionExpired("This session ended after a period of inactivity. Log in again.")
        if user.disabled:
            raise SessionRevoked("This account is disabled.")
        self.cache.touch(cached, now)
        return user, cached

    async def _load(self, session_id: str) -> CachedSession:
        async with self.database.session() as session:
            row = await session.get(SessionRow, session_id)
        if row is None:
            raise NotAuthenticated("The session does not exist.")
        cached = _cached(row)
        self.cache.put(cached)
        return cached

    async def list(self, user_id: int | None, current_session_id: str | None) -> list[dict[str, Any]]:
        """Live sessions (not revoked, not expired, not idle past the timeout), newest first."""
        now = utcnow()
        statement = select(SessionRow).where(SessionRow.revoked_at.is_(None), SessionRow.expires_at > now)
        if user_id is not None:
            statement = statement.where(SessionRow.user_id == user_id)
        statement = statement.order_by(SessionRow.created_at.desc(), SessionRow.id)
        async with self.database.session() as session:
            rows = (await session.scalars(statement)).all()
        idle = self.policy.idle_timeout()
        result = []
        for row in rows:
            if row.id in self.cache.revoked:
                continue
            known = self.cache.get(row.id)
            entry = known if known is not None else _cached(row)
            if idle is not None and now - entry.last_active_at > idle:
                continue
            user = await self.users.cached(entry.user_id)
            result.append(entry.public(user, current_session_id))
        return result

    async def owner_of(self, session_id: str) -> int | None:
        known = self.cache.get(session_id)
        if known is not None:
            return known.user_id
        async with self.database.session() as session:
            return await session.scalar(select(SessionRow.user_id).where(SessionRow.id == session_id))

    async def revoke(self, session_id: str, reason: str, actor: Actor) -> None:
        """Revoke one session. Already revoked is fine; unknown is NotFound."""
        now = utcnow()
        try:
            async with self.database.session() as session:
                row = await session.get(SessionRow, session_id)
                if row is None:
                    raise NotFound("No such session.")
                if row.revoked_at is None:
                    row.revoked_at, row.revoked_reason = now, reason
                    await session.commit()
                user_id = row.user_id
        except (NotFound, Unavailable):
            raise
        except Exception as exc:
            log.error("could not revoke session: %s", type(exc).__name__)
            raise PersistenceFailure("The session could not be revoked; it is still active.") from None
        await self._after_revoke([session_id], user_id, reason, actor)

    async def revoke_all(self, user_id: int, reason: str, actor: Actor, keep: str | None = None) -> int:
        """Revoke every live session of a user, except `keep`; returns how many."""
        now = utcnow()
        try:
            async with self.database.session() as session:
                statement = select(SessionRow.id).where(
                    SessionRow.user_id == user_id, SessionRow.revoked_at.is_(None)
                )
                if keep is not None:
                    statement = statement.where(SessionRow.id != keep)
                ids = list((await session.scalars(statement)).all())
                if ids:
                    await session.execute(
                        update(SessionRow)
                        .where(SessionRow.id.in_(ids))
                        .values(revoked_at=now, revoked_reason=reason)
                    )
                    await session.commit()
        except Unavailable:
            raise
        except Exception as exc:
            log.error("could not revoke sessions: %s", type(exc).__name__)
            raise PersistenceFailure("The sessions could not be revoked; they are still active.") from None
        if ids:
            await self._after_revoke(ids, user_id, reason, actor)
        return len(ids)

    async def _after_revoke(self, ids: list[str], user_id: int, reason: str, actor: Actor) -> None:
        for session_id in ids:
            self.cache.revoke(session_id)
        for session_id in ids:
            await self.audit.record(
                "session.revoke", actor, target=f"session:{session_id[:8]}", detail={"reason": reason}
            )
            await self.bus.publish(
                SESSION_REVOKED, {"session_id": session_id, "user_id": str(user_id), "reason": reason}
            )

    async def _enforce_limit(self, user: UserRecord) -> None:
        limit = self.policy.max_per_user()
        now = utcnow()
        async with self.database.session() as session:
            ids = list(
                (
                    await session.scalars(
                        select(SessionRow.id)
                        .where(
                            SessionRow.user_id == user.id,
                            SessionRow.revoked_at.is_(None),
                            SessionRow.expires_at > now,
                        )
                        .order_by(SessionRow.created_at.desc(), SessionRow.id)
                    )
                ).all()
            )
        for session_id in ids[limit:]:
            await self.revoke(session_id, "session_limit", Actor(user.id, user.username))

    async def flush_activity(self) -> None:
        """Write the debounced `last_active_at` values in one batch."""
        pending, self.cache.pending_activity = self.cache.pending_activity, {}
        if not pending:
            return
        try:
            async with self.database.session() as session:
                await (await session.connection()).execute(
                    update(SessionRow.__table__)
                    .where(SessionRow.__table__.c.id == bindparam("sid"))
                    .values(last_active_at=bindparam("at")),
                    [{"sid": sid, "at": at} for sid, at in pending.items()],
                )
                await session.commit()
        except Exception:
            # Put them back: the next flush tries again.
            for sid, at in pending.items():
                self.cache.pending_activity.setdefault(sid, at)
            raise

    async def cleanup(self) -> None:
        """Prune expired sessions and spent tickets; keep revoked-but-unexpired rows (1002)."""
        now = utcnow()
        await self.flush_activity()
        async with self.database.session() as session:
            await session.execute(delete(SessionRow).where(SessionRow.expires_at <= now))
            await session.execute(
                delete(WsTicket).where((WsTicket.expires_at <= now) | WsTicket.used_at.is_not(None))
            )
            await session.commit()
        for session_id, user_id in self.cache.evict_expired(now):
            await self.bus.publish(
                SESSION_REVOKED, {"session_id": session_id, "user_id": str(user_id), "reason": "expired"}
            )
