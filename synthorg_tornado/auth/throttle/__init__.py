"""Login throttling: per-address limits, per-(account, address) lockout, and their audit.

`LoginThrottle` is the one entry point. Every password check (a login, or the check before a
password change) takes its place through `admit()` before anything else is awaited, and settles
it with the verdict. Behind it:

- `limiter`: the counts in this process's memory. Alone on SQLite (one process), it is the
  whole story; on PostgreSQL it only bounds the checks in flight in this process;
- `lab`: on PostgreSQL, the same limits kept in the database, so they hold across every process;
- `audit`: a refusal is written once per burst, not once per request;
- `admission`: one admitted check, settled once, with both places.

An admin's unlock (`unlock()`) forgets an account's lockouts; other processes learn of it through
the bus or the change feed and call `unlock()` too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime

from synthorg_tornado.auth.audit import Actor, AuditLog
from synthorg_tornado.auth.throttle.admission import Admission
from synthorg_tornado.auth.throttle.audit import ThrottledAttempts
from synthorg_tornado.auth.throttle.lab import LabThrottle
from synthorg_tornado.auth.throttle.limiter import LoginLimiter, Network
from synthorg_tornado.db.engine import Database
from synthorg_tornado.errors import AccountLocked, RateLimited

__all__ = ["Admission", "LoginThrottle"]


class LoginThrottle:
    """The login limits of this process and, on PostgreSQL, of the whole lab."""

    def __init__(self, limiter: LoginLimiter, audit: AuditLog, lab: LabThrottle | None = None) -> None:
        self.limiter = limiter
        self.lab = lab
        self.throttled = ThrottledAttempts(audit)

    @classmethod
    def build(
        cls,
        audit: AuditLog,
        *,
        per_minute: Callable[[], int],
        lockout_threshold: Callable[[], int],
        lockout_seconds: Callable[[], float],
        allowlist: Iterable[Network] = (),
        lab_database: Database | None = None,
    ) -> LoginThrottle:
        """`lab_database` is the shared PostgreSQL database; None where one process serves."""
        limiter = LoginLimiter(per_minute, lockout_threshold, lockout_seconds, allowlist=allowlist)
        lab = (
            None
            if lab_database is None
            else LabThrottle(lab_database, per_minute, lockout_threshold, lockout_seconds, limiter.exempt)
        )
        return cls(limiter, audit, lab)

    async def admit(self, action: str, account: str, actor: Actor, *, target: str) -> Admission:
        """A place under the limits, taken in this process before anything is awaited, then
        lab-wide on PostgreSQL; a refusal is audited once per burst."""
        try:
            local = self.limiter.admit(account, actor.ip_address)
            if self.lab is None:
                return Admission(local, None)
        except (RateLimited, AccountLocked) as refusal:
            await self.throttled.record(action, actor, target=target, reason=type(refusal).__name__)
            raise
        try:
            lab = await self.lab.reserve(account, actor.ip_address)
        except (RateLimited, AccountLocked) as refusal:
            local.release()
            await self.throttled.record(action, actor, target=target, reason=type(refusal).__name__)
            raise
        except BaseException:
            local.release()
            raise
        return Admission(local, lab)

    def unlock(self, account: str, cleared_at: datetime) -> bool:
        """Forget the account's lockouts in this process; True if this unlock was news here."""
        return self.limiter.unlock(account, cleared_at)

    def prune_memory(self) -> None:
        """Forget in-memory counts no window can reach (the cleanup job)."""
        self.limiter.prune()

    async def prune(self) -> None:
        """Delete the lab-wide rows no window can reach (the cleanup job)."""
        if self.lab is not None:
            await self.lab.prune()

    async def flush(self) -> None:
        """Write the counts of throttled bursts held in memory."""
        await self.throttled.flush()
