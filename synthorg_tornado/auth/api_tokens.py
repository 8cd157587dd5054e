"""Personal API tokens: shown once, stored as a SHA-256 digest, cached like sessions."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, select, update

from synthorg_tornado.auth.audit import Actor, AuditLog
from synthorg_tornado.auth.sessions import ACTIVITY_DEBOUNCE
from synthorg_tornado.auth.tokens import digest, display_prefix, new_api_token, same_digest
from synthorg_tornado.auth.users import UserRecord, UserService
from synthorg_tornado.clock import isoformat, utcnow
from synthorg_tornado.db.engine import Database
from synthorg_tornado.db.models import ApiToken
from synthorg_tornado.errors import InvalidValue, NotAuthenticated, NotFound
from synthorg_tornado.realtime.bus import API_TOKEN_REVOKED, LocalBus

MAX_NAME = 128


@dataclass
class CachedToken:
    id: int
    user_id: int
    token_hash: str
    expires_at: datetime | None
    revoked: bool
    last_used_at: datetime | None


def _public(row: ApiToken) -> dict[str, Any]:
    return {
        "id": str(row.id),
        "name": row.name,
        "prefix": row.prefix,
        "created_at": isoformat(row.created_at),
        "expires_at": isoformat(row.expires_at),
        "last_used_at": isoformat(row.last_used_at),
    }


class ApiTokenService:
    def __init__(
        self, database: Database, users: UserService, audit: AuditLog, bus: LocalBus, max_days: int
    ) -> None:
        self.database = database
        self.users = users
        self.audit = audit
        self.bus = bus
        self.max_days = max_days
        self._by_hash: dict[str, CachedToken] = {}
        self._pending_use: dict[int, datetime] = {}

    async def create(
        self, user: UserRecord, name: object, expires_days: object, actor: Actor
    ) -> dict[str, Any]:
        if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME:
            raise InvalidValue(f"name must be a non-empty string of at most {MAX_NAME} characters.")
        if expires_days is None:
            expires_days = self.max_days
        if (
            isinstance(expires_days, bool)
            or not isinstance(expires_days, int)
            or not 1 <= expires_days <= self.max_days
        ):
            raise InvalidValue(f"expires_days must be a whole number from 1 to {self.max_days}.")
        token = new_api_token()
        now = utcnow()
        row = ApiToken(
            user_id=user.id,
            name=name.strip(),
            prefix=display_prefix(token),
            token_hash=digest(token),
            created_at=now,
            expires_at=now + timedelta(days=expires_days),
        )
        async with self.database.session() as session:
            session.add(row)
            await session.commit()
        await self.audit.record("token.create", actor, target=f"token:{row.id}", detail={"name": row.name})
        return {**_public(row), "token": token}

    async def list(self, user_id: int) -> list[dict[str, Any]]:
        now = utcnow()
        async with self.database.session() as session:
            rows = (
                await session.scalars(
                    select(ApiToken)
                    .where(ApiToken.user_id == user_id, ApiToken.revoked_at.is_(None))
                    .order_by(ApiToken.created_at.desc(), ApiToken.id.desc())
                )
            ).all()
        return [_public(row) for row in rows if row.expires_at is None or row.expires_at > now]

    async def revoke(self, token_id: int, user_id: int | None, actor: Actor) -> None:
        """Revoke by id; `user_id` restricts to one owner (another's token is NotFound)."""
        async with self.database.session() as session:
            row = await session.get(ApiToken, token_id)
            if row is None or (user_id is not None and row.user_id != user_id):
                raise NotFound("No such token.")
            if row.revoked_at is None:
                row.revoked_at = utcnow()
                await session.commit()
            token_hash, owner = row.token_hash, row.user_id
        cached = self._by_hash.get(token_hash)
        if cached is not None:
            cached.revoked = True
        await self.audit.record("token.revoke", actor, target=f"token:{token_id}")
        await self.bus.publish(API_TOKEN_REVOKED, {"token_id": str(token_id), "user_id": str(owner)})

    async def authenticate(self, token: str) -> tuple[UserRecord, CachedToken]:
        token_hash = digest(token)
        cached = self._by_hash.get(token_hash)
        if cached is None:
            cached = await self._load(token_hash)
        if cached.revoked or not same_digest(cached.token_hash, token_hash):
            raise NotAuthenticated("The API token is revoked or invalid.")
        now = utcnow()
        if cached.expires_at is not None and cached.expires_at <= now:
            raise NotAuthenticated("The API token has expired.")
        user = await self.users.cached(cached.user_id)
        if user is None or user.disabled:
            raise NotAuthenticated("The API token's account is disabled.")
        if cached.last_used_at is None or now - cached.last_used_at >= ACTIVITY_DEBOUNCE:
            cached.last_used_at = now
            self._pending_use[cached.id] = now
        return user, cached

    async def authenticate_id(self, token_id: int) -> UserRecord:
        """The owner of a live token, by id (a redeemed ticket); the database is asked."""
        async with self.database.session() as session:
            row = await session.get(ApiToken, token_id)
        if row is None or row.revoked_at is not None:
            raise NotAuthenticated("The API token is revoked or invalid.")
        if row.expires_at is not None and row.expires_at <= utcnow():
            raise NotAuthenticated("The API token has expired.")
        user = await self.users.cached(row.user_id)
        if user is None or user.disabled:
            raise NotAuthenticated("The API token's account is disabled.")
        return user

    async def _load(self, token_hash: str) -> CachedToken:
        async with self.database.session() as session:
            row = await session.scalar(select(ApiToken).where(ApiToken.token_hash == token_hash))
        if row is None:
            raise NotAuthenticated("The API token is revoked or invalid.")
        cached = CachedToken(
            row.id, row.user_id, row.token_hash, row.expires_at, row.revoked_at is not None, row.last_used_at
        )
        self._by_hash[token_hash] = cached
        return cached

    def forget_revoked(self, token_hash: str) -> bool:
        """A token revoked elsewhere; True if this process had it cached as live."""
        cached = self._by_hash.get(token_hash)
        if cached is None or cached.revoked:
            return False
        cached.revoked = True
        return True

    async def flush_usage(self) -> None:
        pending, self._pending_use = self._pending_use, {}
        if not pending:
            return
        async with self.database.session() as session:
            # Core executemany: one statement for the whole batch.
            await (await session.connection()).execute(
                update(ApiToken.__table__)
                .where(ApiToken.__table__.c.id == bindparam("tid"))
                .values(last_used_at=bindparam("at")),
                [{"tid": tid, "at": at} for tid, at in pending.items()],
            )
            await session.commit()
