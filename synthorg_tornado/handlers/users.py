"""The users API, for admins."""

from __future__ import annotations

from synthorg_tornado.accounts import roles
from synthorg_tornado.errors import Conflict
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
        user_id = parse_user_id(raw_id)
        await self.services.users.get(user_id)
        body = self.json_object()
        if user_id == self.identity.user.id and (
            body.get("disabled") is True or ("role" in body and body["role"] != roles.ADMIN)
        ):
            raise Conflict("You cannot disable or demote your own account.")
        change = await self.services.users.update(user_id, body, actor=self.actor)
        if change.disabled_now:
            await self.services.sessions.revoke_all(user_id, "user_disabled", self.actor)
        elif change.password_changed:
            keep = self.identity.session_id if user_id == self.identity.user.id else None
            await self.services.sessions.revoke_all(user_id, "password_changed", self.actor, keep=keep)
        self.write_json(change.after.public())

    @require_role(roles.ADMIN)
    async def delete(self, raw_id: str) -> None:
        user_id = parse_user_id(raw_id)
        if user_id == self.identity.user.id:
            raise Conflict("You cannot delete your own account.")
        await self.services.users.get(user_id)
        await self.services.sessions.revoke_all(user_id, "user_deleted", self.actor)
        await self.services.users.delete(user_id, actor=self.actor)
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
