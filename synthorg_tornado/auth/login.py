"""Logging in: the rate limit, the lockout, the password check and the first-run setup.

Unknown user and wrong password give the same answer after the same work (one bcrypt check, an
unknown user's against a dummy hash), so a response never tells whether an account exists. A
disabled user's password is checked like anyone's: wrong, it gets that same answer; right, it is
told the account is disabled (403), which tells nothing to someone who does not know the password.
Every password check, at login or before a password change, takes its place under the limits
synchronously, before its first await (see `throttle`); on PostgreSQL it then takes a lab-wide place
too, so the limits hold across every process.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import CTE

from synthorg_tornado.auth.audit import Actor, AuditEvent, AuditLog
from synthorg_tornado.auth.passwords import PasswordHasher
from synthorg_tornado.auth.sessions import CachedSession, SessionService
from synthorg_tornado.auth.throttle import LoginThrottle
from synthorg_tornado.auth.tokens import new_setup_token, same_digest
from synthorg_tornado.auth.users import UserRecord, UserService, validate_username
from synthorg_tornado.clock import isoformat
from synthorg_tornado.errors import (
    InvalidValue,
    NotAuthenticated,
    PermissionDenied,
)

log = logging.getLogger("synthorg.login")

INVALID_CREDENTIALS = "Invalid username or password."
ACCOUNT_DISABLED = "This account is disabled. Ask an administrator to enable it."
SETUP_COMPLETE = "Setup is complete: an admin exists. Log in instead."
SETUP_LINK_INVALID = (
    "This setup link is not current: the link changes at every restart and works once. "
    "Get the current one from the server's log or with: synthorg-tornado server list"
)


@dataclass(frozen=True)
class LoginResult:
    token: str
    session: CachedSession
    user: UserRecord

    def body(self) -> dict[str, Any]:
        return {
            "token": self.token,
            "token_type": "Bearer",
            "expires_at": isoformat(self.session.expires_at),
            "session": self.session.public(self.user, self.session.session_id),
            "user": self.user.public(),
        }


def _nothing() -> None:
    return None


class LoginService:
    def __init__(
        self,
        users: UserService,
        sessions: SessionService,
        hasher: PasswordHasher,
        throttle: LoginThrottle,
        audit: AuditLog,
    ) -> None:
        self.users = users
        self.sessions = sessions
        self.hasher = hasher
        self.throttle = throttle
        self.audit = audit
        self.failed_logins = 0
        # Also told of each failure: the lab-wide metric of several processes (`metrics`).
        self.on_failure: Callable[[], None] = _nothing
        # Awaited once the first admin exists, before the setup answer is sent: the server
        # withdraws the link from its runtime file (`server list`) there and then.
        self.on_setup_done: Callable[[], Awaitable[None]] | None = None
        self.setup_token: str | None = None

    def _count_failure(self) -> None:
        self.failed_logins += 1
        self.on_failure()

    async def login(
        self, username: object, password: object, ip_address: str, user_agent: str
    ) -> LoginResult:
        if not isinstance(username, str) or not isinstance(password, str):
            raise InvalidValue("username and password must be strings.")
        account = username.strip().lower()
        actor = Actor(None, username[:64], ip_address)
        async with await self.throttle.admit("auth.login", account, actor, target=username[:64]) as attempt:
            found = attempt.found
            if found is False:
                found = await self.users.find_for_login(account) if account else None
            elif found:
                self.users.remember(found[0])
            user, password_hash = found if found else (None, None)
            if not await self.hasher.verify(password, password_hash):
                await attempt.failed()
                self._count_failure()
                await self.audit.record(
                    "auth.login",
                    Actor(user.id if user else None, username[:64], ip_address),
                    target=username[:64],
                    outcome="failure",
                )
                raise NotAuthenticated(INVALID_CREDENTIALS)
            if user.disabled:
                await attempt.succeeded()
                self._count_failure()
                await self.audit.record(
                    "auth.login",
                    Actor(user.id, user.username, ip_address),
                    target=user.username,
                    outcome="failure",
                    detail={"reason": "disabled"},
                )
                raise PermissionDenied(ACCOUNT_DISABLED)
            settle = attempt.succeed_with_session()
        try:
            await self._upgrade_hash(user, password, password_hash)
            login = AuditEvent("auth.login", Actor(user.id, user.username, ip_address), target=user.username)
            result = await self.start_session(user, ip_address, user_agent, audit=login, settle=settle)
        except BaseException:
            await attempt.session_failed()
            raise
        attempt.session_started()
        return result

    async def unlock(self, user_id: int, *, actor: Actor) -> UserRecord:
        """Clear an account's login lockouts from every address, here and (through the stored
        unlock and the change feed) in every other process."""
        user, cleared_at = await self.users.clear_lockouts(user_id, actor=actor)
        self.throttle.unlock(user.username.lower(), cleared_at)
        return user

    async def confirm_password(self, user: UserRecord, password: object, actor: Actor) -> None:
        """Check a signed-in user's current password (before changing it) under the login limits.

        The same per-IP and (account, IP) budgets as `login`: a stolen session must not become a
        way to guess the password at bcrypt speed.
        """
        account = user.username.lower()
        async with await self.throttle.admit(
            "user.password", account, actor, target=user.username
        ) as attempt:
            found = attempt.found
            if found and found[0].id == user.id:  # the hash came with the lab-wide admission
                correct = await self.hasher.verify(password if isinstance(password, str) else "", found[1])
            else:
                correct = await self.users.verify_password(user.id, password)
            if not correct:
                await attempt.failed()
                await self.audit.record("user.password", actor, target=user.username, outcome="failure")
                raise PermissionDenied("The current password is incorrect.")
            await attempt.succeeded()

    async def _upgrade_hash(self, user: UserRecord, password: str, password_hash: str | None) -> None:
        """Re-hash at the configured cost after `auth.bcrypt_rounds` changed.

        An old, cheaper hash would answer faster than the dummy hash unknown users are checked
        against; `verify` pads it meanwhile, and the re-hash makes the padding unnecessary from
        the account's next check on. The login goes on if this fails.
        """
        if not self.hasher.needs_rehash(password_hash):
            return
        assert password_hash is not None
        try:
            fresh = await self.hasher.rehash(password)
            await self.users.replace_password_hash(user.id, password_hash, fresh)
        except Exception:
            log.warning("could not re-hash the password of user %s at the new cost", user.id, exc_info=True)

    async def start_session(
        self,
        user: UserRecord,
        ip_address: str,
        user_agent: str,
        *,
        audit: AuditEvent | None = None,
        settle: Sequence[CTE] = (),
    ) -> LoginResult:
        """A new session; `audit` (the login) commits with it, and so do `last_login_at` and
        `settle` (the lab-wide throttle's verdict on the password check)."""
        token, session = await self.sessions.create(user, ip_address, user_agent, audit=audit, settle=settle)
        refreshed = await self.users.cached(user.id) or user
        return LoginResult(token, session, refreshed)

    async def offer_setup(self, token: str | None = None) -> str | None:
        """A one-time setup token when no user exists yet (valid until used or restart).

        `token` is one drawn before the workers forked, so that each of them accepts it."""
        if await self.users.count() == 0:
            self.setup_token = token or new_setup_token()
        return self.setup_token

    async def setup_pending(self) -> bool:
        """True while no user exists. The database is asked only while this process still
        offers a token: once it has seen a user (made here or by another worker), never again."""
        if self.setup_token is None:
            return False
        if await self.users.count() > 0:
            self.setup_token = None
            return False
        return True

    def is_setup_token(self, token: str) -> bool:
        expected = self.setup_token
        return expected is not None and same_digest(token, expected)

    async def setup(
        self, token: object, username: object, password: object, ip_address: str, user_agent: str
    ) -> LoginResult:
        expected = self.setup_token
        if expected is None:
            raise PermissionDenied(SETUP_COMPLETE)
        if not isinstance(token, str) or not same_digest(token, expected):
            raise PermissionDenied(SETUP_LINK_INVALID)
        # A typo in the form is answered before the token is spent, so it still works.
        validate_username(username)
        self.hasher.validate(password)
        # Spent before the first await: of concurrent requests with the token, one gets past.
        self.setup_token = None
        actor = Actor(None, "setup", ip_address)
        try:
            user = await self.users.create_first_admin(username, password, actor=actor)
        except PermissionDenied:
            raise
        except Exception:
            self.setup_token = expected  # nothing was created: the token still works
            raise
        await self._setup_done()
        setup = AuditEvent("auth.setup", Actor(user.id, user.username, ip_address), target=user.username)
        return await self.start_session(user, ip_address, user_agent, audit=setup)

    async def _setup_done(self) -> None:
        """The admin exists whatever happens here: a failure to say so is logged, not answered."""
        if self.on_setup_done is None:
            return
        try:
            await self.on_setup_done()
        except Exception:
            log.exception("could not withdraw the spent setup link from the runtime file")
