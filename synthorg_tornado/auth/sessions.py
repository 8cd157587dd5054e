"""Server-side sessions: a row in the database AND an entry in this process's cache.

Authenticating a request reads only the cache; the database is read once per session and process
(a session created elsewhere), and written when sessions are created or revoked, plus a debounced
`last_active_at` so that a busy user costs one write a minute. Revocation updates the database
first, so a failed write is an error rather than a revocation that a restart would undo, and then
the cache, so the very next request sees it. Each revocation is one `UPDATE ... WHERE revoked_at
IS NULL RETURNING` that commits with its audit entries, so racing revocations are recorded once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import CTE, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from synthorg_tornado.auth.audit import Actor, AuditEvent, AuditLog
from synthorg_tornado.auth.devices import MAX_USER_AGENT, describe_many
from synthorg_tornado.auth.session_cache import CachedSession, SessionCache, cached_session
from synthorg_tornado.auth.session_upkeep import flush_activity, prune_expired
from synthorg_tornado.auth.tokens import SessionTokens, new_session_id
from synthorg_tornado.auth.users import UserRecord, UserService
from synthorg_tornado.clock import utcnow
from synthorg_tornado.db.engine import Database
from synthorg_tornado.db.models import Session as SessionRow
from synthorg_tornado.db.models import User
from synthorg_tornado.errors import (
    NotAuthenticated,
    NotFound,
    PermissionDenied,
    PersistenceFailure,
    SessionExpired,
    SessionRevoked,
    Unavailable,
)
from synthorg_tornado.realtime.bus import SESSION_REVOKED, USER_CHANGED, Bus, Message

log = logging.getLogger("synthorg.sessions")

# What a revocation statement did: (session id, user id) of each session it ended, and the bus
# messages to deliver once its transaction has committed.
Revoked = tuple[list[tuple[str, int]], list[Message]]


@dataclass(frozen=True)
class SessionPolicy:
    """Lifetimes and limits, read at each use so runtime settings apply without a restart."""

    ttl: Callable[[], timedelta]
    idle_timeout: Callable[[], timedelta | None]
    max_per_user: Callable[[], int]


class SessionService:
    def __init__(
        self,
        database: Database,
        tokens: SessionTokens,
        users: UserService,
        audit: AuditLog,
        bus: Bus,
        policy: SessionPolicy,
    ) -> None:
        self.database = database
        self.tokens = tokens
        self.users = users
        self.audit = audit
        self.bus = bus
        self.policy = policy
        self.cache = SessionCache(lifetime=policy.ttl, forget=tokens.forget_session)
        bus.subscribe(SESSION_REVOKED, self._on_revoked)
        bus.subscribe(USER_CHANGED, self._on_user_changed)

    async def load_revoked(self) -> None:
        """At start-up: every unexpired revoked id, so a revoked token never needs the database."""
        now = utcnow()
        async with self.database.session() as session:
            rows = await session.scalars(
                select(SessionRow).where(SessionRow.revoked_at.is_not(None), SessionRow.expires_at > now)
            )
            for row in rows:
                self.cache.put(cached_session(row))

    async def create(
        self,
        user: UserRecord,
        ip_address: str,
        user_agent: str,
        *,
        audit: AuditEvent | None = None,
        settle: Sequence[CTE] = (),
    ) -> tuple[str, CachedSession]:
        """A new session, the user's `last_login_at` and `audit` (the login) in one transaction.

        The session cap is applied in the same transaction: past `max_sessions_per_user` the
        oldest live sessions are revoked, each once, however many logins of the user race.
        """
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
        actor = Actor(user.id, user.username, ip_address or "")
        async with self.database.session() as session:
            session.add(row)
            # The INSERT comes first, so SQLite's write lock is held before anything is read;
            # mark_login then takes the user's row lock on PostgreSQL. Either way the logins of
            # one user pass the cap below one at a time, each seeing the sessions before it, and
            # a disable or delete that committed meanwhile is seen here, not missed.
            try:
                await session.flush()
            except IntegrityError:
                raise NotAuthenticated("The account no longer exists.") from None
            record = await self.users.mark_login(session, user.id, now, also=settle)
            if record is None or record.disabled:
                raise PermissionDenied("This account is disabled.")
            live = (
                SessionRow.user_id == user.id,
                SessionRow.expires_at > now,
                SessionRow.revoked_at.is_(None),
                SessionRow.id != row.id,
            )
            kept = (
                select(SessionRow.id)
                .where(*live)
                .order_by(SessionRow.created_at.desc(), SessionRow.id.desc())
                .limit(max(self.policy.max_per_user() - 1, 0))
            )
            ended, announced = await self._revoke_rows(
                session, (*live, SessionRow.id.not_in(kept)), now, "session_limit", actor
            )
            if audit is not None:
                self.audit.add_event(session, audit)
            await session.commit()
        self.users.remember(record)
        cached = cached_session(row, record.created_at)
        self.cache.put(cached)
        await self.after_revoke((ended, announced))
        return self.tokens.issue(user.id, row.id, row.created_at, row.expires_at), cached

    def authenticate_cached(self, token: str) -> tuple[UserRecord, CachedSession] | None:
        """The hot path, with no coroutine at all: None when the database must be asked (a
        session or user this process has not seen yet); every verdict is otherwise final."""
        now = utcnow()
        claims = self.tokens.read(token, now)
        if claims.session_id in self.cache.revoked:
            self.tokens.forget_session(claims.session_id)  # a logged-out token keeps nothing
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
        if user.created_at != cached.account_created_at:
            raise NotAuthenticated("The account no longer exists.")
        if user.disabled:
            raise SessionRevoked("This account is disabled.")
        self.cache.touch(cached, now)
        return user, cached

    async def _load(self, session_id: str) -> CachedSession:
        statement = select(SessionRow, User.created_at).join(User).where(SessionRow.id == session_id)
        async with self.database.session() as session:
            found = (await session.execute(statement)).first()
        if found is None:
            raise NotAuthenticated("The session does not exist.")
        row, account_created_at = found
        cached = cached_session(row, account_created_at)
        self.cache.put(cached)
        return cached

    async def list(self, user_id: int | None, current_session_id: str | None) -> list[dict[str, Any]]:
        """Live sessions (not revoked, not expired, not idle past the timeout), newest first,
        each with its `device` as its user agent tells it."""
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
            entry = known if known is not None else cached_session(row)
            if idle is not None and now - entry.last_active_at > idle:
                continue
            user = await self.users.cached(entry.user_id)
            result.append(entry.public(user, current_session_id))
        devices = await describe_many(item["user_agent"] for item in result)
        for item in result:
            item["device"] = devices[item["user_agent"]]
        return result

    async def owner_of(self, session_id: str) -> int | None:
        known = self.cache.get(session_id)
        if known is not None:
            return known.user_id
        async with self.database.session() as session:
            return await session.scalar(select(SessionRow.user_id).where(SessionRow.id == session_id))

    async def revoke(
        self, session_id: str, reason: str, actor: Actor, *, audit: AuditEvent | None = None
    ) -> None:
        """Revoke one session, with `audit` (a logout, say) in the same transaction.

        Already revoked is fine and records nothing, since nothing happened; unknown is NotFound.
        One UPDATE ... WHERE revoked_at IS NULL decides, so of concurrent revocations exactly one
        is recorded.
        """
        try:
            async with self.database.session() as session:
                ended, announced = await self._revoke_rows(
                    session, (SessionRow.id == session_id,), utcnow(), reason, actor
                )
                if ended:
                    if audit is not None:
                        self.audit.add_event(session, audit)
                    await session.commit()
                elif (
                    await session.scalar(select(SessionRow.user_id).where(SessionRow.id == session_id))
                    is None
                ):
                    raise NotFound("No such session.")
        except (NotFound, Unavailable):
            raise
        except Exception as exc:
            log.error("could not revoke session: %s", type(exc).__name__)
            raise PersistenceFailure("The session could not be revoked; it is still active.") from None
        self.cache.revoke(session_id)
        await self.after_revoke((ended, announced))

    async def revoke_all(self, user_id: int, reason: str, actor: Actor, keep: str | None = None) -> int:
        """Revoke every live session of a user, except `keep`; returns how many this call ended."""
        try:
            async with self.database.session() as session:
                revoked = await self.stage_revoke_all(session, user_id, reason, actor, keep)
                await session.commit()
        except Unavailable:
            raise
        except Exception as exc:
            log.error("could not revoke sessions: %s", type(exc).__name__)
            raise PersistenceFailure("The sessions could not be revoked; they are still active.") from None
        await self.after_revoke(revoked)
        return len(revoked[0])

    async def stage_revoke_all(
        self, session: AsyncSession, user_id: int, reason: str, actor: Actor, keep: str | None = None
    ) -> Revoked:
        """`revoke_all` in the caller's transaction (an account change's), so the change and
        the end of the sessions commit together; hand the result to `after_revoke` once it has."""
        now = utcnow()
        conditions = [SessionRow.user_id == user_id, SessionRow.expires_at > now]
        if keep is not None:
            conditions.append(SessionRow.id != keep)
        return await self._revoke_rows(session, conditions, now, reason, actor)

    async def _revoke_rows(
        self, session: AsyncSession, conditions: Sequence[Any], now: datetime, reason: str, actor: Actor
    ) -> Revoked:
        """Revoke the live rows matching `conditions` in one statement, auditing and announcing
        each in the caller's transaction.

        `revoked_at IS NULL` is re-checked by the database on each row it updates, so a row that
        a concurrent transaction revoked first is not changed (nor audited) again.
        """
        result = await session.execute(
            update(SessionRow)
            .where(SessionRow.revoked_at.is_(None), *conditions)
            .values(revoked_at=now, revoked_reason=reason)
            .returning(SessionRow.id, SessionRow.user_id)
            .execution_options(synchronize_session=False)
        )
        ended = [(session_id, user_id) for session_id, user_id in result.all()]
        for session_id, _user_id in ended:
            target = f"session:{session_id[:8]}"
            self.audit.add(session, "session.revoke", actor, target=target, detail={"reason": reason})
        announced = [
            await self.bus.stage(
                session,
                SESSION_REVOKED,
                {"session_id": session_id, "user_id": str(user_id), "reason": reason},
            )
            for session_id, user_id in ended
        ]
        return ended, announced

    async def after_revoke(self, revoked: Revoked) -> None:
        """Once committed: this process's cache at once, other processes and sockets by the bus."""
        ended, announced = revoked
        for session_id, _user_id in ended:
            self.cache.revoke(session_id)
        await self.bus.deliver(announced)

    def _on_revoked(self, message: Message) -> None:
        """Any process's revocation (this one's too: revoking twice changes nothing)."""
        if message.payload.get("reason") != "expired":  # evicted already, by this process
            self.cache.revoke(message.payload["session_id"])

    def _on_user_changed(self, message: Message) -> None:
        """A deleted user takes its sessions with it (ON DELETE CASCADE, so no revocation is
        announced): forget them here, or they would keep working from the cache."""
        if not message.payload.get("deleted"):
            return
        user_id = int(message.payload["user_id"])
        for cached in list(self.cache.sessions.values()):
            if cached.user_id == user_id:
                self.cache.revoke(cached.session_id)

    async def flush_activity(self) -> None:
        """Write the debounced `last_active_at` values in one batch (see `session_upkeep`)."""
        await flush_activity(self.database, self.cache)

    async def cleanup(self) -> None:
        """Prune expired sessions and spent tickets; keep revoked-but-unexpired rows (1002)."""
        await self.flush_activity()
        now = utcnow()
        await prune_expired(self.database, now)
        self.tokens.evict_expired(now)
        # Each process ends its own sockets of expired sessions: nothing to tell the others.
        for session_id, user_id in self.cache.evict_expired(now):
            await self.bus.apply(
                Message(
                    SESSION_REVOKED, {"session_id": session_id, "user_id": str(user_id), "reason": "expired"}
                )
            )
