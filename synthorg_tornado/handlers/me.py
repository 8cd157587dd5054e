"""The caller's own account: `GET/PATCH /api/v1/me`, `POST /api/v1/me/password`."""

from __future__ import annotations

from synthorg_tornado.errors import InvalidValue
from synthorg_tornado.handlers.base import ApiHandler
from synthorg_tornado.handlers.decorators import authenticated


class MeHandler(ApiHandler):
    @authenticated
    async def get(self) -> None:
        self.write_json(self.identity.me())

    @authenticated
    async def patch(self) -> None:
        body = self.json_object()
        if set(body) - {"display_name"}:
            raise InvalidValue("Only display_name can be changed here.")
        result = await self.services.accounts.update(self.identity.user.id, body, actor=self.actor)
        self.write_json({**self.identity.me(), "display_name": result.user.display_name})


class MePasswordHandler(ApiHandler):
    @authenticated
    async def post(self) -> None:
        body = self.json_object()
        # The session that asked keeps working; every other one ends.
        await self.services.accounts.change_own_password(
            self.identity.user,
            body.get("current_password"),
            body.get("new_password"),
            actor=self.actor,
            keep_session=self.identity.session_id,
        )
        self.set_status(204)
        self.finish()


default_handlers = [
    (r"api/v1/me", MeHandler),
    (r"api/v1/me/password", MePasswordHandler),
]
