"""What one publisher may put into the lab's event log: a size per event and a rate per user.

Without them a manager's script filled memory through the log (200 events of 1 MiB in a second
held 204 MiB for the retention window) and, on PostgreSQL, wrote a 1 MiB `bus_events` row that
every process reads. The size is counted on the compact JSON the log stores (non-ASCII escaped,
so characters count as the bytes they take there). The rate is a token bucket per user and
process: `per_minute` events in a burst, refilled at `per_minute` a minute.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from synthorg_tornado.errors import PayloadTooLarge, RateLimited
from synthorg_tornado.realtime.bus import stored_size

# Buckets of users idle this long are full again, so they are forgotten (keeps the table small).
_FORGET_AFTER_SECONDS = 120.0


class PublishLimits:
    def __init__(
        self, max_event_bytes: int, per_minute: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.max_event_bytes = max_event_bytes
        self.per_minute = per_minute
        self.clock = clock
        # user id -> (tokens left, when they were counted)
        self._buckets: dict[int, tuple[float, float]] = {}

    def admit(self, user_id: int, message: dict[str, Any]) -> int:
        """The stored size of `message`, or PayloadTooLarge / RateLimited (with Retry-After).

        The size is checked first, so a refused oversized event costs no place in the rate."""
        size = stored_size(message)
        if size > self.max_event_bytes:
            raise PayloadTooLarge(
                f"The event takes {size} bytes; events are limited to {self.max_event_bytes} bytes "
                "(realtime.max_event_bytes)."
            )
        now = self.clock()
        refill = self.per_minute / 60.0
        tokens, then = self._buckets.get(user_id, (float(self.per_minute), now))
        tokens = min(float(self.per_minute), tokens + (now - then) * refill)
        if tokens < 1.0:
            self._buckets[user_id] = (tokens, now)
            raise RateLimited(
                f"At most {self.per_minute} events a minute may be published "
                "(realtime.publish_rate_per_minute).",
                retry_after=max(1, math.ceil((1.0 - tokens) / refill)),
            )
        self._buckets[user_id] = (tokens - 1.0, now)
        if len(self._buckets) > 1 and now - next(iter(self._buckets.values()))[1] > _FORGET_AFTER_SECONDS:
            self._forget_idle(now)
        return size

    def _forget_idle(self, now: float) -> None:
        for user_id, (_, then) in list(self._buckets.items()):
            if now - then > _FORGET_AFTER_SECONDS:
                del self._buckets[user_id]
