"""Personal API tokens: shown once, stored as a SHA-256 digest, cached like sessions.

Creation and revocation commit with their audit entries. `last_used_at` is the one batched
write: at most one a minute per token, flushed every few seconds, so a crash may forget up to a
minute of it (a token then looks used a little earlier than it was, never later).
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select, update

from synthorg_tornado.auth.audit import Actor, AuditLog
from synthorg_tornado.auth.session_cache import ACTIVITY_DEBOUNCE
from synthorg_tornado.auth.tokens import digest, display_prefix, new_api_token, same_digest
from synthorg_tornado.auth.users import UserRecord, UserService
from synthorg_tornado.clock import isoformat, utcnow
from synthorg_tornado.db.batches import update_each
from synthorg_tornado.db.engine import Database
from synthorg_tornado.db.models import ApiToken, User
from synthorg_tornado.errors import Conflict, InvalidValue, NotAuthenticated, NotFound
from synthorg_tornado.realtime.bus import API_TOKEN_REVOKED, USER_CHANGED, Bus, Message

MAX_NAME = 128
DEFAULT_PAGE = 50
MAX_PAGE = 500
MAX_ID = 2**63 - 1
# A cursor is at most a 19-digit id, base64url-encoded: anything longer is refused unread.
_CURSOR = re.compile(r"[A-Za-z0-9_-]{2,28}")


@dataclass
class CachedToken:
    id: int
    user_id: int
    # The owner's `created_at` when the token was read: with `user_id`, the account itself. A
    # token is honoured only for that account, never for another one that has the same id.
    account_created_at: datetime
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
        self,
        database: Database,
        users: UserService,
        audit: AuditLog,
        bus: Bus,
        max_days: int,
        max_per_user: int,
    ) -> None:
        self.database = database
        self.users = users
        self.audit = audit
        self.bus = bus
        self.max_days = max_days
        self.max_per_user = max_per_user
        self._by_hash: dict[str, CachedToken] = {}
        self._pending_use: dict[int, datetime] = {}
        bus.subscribe(API_TOKEN_REVOKED, self._on_revoked)
        bus.subscribe(USER_CHANGED, self._on_user_changed)

    def remembered(self) -> int:
        return len(self._by_hash)

    def forget_all(self) -> None:
        """Every token is read afresh at its next use (after a resync)."""
        self._by_hash.clear()

    def _on_user_changed(self, message: Message) -> None:
        """A deleted user's tokens went with it (ON DELETE CASCADE, so no revocation is
        announced): forget them here, so their next use reads the database and is refused."""
        if message.payload.get("deleted"):
            self.forget_user(int(message.payload["user_id"]))

    def forget_user(self, user_id: int) -> None:
        for token_hash, cached in list(self._by_hash.items()):
            if cached.user_id == user_id:
                del self._by_hash[token_hash]
                self._pending_use.pop(cached.id, None)

    def _on_revoked(self, message: Message) -> None:
        """Any process's revocation: the cached token is refused from now on."""
        token_id = int(message.payload["token_id"])
        for cached in self._by_hash.values():
            if cached.id == token_id:
                cached.revoked = True

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
        cap = self.max_per_user
        async with self.database.session() as session:
            # The owner's row lock (PostgreSQL), then the INSERT (SQLite's write lock): creations
            # by one user pass the count below one at a time, so the cap holds under concurrency.
            await session.execute(select(User.id).where(User.id == user.id).with_for_update(key_share=True))
            session.add(row)
            await session.flush()
            if await session.scalar(select(func.count()).where(*_live(user.id, now))) > cap:
                await session.rollback()
                raise Conflict(
                    f"You already have {cap} API tokens, the most allowed; revoke one you no longer "
                    "use (DELETE /api/v1/tokens/{id}) before creating another."
                )
            self.audit.add(
                session, "token.create", actor, target=f"token:{row.id}", detail={"name": row.name}
            )
            await session.commit()
        return {**_public(row), "token": token}

    async def list(
        self, user_id: int, *, limit: int = DEFAULT_PAGE, cursor: str | None = None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Live tokens, newest first, keyset-paged on the id (ids only grow)."""
        if not 1 <= limit <= MAX_PAGE:
            raise InvalidValue(f"limit must be between 1 and {MAX_PAGE}.")
        statement = select(ApiToken).where(*_live(user_id, utcnow()))
        if cursor:
            statement = statement.where(ApiToken.id < _decode_cursor(cursor))
        statement = statement.order_by(ApiToken.id.desc()).limit(limit + 1)
        async with self.database.session() as session:
            rows = list((await session.scalars(statement)).all())
        more = len(rows) > limit
        rows = rows[:limit]
        next_cursor = _encode_cursor(rows[-1].id) if more and rows else None
        return [_public(row) for row in rows], next_cursor

    async def list_all(self, user_id: int) -> list[dict[str, Any]]:
        """Every page of `list`, for the command line."""
        items, cursor = await self.list(user_id, limit=MAX_PAGE)
        while cursor is not None:
            page, cursor = await self.list(user_id, limit=MAX_PAGE, cursor=cursor)
            items.extend(page)
        return items

    async def revoke(self, token_id: int, user_id: int | None, actor: Actor) -> None:
        """Revoke by id; `user_id` restricts to one owner (another's token is NotFound).

        One UPDATE ... WHERE revoked_at IS NULL decides, so of concurrent revocations of a token
        exactly one is recorded; the others find it revoked already and succeed quietly.
        """
        owned = [ApiToken.id == token_id]
        if user_id is not None:
            owned.append(ApiToken.user_id == user_id)
        async with self.database.session() as session:
            revoked = (
                await session.execute(
                    update(ApiToken)
                    .where(*owned, ApiToken.revoked_at.is_(None))
                    .values(revoked_at=utcnow())
                    .returning(ApiToken.token_hash, ApiToken.user_id)
                    .execution_options(synchronize_session=False)
                )
            ).first()
            if revoked is None:
                token_hash = await session.scalar(select(ApiToken.token_hash).where(*owned))
                if token_hash is None:
                    raise NotFound("No such token.")
                self.forget_revoked(token_hash)  # revoked by someone else a moment ago
                return
            self.audit.add(session, "token.revoke", actor, target=f"token:{token_id}")
            announced = await self.bus.stage(
                session, API_TOKEN_REVOKED, {"token_id": str(token_id), "user_id": str(revoked.user_id)}
            )
            await session.commit()
        cached = self._by_hash.get(revoked.token_hash)
        if cached is not None:
            cached.revoked = True
        await self.bus.deliver([announced])

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
        if user is None or user.created_at != cached.account_created_at:
            self.forget_user(cached.user_id)
            raise NotAuthenticated("The API token's account no longer exists.")
        if user.disabled:
            raise NotAuthenticated("The API token's account is disabled.")
        if cached.last_used_at is None or now - cached.last_used_at >= ACTIVITY_DEBOUNCE:
            cached.last_used_at = now
            self._pending_use[cached.id] = now
        return user, cached

    async def authenticate_id(self, token_id: int) -> UserRecord:
        """The owner of a live token, by id (a redeemed ticket); the database is asked."""
        async with self.database.session() as session:
            found = (await session.execute(_WITH_OWNER.where(ApiToken.id == token_id))).first()
        if found is None or found.ApiToken.revoked_at is not None:
            raise NotAuthenticated("The API token is revoked or invalid.")
        row = found.ApiToken
        if row.expires_at is not None and row.expires_at <= utcnow():
            raise NotAuthenticated("The API token has expired.")
        user = await self.users.cached(row.user_id)
        if user is None or user.created_at != found.account_created_at:
            raise NotAuthenticated("The API token's account no longer exists.")
        if user.disabled:
            raise NotAuthenticated("The API token's account is disabled.")
        return user

    async def _load(self, token_hash: str) -> CachedToken:
        async with self.database.session() as session:
            found = (await session.execute(_WITH_OWNER.where(ApiToken.token_hash == token_hash))).first()
        if found is None:
            raise NotAuthenticated("The API token is revoked or invalid.")
        row = found.ApiToken
        cached = CachedToken(
            row.id,
            row.user_id,
            found.account_created_at,
            row.token_hash,
            row.expires_at,
            row.revoked_at is not None,
            row.last_used_at,
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
        """Write the debounced `last_used_at` values in one batch; a failed batch is kept for
        the next try (newer values recorded meanwhile win)."""
        pending, self._pending_use = self._pending_use, {}
        if not pending:
            return
        try:
            await update_each(self.database, ApiToken.__table__.c.last_used_at, pending)
        except Exception:
            for tid, at in pending.items():
                self._pending_use.setdefault(tid, at)
            raise


# A token with its owner's creation time, read together so they describe the same account.
_WITH_OWNER = select(ApiToken, User.created_at.label("account_created_at")).join(
    User, User.id == ApiToken.user_id
)


def _live(user_id: int, now: datetime) -> tuple[Any, ...]:
    return (
        ApiToken.user_id == user_id,
        ApiToken.revoked_at.is_(None),
        or_(ApiToken.expires_at.is_(None), ApiToken.expires_at > now),
    )


def _encode_cursor(token_id: int) -> str:
    return base64.urlsafe_b64encode(f"t{token_id}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> int:
    """Strict: only what `_encode_cursor` makes; anything else is a 422, never a 500."""
    try:
        if not _CURSOR.fullmatch(cursor):
            raise ValueError(cursor)
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
        if not (raw.startswith("t") and raw[1:].isascii() and raw[1:].isdigit()):
            raise ValueError(cursor)
        token_id = int(raw[1:])
        if token_id > MAX_ID:
            raise ValueError(cursor)
        return token_id
    except ValueError:
        raise InvalidValue("cursor is not valid; use the next_cursor of a previous page.") from None
