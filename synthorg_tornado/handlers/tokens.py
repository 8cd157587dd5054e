"""Personal API tokens: create (shown once), list, revoke."""

from __future__ import annotations

from synthorg_tornado.auth import roles
from synthorg_tornado.handlers.arguments import parse_id
from synthorg_tornado.handlers.base import ApiHandler
from synthorg_tornado.handlers.decorators import authenticated


class TokensHandler(ApiHandler):
    @authenticated
    async def get(self) -> None:
        self.write_json(await self.services.api_tokens.list(self.identity.user.id))

    @authenticated
    async def post(self) -> None:
        body = self.json_object()
        created = await self.services.api_tokens.create(
            self.identity.user, body.get("name"), body.get("expires_days"), self.actor
        )
        self.write_json(created, status=201)


class TokenHandler(ApiHandler):
    @authenticated
    async def delete(self, raw_id: str) -> None:
        token_id = parse_id(raw_id, "token")
        owner = None if self.identity.user.role == roles.ADMIN else self.identity.user.id
        await self.services.api_tokens.revoke(token_id, owner, self.actor)
        self.set_status(204)
        self.finish()


default_handlers = [
    (r"api/v1/tokens", TokensHandler),
    (r"api/v1/tokens/([^/]+)", TokenHandler),
]
