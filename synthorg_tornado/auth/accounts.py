"""Changes to an existing account, each one method with every rule it must keep.

The HTTP handlers and the command line both call these, so a rule written here holds on every
path: the "not yourself" protections, the end of the user's sessions, the audit row, and the
lab's one invariant, that at least one enabled admin remains. A caller cannot forget a rule it
never has to repeat.

Each change is one transaction that first takes the accounts lock (`Database.serialise`), then
reads what it decides on: the actor's own role, the target, the number of other enabled admins.
Two admins demoting, disabling or deleting each other at the same moment therefore pass one at a
time, and the second sees what the first did: it is refused (403 when it is its actor who lost
the admin role, 409/4004 when it would remove the last admin) rather than leaving no admin.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from synthorg_tornado.accounts import roles
from synthorg_tornado.accounts.records import UserChange, UserRecord, change_event, record_of
from synthorg_tornado.auth.audit import Actor, AuditLog
from synthorg_tornado.auth.login import LoginService
from synthorg_tornado.auth.sessions import SessionService
from synthorg_tornado.auth.users import UserService, validate_display_name, validate_role
from synthorg_tornado.clock import utcnow
from synthorg_tornado.db.engine import Database
from synthorg_tornado.db.models import User
from synthorg_tornado.errors import Conflict, InvalidValue, LastAdmin, NotFound, PermissionDenied
from synthorg_tornado.realtime.bus import USER_CHANGED, Bus

# "SYNORGAC": the PostgreSQL advisory lock of account changes, apart from the bus, migration and
# login locks. Only account changes take it, so logins and other writes never wait for it.
ACCOUNTS_LOCK_KEY = 0x53594E4F52474143
CHANGEABLE = frozenset({"role", "display_name", "disabled", "password"})


@dataclass(frozen=True)
class AccountResult:
    """The account after the change (as it was, for a delete) and how many sessions it ended."""

    user: UserRecord
    sessions_ended: int = 0


class AccountService:
    def __init__(
        self,
        database: Database,
        users: UserService,
        sessions: SessionService,
        login: LoginService,
        audit: AuditLog,
        bus: Bus,
    ) -> None:
        self.database = database
        self.users = users
        self.sessions = sessions
        self.login = login
        self.audit = audit
        self.bus = bus

    async def set_role(self, user_id: int, role: object, *, actor: Actor) -> AccountResult:
        return await self.update(user_id, {"role": role}, actor=actor)

    async def set_disabled(self, user_id: int, disabled: bool, *, actor: Actor) -> AccountResult:
        """Disabling ends every session of the user; enabling lets them log in again."""
        return await self.update(user_id, {"disabled": disabled}, actor=actor)

    async def reset_password(
        self, user_id: int, password: object, *, actor: Actor, keep_session: str | None = None
    ) -> AccountResult:
        """Set a password without knowing the old one (an admin, the command line): every
        session of the user ends, but the actor's own `keep_session` when it is their account."""
        return await self.update(user_id, {"password": password}, actor=actor, keep_session=keep_session)

    async def change_own_password(
        self, user: UserRecord, current: object, new: object, *, actor: Actor, keep_session: str | None
    ) -> AccountResult:
        """The signed-in user's own change: the current password first, under the login limits
        (a stolen session must not become a way to guess it), then every other session ends."""
        await self.login.confirm_password(user, current, actor)
        return await self.update(user.id, {"password": new}, actor=actor, keep_session=keep_session)

    async def update(
        self, user_id: int, changes: dict[str, Any], *, actor: Actor, keep_session: str | None = None
    ) -> AccountResult:
        """Apply role, display_name, disabled and password changes in one transaction, with the
        sessions a disable or a password change ends, the audit row and the bus message."""
        known = await self.users.get(user_id)  # 404 before the body is judged (422), as SPEC 9 orders
        if user_id == actor.user_id and (
            changes.get("disabled") is True or ("role" in changes and changes["role"] != roles.ADMIN)
        ):
            raise Conflict("You cannot disable or demote your own account.")
        values = await self._values(changes)
        keep = keep_session if user_id == actor.user_id else None
        refusal_audited = self._refusal_audited("user.update", actor, known.username)
        async with refusal_audited, self.database.session() as session:
            row = await self._lock(session, user_id, actor)
            before = record_of(row)
            stays_admin = values.get("role", row.role) == roles.ADMIN
            if _enabled_admin(before) and (not stays_admin or values.get("disabled") is True):
                await self._keep_an_admin(session, before)
            for name, value in values.items():
                setattr(row, name, value)
            after = record_of(row)
            change = UserChange(before, after, password_changed="password_hash" in values)
            shown = {
                name: getattr(after, name)
                for name in changes
                if name != "password" and getattr(before, name) != getattr(after, name)
            }
            if change.password_changed:
                shown["password"] = "changed"
            if not shown:
                # Nothing would change: no write, no entry, no event.
                await session.rollback()
                return AccountResult(after)
            row.updated_at = utcnow()
            self.audit.add(session, "user.update", actor, target=after.username, detail=shown)
            reason = "user_disabled" if change.disabled_now else "password_changed"
            revoked = (
                await self.sessions.stage_revoke_all(session, user_id, reason, actor, keep)
                if change.disabled_now or change.password_changed
                else ([], [])
            )
            announced = await self.bus.stage(session, USER_CHANGED, change_event(change))
            await session.commit()
        self.users.remember(after)
        await self.bus.deliver([announced])
        await self.sessions.after_revoke(revoked)
        return AccountResult(after, len(revoked[0]))

    async def delete(self, user_id: int, *, actor: Actor) -> AccountResult:
        """Delete a user, their sessions (each revoked and audited, so every process ends it and
        closes its sockets) and, by cascade, their API tokens, in one transaction."""
        if user_id == actor.user_id:
            raise Conflict("You cannot delete your own account.")
        known = await self.users.get(user_id)
        refusal_audited = self._refusal_audited("user.delete", actor, known.username)
        async with refusal_audited, self.database.session() as session:
            row = await self._lock(session, user_id, actor)
            record = record_of(row)
            if _enabled_admin(record):
                await self._keep_an_admin(session, record)
            revoked = await self.sessions.stage_revoke_all(session, user_id, "user_deleted", actor)
            await session.execute(
                delete(User).where(User.id == user_id).execution_options(synchronize_session=False)
            )
            self.audit.add(session, "user.delete", actor, target=record.username)
            announced = await self.bus.stage(
                session, USER_CHANGED, {"user_id": str(user_id), "deleted": True}
            )
            await session.commit()
        await self.sessions.after_revoke(revoked)
        self.users.forget(user_id)
        await self.bus.deliver([announced])
        return AccountResult(record, len(revoked[0]))

    async def _values(self, changes: dict[str, Any]) -> dict[str, Any]:
        """The columns to write, validated, and the password hashed: all before any lock is taken,
        since bcrypt takes a while."""
        unknown = set(changes) - CHANGEABLE
        if unknown:
            raise InvalidValue(f"Unknown field(s): {', '.join(sorted(unknown))}.")
        values: dict[str, Any] = {}
        if "role" in changes:
            values["role"] = validate_role(changes["role"])
        if "display_name" in changes:
            values["display_name"] = validate_display_name(changes["display_name"])
        if "disabled" in changes:
            if not isinstance(changes["disabled"], bool):
                raise InvalidValue("disabled must be true or false.")
            values["disabled"] = changes["disabled"]
        if "password" in changes:
            hasher = self.users.hasher
            values["password_hash"] = await hasher.hash(hasher.validate(changes["password"]))
            values["password_changed_at"] = utcnow()
        return values

    async def _lock(self, session: AsyncSession, user_id: int, actor: Actor) -> User:
        """Take the accounts lock, check the actor again under it, and lock the target's row.

        The actor's role was checked when the request arrived, from this process's memory; a
        demotion committed since (by another admin, in any process) is seen here. The command
        line (no user id) acts with the rights of whoever may read the configuration. The row
        lock (FOR UPDATE) also makes a concurrent login of the target wait, so the login sees
        the change instead of adding a session it would miss.
        """
        await self.database.serialise(session, ACCOUNTS_LOCK_KEY)
        if actor.user_id is not None and actor.user_id != user_id:
            acting = (
                await session.execute(select(User.role, User.disabled).where(User.id == actor.user_id))
            ).first()
            if acting is None or acting.role != roles.ADMIN or acting.disabled:
                raise PermissionDenied("Only an enabled admin can change another account.")
        row = await session.scalar(
            select(User).where(User.id == user_id).with_for_update().execution_options(populate_existing=True)
        )
        if row is None:
            raise NotFound("No such user.")
        return row

    async def _keep_an_admin(self, session: AsyncSession, target: UserRecord) -> None:
        """Refuse to remove `target`, an enabled admin, when no other enabled admin exists."""
        others = await session.scalar(
            select(func.count())
            .select_from(User)
            .where(User.role == roles.ADMIN, User.disabled.is_(False), User.id != target.id)
        )
        if not others:
            raise LastAdmin(f"{target.username} is the last enabled admin; make another user an admin first.")

    @asynccontextmanager
    async def _refusal_audited(self, action: str, actor: Actor, target: str) -> AsyncIterator[None]:
        """A refusal to remove the last admin goes to the audit log too, on its own: the
        change's transaction was rolled back, its entry with it."""
        try:
            yield
        except LastAdmin:
            detail = {"reason": "last_admin"}
            await self.audit.record(action, actor, target=target, outcome="conflict", detail=detail)
            raise


def _enabled_admin(user: UserRecord) -> bool:
    return user.role == roles.ADMIN and not user.disabled
