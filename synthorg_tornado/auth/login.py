"""Logging in: the rate limit, the lockout, the password check and the first-run setup.

Unknown user, disabled user and wrong password all give the same answer after the same work
(a bcrypt check against a dummy hash), so a response never tells whether an account exists.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from synthorg_tornado.auth import roles
from synthorg_tornado.auth.audit import Actor, AuditEvent, AuditLog
from synthorg_tornado.auth.passwords import PasswordHasher
from synthorg_tornado.auth.ratelimit import LoginLimiter
from synthorg_tornado.auth.sessions import CachedSession, SessionService
from synthorg_tornado.auth.tokens import new_setup_token, same_digest
from synthorg_tornado.auth.users import UserRecord, UserService
from synthorg_tornado.clock import isoformat
from synthorg_tornado.errors import InvalidValue, NotAuthenticated, PermissionDenied

log = logging.getLogger("synthorg.login")

INVALID_CREDENTIALS = "Invalid username or password."


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


class LoginService:
    def __init__(
        self,
        users: UserService,
        sessions: SessionService,
        hasher: PasswordHasher,
        limiter: LoginLimiter,
        audit: AuditLog,
    ) -> None:
        self.users = users
        self.sessions = sessions
        self.hasher = hasher
        self.limiter = limiter
        self.audit = audit
        self.failed_logins = 0
        self.setup_token: str | None = None

    async def login(
        self, username: object, password: object, ip_address: str, user_agent: str
    ) -> LoginResult:
        if not isinstance(username, str) or not isinstance(password, str):
            raise InvalidValue("username and password must be strings.")
        account = username.strip().lower()
        try:
            self.limiter.check(account, ip_address)
        except Exception as exc:
            await self.audit.record(
                "auth.login",
                Actor(None, username[:64], ip_address),
                target=username[:64],
                outcome="throttled",
                detail={"reason": type(exc).__name__},
            )
            raise
        found = await self.users.find_for_login(account) if account else None
        user, password_hash = found if found else (None, None)
        usable_hash = password_hash if user is not None and not user.disabled else None
        if not await self.hasher.verify(password, usable_hash):
            self.limiter.record_failure(account, ip_address)
            self.failed_logins += 1
            await self.audit.record(
                "auth.login",
                Actor(user.id if user else None, username[:64], ip_address),
                target=username[:64],
                outcome="failure",
            )
            raise NotAuthenticated(INVALID_CREDENTIALS)
        self.limiter.record_success(account, ip_address)
        login = AuditEvent("auth.login", Actor(user.id, user.username, ip_address), target=user.username)
        return await self.start_session(user, ip_address, user_agent, audit=login)

    async def start_session(
        self, user: UserRecord, ip_address: str, user_agent: str, *, audit: AuditEvent | None = None
    ) -> LoginResult:
        """A new session; `audit` (the login) commits with it, and so does `last_login_at`."""
        token, session = await self.sessions.create(user, ip_address, user_agent, audit=audit)
        refreshed = await self.users.cached(user.id) or user
        return LoginResult(token, session, refreshed)

    async def offer_setup(self) -> str | None:
        """A one-time setup token when no user exists yet (valid until used or restart)."""
        if await self.users.count() == 0:
            self.setup_token = new_setup_token()
        return self.setup_token

    async def setup(
        self, token: object, username: object, password: object, ip_address: str, user_agent: str
    ) -> LoginResult:
        expected = self.setup_token
        if expected is None or not isinstance(token, str) or not same_digest(token, expected):
            raise PermissionDenied("A valid setup token is required; it is printed when the server starts.")
        if await self.users.count() > 0:
            self.setup_token = None
            raise PermissionDenied("Setup is already complete.")
        # Spent before the first await that could interleave with another setup request.
        self.setup_token = None
        actor = Actor(None, "setup", ip_address)
        try:
            user = await self.users.create(username, password, roles.ADMIN, actor=actor)
        except Exception:
            self.setup_token = expected  # nothing was created: the token still works
            raise
        setup = AuditEvent("auth.setup", Actor(user.id, user.username, ip_address), target=user.username)
        return await self.start_session(user, ip_address, user_agent, audit=setup)
