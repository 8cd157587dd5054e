"""Noticing changes the command line made to a SQLite lab (PostgreSQL labs have the bus log).

(Sessions, API tokens, users, login unlocks and settings; the feed lives with auth because
sessions are its most urgent cargo.)

Twice a second a background job asks the database what was revoked or changed since it last looked
and applies it to this process's caches, then publishes the same bus events a local change would.
The hot path still never waits on the database; the price is that a change made elsewhere is
seen here within about half a second.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import select

from synthorg_tornado.auth.api_tokens import ApiTokenService
from synthorg_tornado.auth.sessions import SessionService
from synthorg_tornado.auth.throttle import LoginThrottle
from synthorg_tornado.auth.users import UserService
from synthorg_tornado.clock import utcnow
from synthorg_tornado.db.engine import Database
from synthorg_tornado.db.models import ApiToken, User
from synthorg_tornado.db.models import Session as SessionRow
from synthorg_tornado.realtime.bus import API_TOKEN_REVOKED, SESSION_REVOKED, USER_CHANGED, Bus
from synthorg_tornado.settings.service import SettingsService

log = logging.getLogger("synthorg.sync")

POLL_SECONDS = 0.5
# Re-read a little of the past each time: clocks of separate processes are not perfectly equal,
# and a transaction may commit a moment after the time it stamped.
OVERLAP = timedelta(seconds=5)


class ChangeFeed:
    def __init__(
        self,
        database: Database,
        users: UserService,
        sessions: SessionService,
        api_tokens: ApiTokenService,
        settings: SettingsService,
        bus: Bus,
        throttle: LoginThrottle,
    ) -> None:
        self.database = database
        self.users = users
        self.sessions = sessions
        self.api_tokens = api_tokens
        self.settings = settings
        self.bus = bus
        self.throttle = throttle
        self.watermark: datetime = utcnow()

    async def poll(self) -> None:
        started = utcnow()
        since = self.watermark - OVERLAP
        async with self.database.session() as session:
            revoked_sessions = (
                await session.execute(
                    select(SessionRow.id, SessionRow.user_id, SessionRow.revoked_reason).where(
                        SessionRow.revoked_at >= since
                    )
                )
            ).all()
            revoked_tokens = (
                await session.execute(
                    select(ApiToken.id, ApiToken.user_id, ApiToken.token_hash).where(
                        ApiToken.revoked_at >= since
                    )
                )
            ).all()
            # An unlock bumps updated_at too, whose index keeps this cheap.
            unlocked = (
                await session.execute(
                    select(User.username_key, User.lockout_cleared_at).where(
                        User.updated_at >= since, User.lockout_cleared_at >= since
                    )
                )
            ).all()
        for session_id, user_id, reason in revoked_sessions:
            if session_id in self.sessions.cache.revoked:
                continue
            self.sessions.cache.revoke(session_id)
            await self.bus.publish(
                SESSION_REVOKED,
                {"session_id": session_id, "user_id": str(user_id), "reason": reason or "revoked"},
            )
        for token_id, user_id, token_hash in revoked_tokens:
            if self.api_tokens.forget_revoked(token_hash):
                await self.bus.publish(
                    API_TOKEN_REVOKED, {"token_id": str(token_id), "user_id": str(user_id)}
                )
        for account, cleared_at in unlocked:
            if self.throttle.unlock(account, cleared_at):
                log.info("login lockouts of %s cleared by an unlock made elsewhere", account)
        for before, after in await self.users.changed_since(since):
            if before is not None:
                await self.users.publish_change(before, after)
        await self._end_deleted_users()
        for entry in await self.settings.refresh_changed(since):
            await self.settings.publish(entry)
        self.watermark = started

    async def _end_deleted_users(self) -> None:
        """A user deleted elsewhere takes its sessions and tokens with it (ON DELETE CASCADE),
        revocations included, so nothing above would notice: without this, its sessions and
        tokens kept working here. Forgetting the user refuses both; the event ends its cached
        sessions and closes its sockets."""
        gone = set(await self.users.forget_deleted())
        # The sessions service revokes the user's cached sessions on this event (any process's).
        for user_id in gone:
            await self.bus.publish(USER_CHANGED, {"user_id": str(user_id), "deleted": True})
