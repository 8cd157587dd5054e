"""The login limiter's reservations and the throttled-burst audit, on a hand-driven clock.

The server tests show the limits hold under real concurrency; these pin down the bookkeeping
(what a success, a failure, or an attempt that ended without a verdict leaves behind).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from synthorg_tornado.auth.audit import Actor
from synthorg_tornado.auth.throttle.audit import ThrottledAttempts
from synthorg_tornado.auth.throttle.limiter import LoginLimiter
from synthorg_tornado.errors import AccountLocked, RateLimited


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def limiter(clock: Clock, per_minute: int = 3, threshold: int = 2) -> LoginLimiter:
    return LoginLimiter(lambda: per_minute, lambda: threshold, lambda: 900.0, clock=clock)


def test_attempts_in_flight_hold_their_place_until_settled() -> None:
    clock = Clock()
    limits = limiter(clock)
    held = [limits.admit(f"user{n}", "ip") for n in range(3)]
    with pytest.raises(RateLimited) as refused:
        limits.admit("user9", "ip")
    assert refused.value.retry_after == 1  # the places may free up at once
    held[0].succeeded()
    limits.admit("user9", "ip")  # a success gives its place back


def test_a_failure_keeps_its_place_for_the_window() -> None:
    clock = Clock()
    limits = limiter(clock)
    for n in range(3):
        limits.admit(f"user{n}", "ip").failed()
    clock.now += 20
    with pytest.raises(RateLimited) as refused:
        limits.admit("user9", "ip")
    assert refused.value.retry_after == 40
    clock.now += 40
    limits.admit("user9", "ip")


def test_an_attempt_without_a_verdict_is_released_and_not_counted() -> None:
    clock = Clock()
    limits = limiter(clock, per_minute=1)
    with pytest.raises(ConnectionError), limits.admit("user", "ip"):
        raise ConnectionError("the database went away")
    attempt = limits.admit("user", "ip")
    attempt.failed()
    attempt.failed()  # settled once only
    attempt.release()
    with pytest.raises(RateLimited):
        limits.admit("other", "ip")


def test_the_lockout_counts_pending_attempts_and_locks_after_the_threshold() -> None:
    clock = Clock()
    limits = limiter(clock, per_minute=100, threshold=2)
    first, second = limits.admit("alice", "ip"), limits.admit("alice", "ip")
    with pytest.raises(AccountLocked) as pending:
        limits.admit("alice", "ip")
    assert pending.value.retry_after == 1
    limits.admit("alice", "elsewhere").succeeded()  # another address is unaffected
    first.failed()
    second.failed()
    with pytest.raises(AccountLocked) as locked:
        limits.admit("alice", "ip")
    assert locked.value.retry_after == 900
    clock.now += 901
    limits.admit("alice", "ip").succeeded()
    limits.prune()
    assert limits._accounts == {} and limits._ip_pending == {}


class RecordingAudit:
    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self.fail = False

    async def record(self, action: str, actor: Actor, **fields: Any) -> None:
        if self.fail:
            raise RuntimeError("database away")
        self.rows.append({"action": action, "ip": actor.ip_address, **fields})


def test_a_throttled_burst_writes_one_row_then_one_counted_row_per_flush() -> None:
    async def scenario() -> None:
        audit, clock = RecordingAudit(), Clock()
        throttled = ThrottledAttempts(audit, window_seconds=60, clock=clock)  # type: ignore[arg-type]
        actor = Actor(None, "ghost", "203.0.113.9")
        await asyncio.gather(
            *(throttled.record("auth.login", actor, target="ghost", reason="RateLimited") for _ in range(30))
        )
        assert [row["detail"]["count"] for row in audit.rows] == [1]
        audit.fail = True
        with pytest.raises(RuntimeError):
            await throttled.flush()
        audit.fail = False
        await throttled.flush()  # the failed flush kept its count
        await throttled.flush()  # nothing new: nothing written
        assert [row["detail"]["count"] for row in audit.rows] == [1, 29]
        assert audit.rows[1]["target"] == "ghost" and audit.rows[1]["outcome"] == "throttled"
        clock.now += 61
        await throttled.record("auth.login", actor, target="ghost", reason="AccountLocked")
        assert [row["detail"]["count"] for row in audit.rows] == [1, 29, 1]  # a new window
        clock.now += 61
        await throttled.flush()
        assert throttled._bursts == {}

    asyncio.run(scenario())
