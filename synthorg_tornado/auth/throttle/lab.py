"""Login throttling that holds lab-wide: the counts live in PostgreSQL, shared by every process.

With the in-memory limiter alone, N processes (or hosts) on one database would each allow the
per-IP limit and the (account, IP) lockout, N times over. Here every password check is a row of
`login_attempts`, written when the attempt is admitted (`checking`) and settled with its verdict:

- admission is one call of `synthorg_login_admit()` (migration 0006): a transaction-scoped
  advisory lock on the address (on the pair, for an allowlisted address), then one read of the
  address's window and the pair's failures, then the insert of the reservation. The lock makes
  read-and-insert atomic across processes: when A and B both arrive with 9 of a limit of 10
  counted, the second reads after the first committed its reservation, sees 10 and is refused.
  Checks still in flight anywhere count, so a burst split across processes is held to the limit,
  not to the limit per process. The same statement reads the account's row, the read a login
  makes anyway, so admission costs no round trip of its own;
- a failure updates its row to `failed` (a failed login already costs a bcrypt hash, so one more
  write is cheap). A success deletes its reservation and forgives that pair's failures (they stay
  in the address's window, as they do in memory) inside the statement that starts the session
  (`users.mark_login`): a successful login writes nothing more than it would on SQLite;
- the lockout is a sliding window: a pair with `lockout_threshold` failures in the last
  `lockout_minutes` is refused until the oldest of them ages out. Failures made before the
  account's last unlock (`users.lockout_cleared_at`) do not count, so an unlock made by any
  process, or by the command line, applies everywhere at once.

A process that dies mid-check leaves a `checking` row that counts as a failure until it leaves
the windows: the safe side. `prune()` deletes rows no window can reach. SQLite (one process)
never uses this: the in-memory limiter is all it needs.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Callable
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, NoReturn

from sqlalchemy import CTE, TextClause, delete, text, update

from synthorg_tornado.accounts.records import UserRecord, record_of
from synthorg_tornado.auth.throttle.limiter import IN_FLIGHT_RETRY_SECONDS, WINDOW_SECONDS
from synthorg_tornado.clock import utcnow
from synthorg_tornado.db.engine import Database
from synthorg_tornado.db.models import LoginAttempt
from synthorg_tornado.errors import AccountLocked, RateLimited

log = logging.getLogger("synthorg.login")

ACCOUNT_LENGTH = 64

# The admission (migration 0006) and the account it is for, in one round trip: it replaces the
# read of the user that a login makes anyway, so a login pays nothing extra for the lab-wide count.
_ADMIT = text(
    """
    SELECT a.*, u.id, u.username, u.display_name, u.role, u.disabled, u.created_at,
           u.last_login_at, u.password_hash
    FROM synthorg_login_admit(:key, :ip, :account, :at, :ip_since, :pair_since, :exempt, :limit,
                              :threshold) AS a
    LEFT JOIN users u ON u.username_key = :account
    """
)
_FAILED = text("UPDATE login_attempts SET outcome = 'failed', at = :at WHERE id = :id")
_SUCCEEDED = text(
    """
    WITH reservation AS (DELETE FROM login_attempts WHERE id = :id)
    UPDATE login_attempts SET outcome = 'forgiven'
    WHERE account = :account AND ip = :ip AND outcome = 'failed'
    """
)
_RELEASE = text("DELETE FROM login_attempts WHERE id = :id")
_PRUNE = text("DELETE FROM login_attempts WHERE at < :before")


def _lock_key(*parts: str) -> int:
    """A signed 64-bit advisory-lock key; the prefix keeps it apart from other advisory locks."""
    digest = hashlib.blake2b("\0".join(("login", *parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _seconds_until(moment: datetime, now: datetime) -> int:
    return max(IN_FLIGHT_RETRY_SECONDS, math.ceil((moment - now).total_seconds()))


class LabThrottle:
    """The lab-wide counts of `LoginLimiter`'s two limits, kept in PostgreSQL."""

    def __init__(
        self,
        database: Database,
        per_minute: Callable[[], int],
        lockout_threshold: Callable[[], int],
        lockout_seconds: Callable[[], float],
        exempt: Callable[[str], bool],
    ) -> None:
        self.database = database
        self._per_minute = per_minute
        self._threshold = lockout_threshold
        self._lockout_seconds = lockout_seconds
        self._exempt = exempt

    async def reserve(self, account: str, ip: str) -> LabAttempt:
        """Take a lab-wide place for one password check, or raise `RateLimited`/`AccountLocked`.

        The attempt also carries the account's user row and password hash (`found`), read in
        the same call."""
        account = account[:ACCOUNT_LENGTH]
        exempt = self._exempt(ip)
        now = utcnow()
        lockout = timedelta(seconds=self._lockout_seconds())
        limit, threshold = self._per_minute(), self._threshold()
        # Serialise the admissions this one could race with: every check from the address, or,
        # where the per-IP limit does not apply, every check of this pair.
        key = _lock_key("pair", ip, account) if exempt else _lock_key("ip", ip)
        async with self.database.connection() as connection:
            # One statement, committed on its own: the lock lasts exactly as long as the admission.
            autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
            row = (
                await autocommit.execute(
                    _ADMIT,
                    {
                        "key": key,
                        "ip": ip,
                        "account": account,
                        "at": now,
                        "ip_since": now - timedelta(seconds=WINDOW_SECONDS),
                        "pair_since": now - lockout,
                        "exempt": exempt,
                        "limit": limit,
                        "threshold": threshold,
                    },
                )
            ).one()
        if row.reservation is None:
            _refuse(row, exempt, limit, threshold, now, lockout)
        found = (record_of(row), row.password_hash) if row.id is not None else None
        return LabAttempt(self, row.reservation, account, ip, found)

    async def _write(self, statement: TextClause, parameters: dict[str, object]) -> None:
        async with self.database.connection() as connection:
            await connection.execute(statement, parameters)
            await connection.commit()

    async def prune(self) -> None:
        """Delete the rows no window can reach any more (the cleanup job)."""
        horizon = max(WINDOW_SECONDS, self._lockout_seconds())
        await self._write(_PRUNE, {"before": utcnow() - timedelta(seconds=horizon)})


def _refuse(
    counts: Any, exempt: bool, limit: int, threshold: int, now: datetime, lockout: timedelta
) -> NoReturn:
    """Why the admission reserved nothing: the address's limit, or the pair's lockout."""
    if not exempt:
        if counts.ip_failed >= limit:
            raise RateLimited(
                "Too many failed logins from your address. Try again later.",
                retry_after=_seconds_until(counts.ip_oldest + timedelta(seconds=WINDOW_SECONDS), now),
            )
        if counts.ip_all >= limit:
            raise RateLimited(
                "Too many failed logins from your address. Try again later.",
                retry_after=IN_FLIGHT_RETRY_SECONDS,
            )
    if counts.pair_failed >= threshold:
        raise AccountLocked(retry_after=_seconds_until(counts.pair_oldest + lockout, now))
    raise AccountLocked(retry_after=IN_FLIGHT_RETRY_SECONDS)


class LabAttempt:
    """One reserved place in the database. Settle it once; as a context manager, an attempt
    left without a verdict gives its place back without counting."""

    def __init__(
        self,
        throttle: LabThrottle,
        reservation: int,
        account: str,
        ip: str,
        found: tuple[UserRecord, str | None] | None = None,
    ) -> None:
        self._throttle = throttle
        self.reservation = reservation
        self.account = account
        self.ip = ip
        # The account's user and password hash, read with the admission (None: no such user).
        self.found = found
        self._settled = False
        self._pending = False

    def _settle(self) -> bool:
        first, self._settled = not self._settled, True
        return first

    async def failed(self) -> None:
        if self._settle():
            await self._throttle._write(_FAILED, {"id": self.reservation, "at": utcnow()})

    async def succeeded(self) -> None:
        if self._settle():
            await self._write_success()

    def succeed_with_session(self) -> list[CTE]:
        """The success, settled by the statement that starts the session (`users.mark_login`):
        these CTEs delete the reservation and forgive the pair's failures, so a successful
        login writes nothing more than its session. Should that transaction fail,
        `settle_if_pending` writes them on their own."""
        if not self._settle():
            return []
        self._pending = True
        attempts = LoginAttempt.__table__
        reservation = delete(attempts).where(attempts.c.id == self.reservation).cte("settled_reservation")
        forgiven = (
            update(attempts)
            .where(
                attempts.c.account == self.account, attempts.c.ip == self.ip, attempts.c.outcome == "failed"
            )
            .values(outcome="forgiven")
            .cte("forgiven_failures")
        )
        return [reservation, forgiven]

    def session_started(self) -> None:
        self._pending = False

    async def settle_if_pending(self) -> None:
        if self._pending:
            self._pending = False
            try:
                await self._write_success()
            except Exception:
                log.warning("could not settle the login reservation %s", self.reservation, exc_info=True)

    async def _write_success(self) -> None:
        await self._throttle._write(
            _SUCCEEDED, {"id": self.reservation, "account": self.account, "ip": self.ip}
        )

    async def release(self) -> None:
        if not self._settle():
            return
        try:
            await self._throttle._write(_RELEASE, {"id": self.reservation})
        except Exception:
            # The row then counts as a failure until it leaves the windows: the safe side.
            log.warning("could not release the login reservation %s", self.reservation, exc_info=True)

    async def __aenter__(self) -> LabAttempt:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.release()
