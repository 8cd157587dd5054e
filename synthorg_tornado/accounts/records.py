"""A user as every process caches it, and how a change of one travels on the bus."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from synthorg_tornado.accounts import roles
from synthorg_tornado.clock import isoformat, parse_isoformat
from synthorg_tornado.db.models import User


@dataclass(frozen=True)
class UserRecord:
    """An immutable snapshot of a user; replaced, never mutated, when the user changes."""

    id: int
    username: str
    display_name: str
    role: str
    disabled: bool
    created_at: datetime
    last_login_at: datetime | None

    def public(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "username": self.username,
            "display_name": self.display_name,
            "role": self.role,
            "disabled": self.disabled,
            "created_at": isoformat(self.created_at),
            "last_login_at": isoformat(self.last_login_at),
        }


def record_of(row: User) -> UserRecord:
    return UserRecord(
        id=row.id,
        username=row.username,
        display_name=row.display_name,
        role=row.role,
        disabled=row.disabled,
        created_at=row.created_at,
        last_login_at=row.last_login_at,
    )


@dataclass(frozen=True)
class UserChange:
    """What a user change did, so callers can react (revoke sessions, drop channels)."""

    before: UserRecord
    after: UserRecord
    password_changed: bool

    @property
    def disabled_now(self) -> bool:
        return self.after.disabled and not self.before.disabled

    @property
    def role_lowered(self) -> bool:
        return roles.rank(self.after.role) < roles.rank(self.before.role)


def change_event(change: UserChange) -> dict[str, Any]:
    return {
        "user_id": str(change.after.id),
        "role": change.after.role,
        "disabled": change.after.disabled,
        "role_lowered": change.role_lowered,
        "deleted": False,
        "user": record_wire(change.after),
    }


def record_wire(record: UserRecord) -> dict[str, Any]:
    """The whole record, so other processes update their directory without a read."""
    return {**record.public(), "id": record.id}


def record_from_wire(wire: dict[str, Any]) -> UserRecord:
    last_login = wire.get("last_login_at")
    return UserRecord(
        id=int(wire["id"]),
        username=wire["username"],
        display_name=wire["display_name"],
        role=wire["role"],
        disabled=bool(wire["disabled"]),
        created_at=parse_isoformat(wire["created_at"]),
        last_login_at=parse_isoformat(last_login) if last_login else None,
    )
