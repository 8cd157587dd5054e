"""Roles, most to least privileged."""

from __future__ import annotations

ADMIN, MANAGER, MEMBER, OBSERVER = "admin", "manager", "member", "observer"
ROLES = (ADMIN, MANAGER, MEMBER, OBSERVER)
WRITERS = frozenset({ADMIN, MANAGER})


def rank(role: str) -> int:
    """Higher is more privileged; unknown roles rank below everyone."""
    return len(ROLES) - ROLES.index(role) if role in ROLES else -1
