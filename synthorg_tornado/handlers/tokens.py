"""Personal API tokens: create (shown once), list, revoke."""

from __future__ import annotations

from synthorg_tornado.accounts import roles
from synthorg_tornado.auth.api_tokens import DEFAULT_PAGE, MAX_PAGE
from synthorg_tornado.handlers.arguments import parse_count, parse_id
from synthorg_tornado.handlers.base import ApiHandler
from synthorg_tornado.handlers.decorators import authenticated


class TokensHandler(ApiHandler):
    @authenticated
    async def get(self) -> None:
        """The caller's live tokens, newest first: `{items, next_cursor}`, like the audit log."""
        limit = parse_count("limit", self.get_query_argument("limit", str(DEFAULT_PAGE)), 1, MAX_PAGE)
        items, next_cursor = await self.services.api_tokens.list(
            self.identity.user.id, limit=limit, cursor=self.get_query_argument("cursor", None)
        )
        self.write_json({"items": items, "next_cursor": next_cursor})

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
