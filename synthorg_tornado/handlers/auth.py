"""Login, first-run setup, logout and the sessions API."""

from __future__ import annotations

from synthorg_tornado.accounts import roles
from synthorg_tornado.auth.audit import AuditEvent
from synthorg_tornado.auth.identity import SESSION
from synthorg_tornado.errors import InvalidValue, NotFound, PermissionDenied, UnsupportedOperation
from synthorg_tornado.handlers.arguments import MAX_ID, parse_count
from synthorg_tornado.handlers.base import ApiHandler
from synthorg_tornado.handlers.decorators import allow_anonymous, authenticated

SCOPES = ("own", "all")


class LoginHandler(ApiHandler):
    @allow_anonymous
    async def post(self) -> None:
        body = self.json_object()
        result = await self.services.login.login(
            body.get("username"), body.get("password"), self.request.remote_ip or "", self.user_agent
        )
        await self.end_replaced_session()
        self.set_session_cookie(result.token, result.session.expires_at)
        self.write_json(result.body())


class SetupHandler(ApiHandler):
    """Creates the first admin with the one-time token printed at start-up."""

    @allow_anonymous
    async def post(self) -> None:
        body = self.json_object()
        result = await self.services.login.setup(
            body.get("token"),
            body.get("username"),
            body.get("password"),
            self.request.remote_ip or "",
            self.user_agent,
        )
        self.set_session_cookie(result.token, result.session.expires_at)
        self.write_json(result.body(), status=201)


class LogoutHandler(ApiHandler):
    @authenticated
    async def post(self) -> None:
        if self.identity.kind != SESSION or self.identity.session_id is None:
            raise UnsupportedOperation(
                "An API token has no session to log out of; revoke the token with "
                "DELETE /api/v1/tokens/{id} instead."
            )
        logout = AuditEvent("auth.logout", self.actor, target=self.identity.user.username)
        await self.services.sessions.revoke(self.identity.session_id, "logout", self.actor, audit=logout)
        self.clear_session_cookie()
        self.set_header("Clear-Site-Data", '"cookies"')
        self.set_status(204)
        self.finish()


class SessionsHandler(ApiHandler):
    @authenticated
    async def get(self) -> None:
        scope = self.get_query_argument("scope", "own")
        if scope == "all" and self.identity.user.role != roles.ADMIN:
            raise PermissionDenied("Only admins can list every user's sessions.")
        if scope not in SCOPES:
            raise InvalidValue("scope must be 'own' or 'all'.")
        user_id = None if scope == "all" else self.identity.user.id
        if scope == "all" and self.get_query_argument("user_id", None) is not None:
            user_id = parse_count("user_id", self.get_query_argument("user_id"), 1, MAX_ID)
        self.write_json(await self.services.sessions.list(user_id, self.identity.session_id))


class SessionHandler(ApiHandler):
    @authenticated
    async def delete(self, session_id: str) -> None:
        owner = await self.services.sessions.owner_of(session_id)
        # Someone else's session looks exactly like one that does not exist.
        if owner is None or (owner != self.identity.user.id and self.identity.user.role != roles.ADMIN):
            raise NotFound("No such session.")
        await self.services.sessions.revoke(session_id, "revoked", self.actor)
        self.set_status(204)
        self.finish()


class RevokeOthersHandler(ApiHandler):
    @authenticated
    async def post(self) -> None:
        count = await self.services.sessions.revoke_all(
            self.identity.user.id, "revoked_by_user", self.actor, keep=self.identity.session_id
        )
        self.write_json({"revoked": count})


default_handlers = [
    (r"api/v1/auth/login", LoginHandler),
    (r"api/v1/auth/setup", SetupHandler),
    (r"api/v1/auth/logout", LogoutHandler),
    (r"api/v1/auth/sessions", SessionsHandler),
    (r"api/v1/auth/sessions/revoke-others", RevokeOthersHandler),
    (r"api/v1/auth/sessions/([A-Za-z0-9_-]{1,64})", SessionHandler),
]
