"""Auditing throttled attempts: once per burst, not once per request.

A client that keeps posting passwords after it was throttled costs the server almost nothing
to refuse, and it would cost one audit row each (thousands a second) if every refusal were
written. Instead the first throttled attempt of a window, per (action, client IP), is written at
once, so an attack shows in the log while it happens; the later ones are counted in memory, and
each `flush()` (the periodic one, and the one at shutdown) writes what was counted since as one
row. The `count` in the rows of a burst adds up to its throttled attempts.

What may be lost: the counts since the last flush, if the process is killed. Nothing that was
acknowledged depends on them.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from synthorg_tornado.auth.audit import Actor, AuditLog
from synthorg_tornado.auth.throttle.limiter import WINDOW_SECONDS
from synthorg_tornado.clock import isoformat, utcnow

log = logging.getLogger("synthorg.audit")

# Distinct targets remembered per burst: enough to tell one account from a sweep.
MAX_TARGETS = 20


@dataclass
class _Burst:
    actor: Actor
    opened: float
    since: datetime
    count: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    targets: set[str] = field(default_factory=set)

    def add(self, target: str, reason: str) -> None:
        self.count += 1
        self.reasons[reason] += 1
        if len(self.targets) < MAX_TARGETS:
            self.targets.add(target)


class ThrottledAttempts:
    def __init__(
        self,
        audit: AuditLog,
        window_seconds: float = WINDOW_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.audit = audit
        self.window_seconds = window_seconds
        self._clock = clock
        self._bursts: dict[tuple[str, str], _Burst] = {}

    async def record(self, action: str, actor: Actor, *, target: str, reason: str) -> None:
        """Audit one throttled attempt: written if it opens a burst, otherwise counted."""
        key = (action, actor.ip_address)
        now = self._clock()
        burst = self._bursts.get(key)
        if burst is not None and now - burst.opened < self.window_seconds:
            burst.add(target, reason)
            return
        # The new burst is in place before the first await, so concurrent refusals count into it.
        fresh = self._bursts[key] = _Burst(actor, now, utcnow())
        try:
            if burst is not None and burst.count:
                await self._write(action, burst)
            await self.audit.record(
                action, actor, target=target, outcome="throttled", detail={"reason": reason, "count": 1}
            )
        except Exception:
            # The refusal stands without its row; the attempt is counted for the next flush.
            log.warning("could not audit a throttled %s from %s now; counted for later", action, key[1])
            fresh.add(target, reason)

    async def flush(self) -> None:
        """Write what each burst counted since the last flush; forget bursts whose window ended."""
        now = self._clock()
        for key, burst in list(self._bursts.items()):
            if burst.count:
                await self._write(key[0], burst)
            ended = now - burst.opened >= self.window_seconds
            if ended and not burst.count and self._bursts.get(key) is burst:
                del self._bursts[key]

    async def _write(self, action: str, burst: _Burst) -> None:
        count, reasons, targets = burst.count, burst.reasons, burst.targets
        # Taken before the await, so attempts counted meanwhile wait for the next flush.
        burst.count, burst.reasons, burst.targets = 0, Counter(), set()
        try:
            await self.audit.record(
                action,
                burst.actor,
                target=next(iter(targets)) if len(targets) == 1 else "",
                outcome="throttled",
                detail={
                    "reason": reasons.most_common(1)[0][0],
                    "count": count,
                    "reasons": dict(reasons),
                    "targets": sorted(targets),
                    "since": isoformat(burst.since),
                    "until": isoformat(utcnow()),
                },
            )
        except Exception:
            # Kept for the next flush rather than lost.
            burst.count += count
            burst.reasons.update(reasons)
            burst.targets |= targets
            raise
