"""Login throttling that holds lab-wide: the counts live in PostgreSQL, shared by every process.

With the in-memory limiter alone, N processes (or hosts) on one database would each allow the
per-IP limit and the (account, IP) lockout, N times over. Here every password check is a row of
`login_attempts`, written when the attempt is admitted (`checking`) and settled with its verdict:

- admission is one transaction: a transaction-scoped advisory lock on the address (on the pair,
  for an allowlisted address), then one read of the address's window and the pair's failures,
  then the insert of the reservation. The lock makes read-and-insert atomic across processes:
  when A and B both arrive with 9 of a limit of 10 counted, the second reads after the first
  committed its reservation, sees 10 and is refused. Checks still in flight anywhere count, so a
  burst split across processes is held to the limit, not to the limit per process;
- a failure updates its row to `failed` (a failed login already costs a bcrypt hash, so one more
  write is cheap). A success deletes its reservation and forgives that pair's failures (they stay
  in the address's window, as they do in memory): one statement, on a path that already writes
  the session;
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

from sqlalchemy import TextClause, text

from synthorg_tornado.auth.ratelimit import IN_FLIGHT_RETRY_SECONDS, WINDOW_SECONDS
from synthorg_tornado.clock import utcnow
from synthorg_tornado.db.engine import Database
from synthorg_tornado.errors import AccountLocked, RateLimited

log = logging.getLogger("synthorg.login")

ACCOUNT_LENGTH = 64

_LOCK = text("SELECT pg_advisory_xact_lock(:key)")
# Both counts in one read, through both indexes: the address's last minute, and the pair's
# lockout window, which starts no earlier than the account's last unlock.
_COUNTS = text(
    """
    WITH bound AS MATERIALIZED (
      SELECT GREATEST(
        CAST(:pair_since AS timestamptz),
        (SELECT lockout_cleared_at FROM users WHERE username_key = :account)
      ) AS pair_since
    )
    SELECT
      count(*) FILTER (WHERE at > :ip_since) AS ip_all,
      count(*) FILTER (WHERE at > :ip_since AND outcome <> 'checking') AS ip_failed,
      min(at) FILTER (WHERE at > :ip_since AND outcome <> 'checking') AS ip_oldest,
      count(*) FILTER (WHERE account = :account AND at > bound.pair_since
                       AND outcome IN ('checking', 'failed')) AS pair_all,
      count(*) FILTER (WHERE account = :account AND at > bound.pair_since
                       AND outcome = 'failed') AS pair_failed,
      min(at) FILTER (WHERE account = :account AND at > bound.pair_since
                      AND outcome = 'failed') AS pair_oldest
    FROM bound LEFT JOIN login_attempts
      ON ip = :ip AND (at > :ip_since OR account = :account AND at > bound.pair_since)
    """
)
_RESERVE = text(
    "INSERT INTO login_attempts (ip, account, at, outcome) VALUES (:ip, :account, :at, 'checking') "
    "RETURNING id"
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
        """Take a lab-wide place for one password check, or raise `RateLimited`/`AccountLocked`."""
        account = account[:ACCOUNT_LENGTH]
        exempt = self._exempt(ip)
        now = utcnow()
        ip_since = now - timedelta(seconds=WINDOW_SECONDS)
        lockout = timedelta(seconds=self._lockout_seconds())
        async with self.database.connection() as connection:
            # Serialise the admissions this one could race with: every check from the address,
            # or, where the per-IP limit does not apply, every check of this pair.
            key = _lock_key("pair", ip, account) if exempt else _lock_key("ip", ip)
            await connection.execute(_LOCK, {"key": key})
            pair_since = now - lockout
            counts = (
                await connection.execute(
                    _COUNTS,
                    {
                        "ip": ip,
                        "account": account,
                        "ip_since": ip_since,
                        "pair_since": pair_since,
                    },
                )
            ).one()
            if not exempt:
                limit = self._per_minute()
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
            threshold = self._threshold()
            if counts.pair_failed >= threshold:
                raise AccountLocked(retry_after=_seconds_until(counts.pair_oldest + lockout, now))
            if counts.pair_all >= threshold:
                raise AccountLocked(retry_after=IN_FLIGHT_RETRY_SECONDS)
            reservation = (
                await connection.execute(_RESERVE, {"ip": ip, "account": account, "at": now})
            ).scalar_one()
            await connection.commit()
        return LabAttempt(self, reservation, account, ip)

    async def _write(self, statement: TextClause, parameters: dict[str, object]) -> None:
        async with self.database.connection() as connection:
            await connection.execute(statement, parameters)
            await connection.commit()

    async def prune(self) -> None:
        """Delete the rows no window can reach any more (the cleanup job)."""
        horizon = max(WINDOW_SECONDS, self._lockout_seconds())
        await self._write(_PRUNE, {"before": utcnow() - timedelta(seconds=horizon)})


class LabAttempt:
    """One reserved place in the database. Settle it once; as a context manager, an attempt
    left without a verdict gives its place back without counting."""

    def __init__(self, throttle: LabThrottle, reservation: int, account: str, ip: str) -> None:
        self._throttle = throttle
        self.reservation = reservation
        self.account = account
        self.ip = ip
        self._settled = False

    def _settle(self) -> bool:
        first, self._settled = not self._settled, True
        return first

    async def failed(self) -> None:
        if self._settle():
            await self._throttle._write(_FAILED, {"id": self.reservation, "at": utcnow()})

    async def succeeded(self) -> None:
        if self._settle():
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
