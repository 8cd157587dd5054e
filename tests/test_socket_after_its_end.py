"""A socket registered just after its credential ended is closed, not kept.

A socket is authenticated before the upgrade and registered with the hub after it, with awaits
in between; an end applied in that gap (a logout, a revoked token, a disable or a delete, from
this process or another) found no socket to close. These tests apply the end first, as the bus
delivers it, then register the socket, on the real hub and the real in-memory bus.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

from synthorg_tornado.accounts.records import UserRecord
from synthorg_tornado.realtime.bus import API_TOKEN_REVOKED, SESSION_REVOKED, USER_CHANGED, LocalBus
from synthorg_tornado.realtime.ended import RecentlyEnded
from synthorg_tornado.realtime.hub import Hub
from synthorg_tornado.realtime.limits import PublishLimits
from synthorg_tornado.realtime.presence import LabPresence

ALICE = UserRecord(7, "alice", "Alice", "member", False, datetime(2026, 12, 1, tzinfo=UTC), None)


@dataclass
class Transport:
    closed_with: tuple[int, str] | None = None
    sent: list[str] = field(default_factory=list)

    def write_text(self, text: str) -> Any:
        self.sent.append(text)

    def close_with(self, code: int, reason: str) -> None:
        self.closed_with = (code, reason)


def make_hub() -> tuple[Hub, LocalBus]:
    bus = LocalBus()
    hub = Hub(bus, LabPresence(bus, "node"), lambda: 64, 20, 100, PublishLimits(65536, 120))
    return hub, bus


def user_event(user: UserRecord, **changes: Any) -> dict[str, Any]:
    event = {"user_id": str(user.id), "role": user.role, "disabled": False, "deleted": False}
    return {**event, **changes}


@pytest.mark.gen_test
@pytest.mark.parametrize(
    ("topic", "payload", "session_id", "token_id"),
    [
        (SESSION_REVOKED, {"session_id": "s1", "user_id": "7", "reason": "logout"}, "s1", None),
        (API_TOKEN_REVOKED, {"token_id": "3", "user_id": "7"}, None, 3),
        (USER_CHANGED, user_event(ALICE, disabled=True), "s1", None),
        (USER_CHANGED, {"user_id": "7", "deleted": True}, None, 3),
    ],
    ids=["session revoked", "token revoked", "user disabled", "user deleted"],
)
async def test_a_socket_registered_after_its_end_is_closed_with_4001(
    topic: str, payload: dict[str, Any], session_id: str | None, token_id: int | None
) -> None:
    hub, bus = make_hub()
    await bus.publish(topic, payload)
    transport = Transport()
    assert hub.connect(transport, ALICE, session_id, token_id) is None
    assert transport.closed_with is not None and transport.closed_with[0] == 4001
    assert "alice" not in str(hub.online())


@pytest.mark.gen_test
async def test_an_account_enabled_again_connects_and_another_session_is_unaffected() -> None:
    hub, bus = make_hub()
    await bus.publish(SESSION_REVOKED, {"session_id": "old", "user_id": "7", "reason": "logout"})
    assert hub.connect(Transport(), ALICE, "new", None) is not None
    await bus.publish(USER_CHANGED, user_event(ALICE, disabled=True))
    await bus.publish(USER_CHANGED, user_event(ALICE, disabled=False))
    transport = Transport()
    assert hub.connect(transport, ALICE, "newer", None) is not None
    assert transport.closed_with is None


def test_ends_are_forgotten_after_their_window_and_held_to_the_limit() -> None:
    now = [0.0]
    ended = RecentlyEnded(seconds=30.0, limit=100, clock=lambda: now[0])
    for n in range(250):
        ended.add(("session", n))
    assert len(ended) == 100 and ("session", 249) in ended and ("session", 0) not in ended
    now[0] = 31.0
    ended.add(("session", "late"))
    assert len(ended) == 1
