"""Login throttling: failures per client IP, and lockout per (account, client IP).

Keying the lockout by account AND address means an attacker hammering an account locks only
themselves out: the owner, logging in from elsewhere, is unaffected. State is per process and in
memory; both limits are about slowing guessing, not accounting. On PostgreSQL, where several
processes share the lab, `throttle.lab` keeps the counts in the database and this limiter only
bounds the checks in flight in this process (it is then never told a verdict).

An attempt is counted when it is admitted, not when its password check ends. `admit()` is
synchronous, so it runs before the first await of the request: it reserves a place under both
limits, and a concurrent burst can therefore never have more passwords checked than the limits
allow, however many requests arrive at once. A reservation is released when the password was
right and becomes a failure when it was wrong. The price is that attempts still in flight count
against the limit: at most `limit` logins from one address are checked at the same time.

Addresses in `auth.rate_limit_allowlist` (a lab's NAT, where one bad typist would otherwise lock
out everyone behind it) skip the per-IP limit, never the per-(account, IP) lockout: guessing one
account stays as slow from there as from anywhere. An admin's unlock (`unlock()`) forgets an
account's lockouts from every address; other processes learn of it through the change feed.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import TracebackType

from synthorg_tornado.clock import utcnow
from synthorg_tornado.errors import AccountLocked, RateLimited

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

WINDOW_SECONDS = 60.0
# Retry-After while the limit is full of attempts still being checked: they end within a
# bcrypt check, and may succeed and free their place.
IN_FLIGHT_RETRY_SECONDS = 1
# Far longer than the change feed's look-back, so an unlock it reads again is still recognised.
UNLOCK_MEMORY_SECONDS = 300.0


@dataclass
class _AccountFailures:
    count: int = 0
    locked_until: float = 0.0
    last_failure: float = 0.0
    pending: int = 0


class Attempt:
    """One admitted password check. Settle it once with `succeeded()` or `failed()`.

    Used as a context manager, an attempt that ends without a verdict (the database was away, the
    request was cancelled) is released without counting as a failure.
    """

    def __init__(self, limiter: LoginLimiter, account: str, ip: str, *, counts_for_ip: bool = True) -> None:
        self._limiter = limiter
        self.account = account
        self.ip = ip
        self._counts_for_ip = counts_for_ip
        self._settled = False

    def succeeded(self) -> None:
        self._verdict(False)

    def failed(self) -> None:
        self._verdict(True)

    def release(self) -> None:
        """Neither verdict: the place is given back and nothing is counted."""
        self._verdict(None)

    def _verdict(self, failed: bool | None) -> None:
        if self._settle():
            self._limiter._settle(self.account, self.ip, failed, self._counts_for_ip)

    def _settle(self) -> bool:
        first, self._settled = not self._settled, True
        return first

    def __enter__(self) -> Attempt:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


class LoginLimiter:
    def __init__(
        self,
        per_minute: Callable[[], int],
        lockout_threshold: Callable[[], int],
        lockout_seconds: Callable[[], float],
        clock: Callable[[], float] = time.monotonic,
        allowlist: Iterable[Network] = (),
    ) -> None:
        # Callables, so a limit changed at runtime (a setting) applies to the next attempt.
        self._per_minute = per_minute
        self._threshold = lockout_threshold
        self._lockout_seconds = lockout_seconds
        self._clock = clock
        self._allowlist = tuple(allowlist)
        self._ip_failures: dict[str, deque[float]] = {}
        self._ip_pending: dict[str, int] = {}
        self._accounts: dict[tuple[str, str], _AccountFailures] = {}
        # The newest unlock applied per account, so the change feed, which re-reads a few
        # seconds of the past at every poll, applies each unlock once.
        self._unlocked: dict[str, datetime] = {}

    def exempt(self, ip: str) -> bool:
        """True for an address in `auth.rate_limit_allowlist`: no per-IP limit there."""
        if not self._allowlist:
            return False
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self._allowlist)

    def admit(self, account: str, ip: str) -> Attempt:
        """Reserve a place for one password check, or raise if this attempt is not allowed.

        Synchronous on purpose: the check and the reservation happen with no await between them.
        """
        now = self._clock()
        exempt = self.exempt(ip)
        if not exempt:
            self._check_ip(ip, now)
        key = (account, ip)
        state = self._accounts.get(key)
        if state is not None:
            if state.locked_until > now:
                raise AccountLocked(retry_after=max(1, math.ceil(state.locked_until - now)))
            self._forget_stale(state, now)
            if state.count + state.pending >= self._threshold():
                raise AccountLocked(retry_after=IN_FLIGHT_RETRY_SECONDS)
        else:
            state = self._accounts[key] = _AccountFailures()
        state.pending += 1
        if not exempt:
            self._ip_pending[ip] = self._ip_pending.get(ip, 0) + 1
        return Attempt(self, account, ip, counts_for_ip=not exempt)

    def _check_ip(self, ip: str, now: float) -> None:
        failures = self._window(ip, now)
        failed = len(failures) if failures else 0
        if failed + self._ip_pending.get(ip, 0) >= self._per_minute():
            retry = failures[0] + WINDOW_SECONDS - now if failures and failed >= self._per_minute() else 0
            raise RateLimited(
                "Too many failed logins from your address. Try again later.",
                retry_after=max(IN_FLIGHT_RETRY_SECONDS, math.ceil(retry)),
            )

    def unlock(self, account: str, cleared_at: datetime) -> bool:
        """Forget the lockouts and counted failures of `account` from every address.

        `cleared_at` is when the unlock was stored; an unlock already applied (the same one read
        again, or an older one) does nothing, so failures counted since are kept. Attempts in
        flight keep their places. Returns whether anything was applied.
        """
        applied = self._unlocked.get(account)
        if applied is not None and applied >= cleared_at:
            return False
        self._unlocked[account] = cleared_at
        for key, state in list(self._accounts.items()):
            if key[0] != account:
                continue
            state.count, state.locked_until, state.last_failure = 0, 0.0, 0.0
            if state.pending == 0:
                del self._accounts[key]
        return True

    def _settle(self, account: str, ip: str, failed: bool | None, counts_for_ip: bool) -> None:
        now = self._clock()
        if counts_for_ip:
            pending = self._ip_pending.get(ip, 0) - 1
            if pending > 0:
                self._ip_pending[ip] = pending
            else:
                self._ip_pending.pop(ip, None)
        key = (account, ip)
        state = self._accounts.setdefault(key, _AccountFailures())
        state.pending = max(0, state.pending - 1)
        if failed:
            if counts_for_ip:
                self._ip_failures.setdefault(ip, deque()).append(now)
            self._forget_stale(state, now)
            state.count += 1
            state.last_failure = now
            if state.count >= self._threshold():
                state.locked_until = now + self._lockout_seconds()
                state.count = 0
        elif failed is False:
            state.count = 0
        if state.pending == 0 and state.count == 0 and state.locked_until <= now:
            del self._accounts[key]

    def _forget_stale(self, state: _AccountFailures, now: float) -> None:
        """Failures older than the lockout period no longer add up to a lock."""
        if now - state.last_failure > self._lockout_seconds():
            state.count = 0

    def prune(self) -> None:
        """Forget state that can no longer matter, so memory stays bounded."""
        now = self._clock()
        for ip in list(self._ip_failures):
            if not self._window(ip, now):
                self._ip_failures.pop(ip, None)
        horizon = self._lockout_seconds()
        for key, state in list(self._accounts.items()):
            if state.pending == 0 and state.locked_until <= now and now - state.last_failure > horizon:
                del self._accounts[key]
        # An unlock older than the feed could read again no longer needs remembering.
        stale = utcnow() - timedelta(seconds=max(horizon, UNLOCK_MEMORY_SECONDS))
        for account, cleared_at in list(self._unlocked.items()):
            if cleared_at < stale:
                del self._unlocked[account]

    def _window(self, ip: str, now: float) -> deque[float] | None:
        failures = self._ip_failures.get(ip)
        if failures is None:
            return None
        while failures and failures[0] <= now - WINDOW_SECONDS:
            failures.popleft()
        return failures
