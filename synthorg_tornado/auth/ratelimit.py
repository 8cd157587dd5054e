"""Login throttling: failures per client IP, and lockout per (account, client IP).

Keying the lockout by account AND address means an attacker hammering an account locks only
themselves out: the owner, logging in from elsewhere, is unaffected. State is per process and in
memory; both limits are about slowing guessing, not accounting.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from synthorg_tornado.errors import AccountLocked, RateLimited

WINDOW_SECONDS = 60.0


@dataclass
class _AccountFailures:
    count: int = 0
    locked_until: float = 0.0
    last_failure: float = field(default_factory=time.monotonic)


class LoginLimiter:
    def __init__(
        self,
        per_minute: Callable[[], int],
        lockout_threshold: Callable[[], int],
        lockout_seconds: Callable[[], float],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        # Callables, so a limit changed at runtime (a setting) applies to the next attempt.
        self._per_minute = per_minute
        self._threshold = lockout_threshold
        self._lockout_seconds = lockout_seconds
        self._clock = clock
        self._ip_failures: dict[str, deque[float]] = {}
        self._accounts: dict[tuple[str, str], _AccountFailures] = {}

    def check(self, account: str, ip: str) -> None:
        """Raise before the password is even checked if this attempt is not allowed."""
        now = self._clock()
        failures = self._window(ip, now)
        if failures is not None and len(failures) >= self._per_minute():
            retry = failures[0] + WINDOW_SECONDS - now
            raise RateLimited(
                "Too many failed logins from your address. Try again later.",
                retry_after=max(1, math.ceil(retry)),
            )
        state = self._accounts.get((account, ip))
        if state is not None and state.locked_until > now:
            raise AccountLocked(retry_after=max(1, math.ceil(state.locked_until - now)))

    def record_failure(self, account: str, ip: str) -> None:
        now = self._clock()
        self._ip_failures.setdefault(ip, deque()).append(now)
        state = self._accounts.setdefault((account, ip), _AccountFailures())
        if now - state.last_failure > self._lockout_seconds():
            state.count = 0
        state.count += 1
        state.last_failure = now
        if state.count >= self._threshold():
            state.locked_until = now + self._lockout_seconds()
            state.count = 0

    def record_success(self, account: str, ip: str) -> None:
        self._accounts.pop((account, ip), None)

    def prune(self) -> None:
        """Forget state that can no longer matter, so memory stays bounded."""
        now = self._clock()
        for ip in list(self._ip_failures):
            if not self._window(ip, now):
                self._ip_failures.pop(ip, None)
        horizon = self._lockout_seconds()
        for key, state in list(self._accounts.items()):
            if state.locked_until <= now and now - state.last_failure > horizon:
                del self._accounts[key]

    def _window(self, ip: str, now: float) -> deque[float] | None:
        failures = self._ip_failures.get(ip)
        if failures is None:
            return None
        while failures and failures[0] <= now - WINDOW_SECONDS:
            failures.popleft()
        return failures
