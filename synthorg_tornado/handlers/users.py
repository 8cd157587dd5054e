"""The users API, for admins."""

from __future__ import annotations

from synthorg_tornado.accounts import roles
from synthorg_tornado.handlers.arguments import parse_id
from synthorg_tornado.handlers.base import ApiHandler
from synthorg_tornado.handlers.decorators import require_role


def parse_user_id(raw: str) -> int:
    return parse_id(raw, "user")


class UsersHandler(ApiHandler):
    @require_role(roles.ADMIN)
    async def get(self) -> None:
        self.write_json([user.public() for user in await self.services.users.list()])

    @require_role(roles.ADMIN)
    async def post(self) -> None:
        body = self.json_object()
        user = await self.services.users.create(
            body.get("username"),
            body.get("password"),
            body.get("role", roles.MEMBER),
            body.get("display_name", ""),
            actor=self.actor,
        )
        self.write_json(user.public(), status=201)


class UserHandler(ApiHandler):
    @require_role(roles.ADMIN)
    async def get(self, raw_id: str) -> None:
        user = await self.services.users.get(parse_user_id(raw_id))
        self.write_json(user.public())

    @require_role(roles.ADMIN)
    async def patch(self, raw_id: str) -> None:
        result = await self.services.accounts.update(
            parse_user_id(raw_id),
            self.json_object(),
            actor=self.actor,
            keep_session=self.identity.session_id,
        )
        self.write_json(result.user.public())

    @require_role(roles.ADMIN)
    async def delete(self, raw_id: str) -> None:
        await self.services.accounts.delete(parse_user_id(raw_id), actor=self.actor)
        self.set_status(204)
        self.finish()


class UserUnlockHandler(ApiHandler):
    @require_role(roles.ADMIN)
    async def post(self, raw_id: str) -> None:
        """Clear the user's login lockouts from every address, in every server process."""
        user = await self.services.login.unlock(parse_user_id(raw_id), actor=self.actor)
        self.write_json(user.public())


default_handlers = [
    (r"api/v1/users", UsersHandler),
    (r"api/v1/users/([^/]+)", UserHandler),
    (r"api/v1/users/([^/]+)/unlock", UserUnlockHandler),
]
