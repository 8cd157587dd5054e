"""What one process knows about sessions: the cache the hot path reads, with no database.

A session that ends (logout, revocation, expiry) is forgotten at once: what stays is its id in
the revocation list, and only until the session would have expired, so a revoked token is still
refused without the database. Before, the whole entry (and the identity built for it) stayed
until expiry, 24 h by default: 2.5 KiB per login/logout cycle. The revocation list is capped too
(`MAX_REVOKED`, oldest out): an id past the cap is read from the database, which still says
revoked, at its next use.

Activity is the one thing kept here that may be lost: `last_active_at` is written at most once
a minute per session, in batches (`pending_activity`), so a crash forgets up to a minute of it.
An idle timeout may then end a session up to a minute early, never late. Everything else a
session does (creation, revocation and their audit entries) commits before it is answered.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from synthorg_tornado.auth.users import UserRecord
from synthorg_tornado.clock import isoformat, utcnow
from synthorg_tornado.db.models import Session as SessionRow

ACTIVITY_DEBOUNCE = timedelta(minutes=1)
# About 200 bytes each (the id and when it may be forgotten): 20 MB at most.
MAX_REVOKED = 100_000


@dataclass
class CachedSession:
    session_id: str
    user_id: int
    created_at: datetime
    expires_at: datetime
    last_active_at: datetime
    ip_address: str
    user_agent: str
    revoked: bool = False
    last_written_at: datetime | None = None
    # The owner's `created_at` when the session was read (None: not read to be admitted). With
    # `user_id` it names the account, so the session never admits another one with the same id.
    account_created_at: datetime | None = None
    # The Bearer identity last built for this session (see Authenticator.identify_cached).
    identity: Any = None

    def public(self, user: UserRecord | None, current_session_id: str | None) -> dict[str, Any]:
        return {
            "session_id": self.session_id,
            "user_id": str(self.user_id),
            "username": user.username if user else "",
            "ip_address": self.ip_address,
            "user_agent": self.user_agent,
            "created_at": isoformat(self.created_at),
            "last_active_at": isoformat(self.last_active_at),
            "expires_at": isoformat(self.expires_at),
            "is_current": self.session_id == current_session_id,
        }


def cached_session(row: SessionRow, account_created_at: datetime | None = None) -> CachedSession:
    return CachedSession(
        session_id=row.id,
        user_id=row.user_id,
        created_at=row.created_at,
        expires_at=row.expires_at,
        last_active_at=row.last_active_at,
        ip_address=row.ip_address,
        user_agent=row.user_agent,
        revoked=row.revoked_at is not None,
        last_written_at=row.last_active_at,
        account_created_at=account_created_at,
    )


class SessionCache:
    """Live sessions known to this process, plus ids known to be revoked (with when each
    session would have expired, after which the id is dropped too).

    `lifetime` is the longest a session can live (for a revocation announced by another
    process, whose expiry this one does not know); `forget` is called with each session id
    that ends here, so what other caches hold for it (its verified token) goes too."""

    def __init__(
        self,
        lifetime: Callable[[], timedelta] = lambda: timedelta(days=1),
        forget: Callable[[str], None] = lambda session_id: None,
    ) -> None:
        self.sessions: dict[str, CachedSession] = {}
        self.revoked: dict[str, datetime] = {}
        self.pending_activity: dict[str, datetime] = {}
        self.lifetime = lifetime
        self.forget = forget

    def get(self, session_id: str) -> CachedSession | None:
        return self.sessions.get(session_id)

    def put(self, session: CachedSession) -> None:
        if session.session_id in self.revoked:
            # Read before a revocation committed, and revoked since: it stays revoked.
            session.revoked = True
        if session.revoked:
            self._remember_revoked(session.session_id, session.expires_at)
        else:
            self.sessions[session.session_id] = session

    def revoke(self, session_id: str, expires_at: datetime | None = None) -> None:
        """Forget the session; keep its id (until `expires_at`, if this process does not know
        the session) so that its token is refused without reading the database."""
        self.pending_activity.pop(session_id, None)
        cached = self.sessions.pop(session_id, None)
        if cached is not None:
            # A request holding the entry right now sees the revocation too.
            cached.revoked = True
            cached.identity = None
            expires_at = cached.expires_at
        self._remember_revoked(session_id, expires_at or utcnow() + self.lifetime())
        self.forget(session_id)

    def _remember_revoked(self, session_id: str, expires_at: datetime) -> None:
        self.revoked.pop(session_id, None)  # re-inserted as the newest
        self.revoked[session_id] = expires_at
        if len(self.revoked) > MAX_REVOKED:
            del self.revoked[next(iter(self.revoked))]

    def touch(self, session: CachedSession, now: datetime) -> None:
        session.last_active_at = now
        if session.last_written_at is None or now - session.last_written_at >= ACTIVITY_DEBOUNCE:
            self.pending_activity[session.session_id] = now
            session.last_written_at = now

    def queue_unwritten(self) -> None:
        """Queue every activity not yet written, debounced or not, for a reader that must see
        what this process sees (`sessions list` on the command line asks for it)."""
        for session in self.sessions.values():
            if session.last_active_at != session.last_written_at:
                self.pending_activity[session.session_id] = session.last_active_at
                session.last_written_at = session.last_active_at

    def active_count(self, now: datetime) -> int:
        return sum(1 for s in self.sessions.values() if s.expires_at > now)

    def evict_expired(self, now: datetime) -> list[tuple[str, int]]:
        """Forget expired sessions and the revoked ids past their expiry; returns the sessions
        that were still live (to end their sockets)."""
        ended = []
        for session_id, session in list(self.sessions.items()):
            if session.expires_at <= now:
                del self.sessions[session_id]
                self.pending_activity.pop(session_id, None)
                self.forget(session_id)
                ended.append((session_id, session.user_id))
        for session_id, expires_at in list(self.revoked.items()):
            if expires_at <= now:
                del self.revoked[session_id]
        return ended
