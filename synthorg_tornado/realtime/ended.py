"""Credentials that ended a moment ago, so a socket cannot outlive the end it raced.

A socket is authenticated in `prepare()` and registered with the hub only after the upgrade,
with awaits in between. A revocation, a disable or a delete applied in that gap closes the
sockets registered so far, not the one still on its way; the hub asks here before it registers
one. An end is remembered for `seconds` (far longer than any upgrade takes) and at most `limit`
ends are, oldest out, so a storm of revocations costs bounded memory.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable


class RecentlyEnded:
    def __init__(
        self, seconds: float = 30.0, limit: int = 10_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.seconds = seconds
        self.limit = limit
        self.clock = clock
        self._ended: OrderedDict[Hashable, float] = OrderedDict()

    def add(self, key: Hashable) -> None:
        self._ended.pop(key, None)
        self._ended[key] = now = self.clock()
        self._forget_before(now - self.seconds)
        while len(self._ended) > self.limit:
            self._ended.popitem(last=False)

    def discard(self, key: Hashable) -> None:
        """The end no longer holds (an account enabled again)."""
        self._ended.pop(key, None)

    def __contains__(self, key: Hashable) -> bool:
        self._forget_before(self.clock() - self.seconds)
        return key in self._ended

    def __len__(self) -> int:
        return len(self._ended)

    def _forget_before(self, horizon: float) -> None:
        while self._ended and next(iter(self._ended.values())) < horizon:
            self._ended.popitem(last=False)
