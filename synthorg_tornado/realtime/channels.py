"""Who may subscribe to and publish on which channel."""

from __future__ import annotations

from synthorg_tornado.accounts import roles

SYSTEM, SETTINGS, PRESENCE, LAB, BUDGET = "system", "settings", "presence", "lab", "budget"
SHARED = frozenset({SYSTEM, SETTINGS, PRESENCE, LAB, BUDGET})
RESTRICTED = {BUDGET: roles.WRITERS}
USER_PREFIX = "user:"


def user_channel(user_id: int) -> str:
    return f"{USER_PREFIX}{user_id}"


def can_subscribe(role: str, user_id: int, channel: str) -> bool:
    if channel.startswith(USER_PREFIX):
        return channel == user_channel(user_id)
    if channel not in SHARED:
        return False
    allowed = RESTRICTED.get(channel)
    return allowed is None or role in allowed


def can_publish(role: str, channel: str) -> bool:
    """Admins and managers publish on shared channels; only admins on a user's channel."""
    if channel.startswith(USER_PREFIX):
        return role == roles.ADMIN and channel[len(USER_PREFIX) :].isdigit()
    return channel in SHARED and role in roles.WRITERS


def is_known(channel: str) -> bool:
    return channel in SHARED or (channel.startswith(USER_PREFIX) and channel[len(USER_PREFIX) :].isdigit())
