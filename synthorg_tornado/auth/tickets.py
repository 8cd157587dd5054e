"""WebSocket tickets: a short-lived, single-use pass for `?ticket=` at the handshake.

Browsers cannot set an Authorization header on a WebSocket, and a cookie invites cross-site
use; a ticket fetched over an authenticated request avoids both. Tickets live in the database
(as SHA-256 digests) so that any process can redeem them, and redemption is one atomic UPDATE,
so a ticket works exactly once even if two processes race for it.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update

from synthorg_tornado.auth.api_tokens import ApiTokenService
from synthorg_tornado.auth.identity import SESSION, TOKEN, Identity
from synthorg_tornado.auth.sessions import SessionService
from synthorg_tornado.auth.tokens import digest, new_ticket
from synthorg_tornado.clock import utcnow
from synthorg_tornado.db.engine import Database
from synthorg_tornado.db.models import WsTicket
from synthorg_tornado.errors import NotAuthenticated


class TicketService:
    def __init__(
        self, database: Database, sessions: SessionService, api_tokens: ApiTokenService, ttl_seconds: int
    ) -> None:
        self.database = database
        self.sessions = sessions
        self.api_tokens = api_tokens
        self.ttl_seconds = ttl_seconds

    async def issue(self, identity: Identity) -> dict[str, object]:
        ticket = new_ticket()
        now = utcnow()
        async with self.database.session() as session:
            session.add(
                WsTicket(
                    id=digest(ticket),
                    user_id=identity.user.id,
                    session_id=identity.session_id,
                    api_token_id=identity.api_token_id,
                    created_at=now,
                    expires_at=now + timedelta(seconds=self.ttl_seconds),
                )
            )
            await session.commit()
        return {"ticket": ticket, "expires_in": self.ttl_seconds}

    async def redeem(self, ticket: str) -> Identity:
        """Spend the ticket and return who it was issued to, if that credential is still valid."""
        ticket_id = digest(ticket)
        now = utcnow()
        async with self.database.session() as session:
            # One statement spends the ticket and says whom it was for: of any number of
            # concurrent redemptions (in any process) exactly one gets a row back.
            row = (
                await session.execute(
                    update(WsTicket)
                    .where(WsTicket.id == ticket_id, WsTicket.used_at.is_(None), WsTicket.expires_at > now)
                    .values(used_at=now)
                    .returning(WsTicket.user_id, WsTicket.session_id, WsTicket.api_token_id)
                    .execution_options(synchronize_session=False)
                )
            ).first()
            await session.commit()
        if row is None:
            raise NotAuthenticated("The ticket is invalid, expired or already used.")
        if row.session_id is not None:
            user, cached = await self.sessions.authenticate_session_id(row.session_id)
            return Identity(user, SESSION, session_id=cached.session_id, source="ticket")
        if row.api_token_id is not None:
            user = await self.api_tokens.authenticate_id(row.api_token_id)
            return Identity(user, TOKEN, api_token_id=row.api_token_id, source="ticket")
        raise NotAuthenticated("The ticket is not bound to a credential.")
