"""Token formats: session JWTs, personal API tokens and WebSocket tickets.

Session JWTs are HS256 only: the algorithm is pinned on decode, so a token claiming `none` or an
asymmetric algorithm is rejected before its signature is even considered. API tokens and tickets
are random strings stored only as SHA-256 digests: a leaked table cannot be replayed.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

import jwt

from synthorg_tornado.errors import NotAuthenticated, SessionExpired

JWT_ALGORITHM = "HS256"
API_TOKEN_PREFIX = "syt_"
PREFIX_LENGTH = 12
SESSION_ID_BYTES = 32  # 256 bits in every jti
API_TOKEN_BYTES = 32


@dataclass(frozen=True)
class SessionClaims:
    user_id: int
    session_id: str
    issued_at: datetime
    expires_at: datetime


def derive_key(secret: bytes, purpose: str) -> bytes:
    """One secret file, independent keys per purpose (JWT signing, cookies, XSRF)."""
    return hmac.new(secret, purpose.encode(), hashlib.sha256).digest()


def new_session_id() -> str:
    """Hex, so an id never starts with '-' (a command line would read it as an option)."""
    return secrets.token_hex(SESSION_ID_BYTES)


class SessionTokens:
    """Issues and verifies session JWTs.

    A token string whose signature was verified once is remembered with its claims, so a busy
    client costs one signature check, not one per request; the expiry is still checked every
    time, and revocation is the session cache's job. An entry is forgotten when its session
    ends (`forget_session`) or expires (`evict_expired`), and the memory is bounded in any case
    (`remember` entries of about 800 bytes, oldest out first).
    """

    def __init__(self, key: bytes, remember: int = 50_000) -> None:
        self._key = key
        self._remember = remember
        self._verified: dict[str, SessionClaims] = {}
        # Session id -> its token in `_verified`, so an ended session's entry can be found.
        self._token_of: dict[str, str] = {}

    def issue(self, user_id: int, session_id: str, issued_at: datetime, expires_at: datetime) -> str:
        claims = {
            "sub": str(user_id),
            "jti": session_id,
            "iat": int(issued_at.timestamp()),
            "exp": int(expires_at.timestamp()),
        }
        return jwt.encode(claims, self._key, algorithm=JWT_ALGORITHM)

    def read(self, token: str, now: datetime | None = None) -> SessionClaims:
        """Verify signature and expiry. Expired -> SessionExpired; anything else wrong -> 1000."""
        claims = self._verified.get(token)
        if claims is None:
            claims = self._verify(token)
            if len(self._verified) >= self._remember:
                self._drop(next(iter(self._verified)))
            self._drop(self._token_of.get(claims.session_id))  # one entry per session
            self._verified[token] = claims
            self._token_of[claims.session_id] = token
        if claims.expires_at <= (now or datetime.now(UTC)):
            raise SessionExpired()
        return claims

    def forget_session(self, session_id: str) -> None:
        self._drop(self._token_of.get(session_id))

    def evict_expired(self, now: datetime) -> None:
        for token, claims in list(self._verified.items()):
            if claims.expires_at <= now:
                self._drop(token)

    def remembered(self) -> int:
        return len(self._verified)

    def _drop(self, token: str | None) -> None:
        claims = self._verified.pop(token, None) if token is not None else None
        if claims is not None and self._token_of.get(claims.session_id) == token:
            del self._token_of[claims.session_id]

    def _verify(self, token: str) -> SessionClaims:
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=[JWT_ALGORITHM],
                options={"require": ["sub", "jti", "iat", "exp"]},
            )
            user_id = int(claims["sub"])
            session_id = str(claims["jti"])
        except jwt.ExpiredSignatureError:
            raise SessionExpired() from None
        except (jwt.InvalidTokenError, ValueError, TypeError):
            raise NotAuthenticated("The token is invalid.") from None

        return SessionClaims(
            user_id=user_id,
            session_id=session_id,
            issued_at=datetime.fromtimestamp(claims["iat"], UTC),
            expires_at=datetime.fromtimestamp(claims["exp"], UTC),
        )


def looks_like_jwt(token: str) -> bool:
    return token.count(".") == 2 and not token.startswith(API_TOKEN_PREFIX)


def new_api_token() -> str:
    return API_TOKEN_PREFIX + secrets.token_urlsafe(API_TOKEN_BYTES)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def display_prefix(token: str) -> str:
    return token[:PREFIX_LENGTH]


def same_digest(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def new_ticket() -> str:
    return secrets.token_urlsafe(32)


def new_setup_token() -> str:
    return secrets.token_urlsafe(32)
