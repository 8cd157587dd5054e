"""Who is making a request, from whichever credential it carries.

Accepted, in this order: `Authorization: Bearer <session JWT or API token>`, `Authorization: token
<API token>` (Jupyter's form), then the session cookie. A credential that is present but bad is an
error (revoked, expired, invalid), never a silent fall-back to anonymous.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from synthorg_tornado.auth.api_tokens import ApiTokenService
from synthorg_tornado.auth.audit import Actor
from synthorg_tornado.auth.sessions import SessionService
from synthorg_tornado.auth.tokens import looks_like_jwt
from synthorg_tornado.auth.users import UserRecord
from synthorg_tornado.errors import NotAuthenticated

SESSION, TOKEN = "session", "token"


@dataclass(frozen=True)
class Identity:
    user: UserRecord
    kind: str
    session_id: str | None = None
    api_token_id: int | None = None
    # Where the credential came from: "header" or "cookie" (XSRF applies to the cookie only).
    source: str = "header"

    def actor(self, ip_address: str) -> Actor:
        return Actor(self.user.id, self.user.username, ip_address)

    def me(self) -> dict[str, Any]:
        return {
            "id": str(self.user.id),
            "username": self.user.username,
            "display_name": self.user.display_name,
            "role": self.user.role,
            "session_id": self.session_id,
            "auth": self.kind,
        }


class Authenticator:
    def __init__(self, sessions: SessionService, api_tokens: ApiTokenService) -> None:
        self.sessions = sessions
        self.api_tokens = api_tokens

    def identify_cached(self, authorization: str | None) -> Identity | None:
        """A Bearer session token answered from memory alone, or None (then use `identify`)."""
        if not authorization or authorization[:7].lower() != "bearer ":
            return None
        token = authorization[7:].strip()
        if not looks_like_jwt(token):
            return None
        known = self.sessions.authenticate_cached(token)
        if known is None:
            return None
        user, session = known
        # Reused while the user record is the same object: a change replaces the record.
        identity = session.identity
        if identity is None or identity.user is not user:
            identity = session.identity = Identity(
                user, SESSION, session_id=session.session_id, source="header"
            )
        return identity

    async def identify(self, authorization: str | None, cookie: str | None) -> Identity | None:
        if authorization:
            scheme, _, credential = authorization.strip().partition(" ")
            credential = credential.strip()
            if not credential:
                raise NotAuthenticated("The Authorization header is malformed.")
            scheme = scheme.lower()
            if scheme == "bearer" and looks_like_jwt(credential):
                user, session = await self.sessions.authenticate(credential)
                return Identity(user, SESSION, session_id=session.session_id, source="header")
            if scheme in ("bearer", "token"):
                return await self.token_identity(credential)
            raise NotAuthenticated("Unsupported Authorization scheme; use Bearer or token.")
        if cookie:
            return await self.session_identity(cookie, "cookie")
        return None

    async def session_identity(self, token: str, source: str) -> Identity:
        user, session = await self.sessions.authenticate(token)
        return Identity(user, SESSION, session_id=session.session_id, source=source)

    async def token_identity(self, token: str) -> Identity:
        user, cached = await self.api_tokens.authenticate(token)
        return Identity(user, TOKEN, api_token_id=cached.id)
