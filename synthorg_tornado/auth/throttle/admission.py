"""One admitted password check: its place in this process and, on PostgreSQL, lab-wide."""

from __future__ import annotations

from types import TracebackType

from sqlalchemy import CTE

from synthorg_tornado.accounts.records import UserRecord
from synthorg_tornado.auth.throttle.lab import LabAttempt
from synthorg_tornado.auth.throttle.limiter import Attempt


class Admission:
    """With a lab-wide place the in-memory one only bounds this process's checks in flight (it
    counts nothing, so every process reads the same counts from the database); without one, the
    in-memory limiter is the whole story. Settle it once; leaving the block without a verdict
    gives both places back.
    """

    def __init__(self, local: Attempt, lab: LabAttempt | None) -> None:
        self._local = local
        self._lab = lab

    async def failed(self) -> None:
        if self._lab is None:
            self._local.failed()
            return
        try:
            await self._lab.failed()
        finally:
            self._local.release()

    async def succeeded(self) -> None:
        if self._lab is None:
            self._local.succeeded()
            return
        try:
            await self._lab.succeeded()
        finally:
            self._local.release()

    def succeed_with_session(self) -> list[CTE]:
        """The success, written by the statement that starts the session (see LabAttempt)."""
        if self._lab is None:
            self._local.succeeded()
            return []
        self._local.release()
        return self._lab.succeed_with_session()

    async def session_failed(self) -> None:
        if self._lab is not None:
            await self._lab.settle_if_pending()

    def session_started(self) -> None:
        if self._lab is not None:
            self._lab.session_started()

    @property
    def found(self) -> tuple[UserRecord, str | None] | bool | None:
        """The account and its hash read with the lab-wide admission; False if none was read."""
        return False if self._lab is None else self._lab.found

    async def __aenter__(self) -> Admission:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if self._lab is not None:
                await self._lab.release()
        finally:
            self._local.release()
