"""Users: creation, reads, and an in-memory directory so authentication never waits on the DB.

Changes to an existing account (role, disabled, password, delete) are `accounts.py`'s, where
each has every rule it needs.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import CTE, delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from synthorg_tornado.accounts import roles
from synthorg_tornado.accounts.records import (
    UserChange,
    UserRecord,
    change_event,
    record_from_wire,
    record_of,
)
from synthorg_tornado.auth.audit import Actor, AuditLog
from synthorg_tornado.auth.passwords import PasswordHasher
from synthorg_tornado.clock import isoformat, utcnow
from synthorg_tornado.db.engine import Database
from synthorg_tornado.db.models import FirstAdmin, User
from synthorg_tornado.errors import DuplicateRecord, InvalidValue, NotFound, PermissionDenied
from synthorg_tornado.realtime.bus import USER_CHANGED, USER_UNLOCKED, Bus, Message

USERNAME_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,64}")
MAX_DISPLAY_NAME = 128


def validate_username(username: object) -> str:
    if not isinstance(username, str) or not USERNAME_PATTERN.fullmatch(username):
        raise InvalidValue("username must be 1-64 characters of letters, digits, '.', '_' or '-'.")
    return username


def validate_role(role: object) -> str:
    if role not in roles.ROLES:
        raise InvalidValue(f"role must be one of {', '.join(roles.ROLES)}.")
    return str(role)


def validate_display_name(display_name: object) -> str:
    if not isinstance(display_name, str) or len(display_name) > MAX_DISPLAY_NAME:
        raise InvalidValue(f"display_name must be a string of at most {MAX_DISPLAY_NAME} characters.")
    return display_name.strip()


class UserService:
    def __init__(self, database: Database, hasher: PasswordHasher, audit: AuditLog, bus: Bus) -> None:
        self.database = database
        self.hasher = hasher
        self.audit = audit
        self.bus = bus
        self._directory: dict[int, UserRecord] = {}
        bus.subscribe(USER_CHANGED, self._on_changed)

    def _on_changed(self, message: Message) -> None:
        """Any process's change of a user (this one's too: storing the same record again)."""
        user_id = int(message.payload["user_id"])
        if message.payload.get("deleted"):
            self._directory.pop(user_id, None)
        elif "user" in message.payload:
            self._directory[user_id] = record_from_wire(message.payload["user"])

    def remembered(self) -> int:
        return len(self._directory)

    def forget_all(self) -> None:
        """Every user is read afresh at its next use (after a resync)."""
        self._directory.clear()

    def peek(self, user_id: int) -> UserRecord | None:
        """Memory only: the hot path's first try, with no coroutine to schedule."""
        return self._directory.get(user_id)

    async def cached(self, user_id: int) -> UserRecord | None:
        """Memory first, the database once per user and process."""
        record = self._directory.get(user_id)
        if record is None:
            record = await self.get(user_id, missing_ok=True)
        return record

    async def changed_since(self, since: datetime) -> list[tuple[UserRecord | None, UserRecord]]:
        """Users changed (elsewhere) since `since`: (what this process knew, what is stored)."""
        async with self.database.session() as session:
            rows = (await session.scalars(select(User).where(User.updated_at >= since))).all()
        changes = []
        for row in rows:
            after = record_of(row)
            before = self._directory.get(row.id)
            if before != after:
                self._directory[row.id] = after
                changes.append((before, after))
        return changes

    async def forget_deleted(self) -> list[int]:
        """Users this process remembers that were deleted elsewhere: forgotten, and returned.

        A delete leaves no row that `changed_since` could find, so the remembered ids are
        checked for existence instead (in chunks, to stay within any driver's parameter limit).
        """
        known = list(self._directory)
        if not known:
            return []
        present: set[int] = set()
        async with self.database.session() as session:
            for start in range(0, len(known), 500):
                chunk = known[start : start + 500]
                present.update(await session.scalars(select(User.id).where(User.id.in_(chunk))))
        gone = [user_id for user_id in known if user_id not in present]
        for user_id in gone:
            self._directory.pop(user_id, None)
        return gone

    async def publish_change(self, before: UserRecord, after: UserRecord) -> None:
        await self.bus.publish(USER_CHANGED, change_event(UserChange(before, after, password_changed=False)))

    async def count(self) -> int:
        async with self.database.session() as session:
            return int(await session.scalar(select(func.count()).select_from(User)) or 0)

    async def get(self, user_id: int, missing_ok: bool = False) -> UserRecord | None:
        async with self.database.session() as session:
            row = await session.get(User, user_id)
        if row is None:
            self._directory.pop(user_id, None)
            if missing_ok:
                return None
            raise NotFound("No such user.")
        record = record_of(row)
        self._directory[user_id] = record
        return record

    async def find_for_login(self, username: str) -> tuple[UserRecord, str | None] | None:
        """The user and password hash, or None; the hash never leaves the auth package."""
        async with self.database.session() as session:
            row = await session.scalar(select(User).where(User.username_key == username.lower()))
        if row is None:
            return None
        record = record_of(row)
        self._directory[record.id] = record
        return record, row.password_hash

    async def find_by_username(self, username: str) -> UserRecord:
        found = await self.find_for_login(username)
        if found is None:
            raise NotFound(f"No user named {username!r}.")
        return found[0]

    async def list(self) -> list[UserRecord]:
        async with self.database.session() as session:
            rows = (await session.scalars(select(User).order_by(User.username_key))).all()
        return [record_of(row) for row in rows]

    async def create(
        self, username: object, password: object, role: object, display_name: object = "", *, actor: Actor
    ) -> UserRecord:
        name = validate_username(username)
        role_name = validate_role(role)
        shown = validate_display_name(display_name or "")
        password_hash = await self.hasher.hash(self.hasher.validate(password))
        row = User(
            username=name,
            username_key=name.lower(),
            display_name=shown,
            role=role_name,
            password_hash=password_hash,
            disabled=False,
            created_at=utcnow(),
            password_changed_at=utcnow(),
        )
        try:
            async with self.database.session() as session:
                session.add(row)
                self.audit.add(session, "user.create", actor, target=name, detail={"role": role_name})
                await session.commit()
        except IntegrityError:
            await self.audit.record("user.create", actor, target=name, outcome="conflict")
            raise DuplicateRecord(f"A user named {name!r} already exists.") from None
        record = record_of(row)
        self._directory[record.id] = record
        return record

    async def clear_lockouts(self, user_id: int, *, actor: Actor) -> tuple[UserRecord, datetime]:
        """Store an admin's unlock: the user and the time every process compares it by.

        `updated_at` moves with `lockout_cleared_at`, so the change feed of every other process
        reads the row at its next poll (see `sync`). Always written and audited, even when no
        process holds a lockout: which process does is not known here.
        """
        now = utcnow()
        async with self.database.session() as session:
            row = await session.scalar(
                update(User)
                .where(User.id == user_id)
                .values(lockout_cleared_at=now, updated_at=now)
                .returning(User)
                .execution_options(populate_existing=True)
            )
            if row is None:
                raise NotFound("No such user.")
            record = record_of(row)
            self.audit.add(session, "user.unlock", actor, target=record.username)
            announced = await self.bus.stage(
                session, USER_UNLOCKED, {"account": row.username_key, "cleared_at": isoformat(now)}
            )
            await session.commit()
        self._directory[user_id] = record
        await self.bus.deliver([announced])
        return record, now

    async def verify_password(self, user_id: int, password: object) -> bool:
        async with self.database.session() as session:
            password_hash = await session.scalar(select(User.password_hash).where(User.id == user_id))
        return await self.hasher.verify(password if isinstance(password, str) else "", password_hash)

    async def mark_login(
        self, db_session: AsyncSession, user_id: int, at: datetime, also: Sequence[CTE] = ()
    ) -> UserRecord | None:
        """Stamp `last_login_at` in the caller's transaction (the new session's), with `also`
        (data-changing CTEs, such as the login throttle's settlement) in the same statement.

        The UPDATE also takes the user's row lock on PostgreSQL, so concurrent logins of one
        user queue here until the one before has committed: the session cap relies on that.
        The caller hands the record to `remember` once its transaction has committed.
        """
        statement = update(User).where(User.id == user_id).values(last_login_at=at)
        if also:
            statement = statement.add_cte(*also)
        row = await db_session.scalar(statement.returning(User).execution_options(populate_existing=True))
        return None if row is None else record_of(row)

    def remember(self, record: UserRecord) -> None:
        """A record read in a transaction that has now committed."""
        self._directory[record.id] = record

    def forget(self, user_id: int) -> None:
        """A user whose deletion has now committed."""
        self._directory.pop(user_id, None)

    async def create_first_admin(self, username: object, password: object, *, actor: Actor) -> UserRecord:
        """The admin that the setup token creates, only while no user exists.

        Several processes may each hold a setup token (each prints its own at start-up). The
        admin and the single `first_admin` row are committed in one transaction, so the database
        lets one of them through and refuses the others, whatever the interleaving. A marker left
        over from a lab whose users were all deleted is dropped in that same transaction, and only
        while no user exists, so a concurrent setup still conflicts on the new marker.
        """
        name = validate_username(username)
        password_hash = await self.hasher.hash(self.hasher.validate(password))
        now = utcnow()
        row = User(
            username=name,
            username_key=name.lower(),
            display_name="",
            role=roles.ADMIN,
            password_hash=password_hash,
            disabled=False,
            created_at=now,
            password_changed_at=now,
        )
        try:
            async with self.database.session() as session:
                if await session.scalar(select(func.count()).select_from(User)):
                    raise PermissionDenied("Setup is already complete.")
                await session.execute(delete(FirstAdmin).where(~select(User.id).exists()))
                session.add(row)
                await session.flush()
                session.add(FirstAdmin(id=1, user_id=row.id, created_at=now))
                self.audit.add(session, "user.create", actor, target=name, detail={"role": roles.ADMIN})
                await session.commit()
        except IntegrityError:
            raise PermissionDenied("Setup is already complete.") from None
        record = record_of(row)
        self._directory[record.id] = record
        return record

    async def replace_password_hash(self, user_id: int, current_hash: str, new_hash: str) -> bool:
        """Store a re-hash of the same password (a new bcrypt cost), if the hash is unchanged.

        Compare-and-set on the old hash, so a password changed meanwhile is never overwritten
        with the old one. Not a user change: nothing the directory, the bus or the audit log
        shows differs.
        """
        async with self.database.session() as session:
            result = await session.execute(
                update(User)
                .where(User.id == user_id, User.password_hash == current_hash)
                .values(password_hash=new_hash)
            )
            await session.commit()
        return bool(result.rowcount)
