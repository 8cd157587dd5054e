"""The base of every browser page (the API's is in base.py): one layout, the way to the login
page with the reason for being sent there, and errors as pages inside the layout."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlencode

from tornado import web

from synthorg_tornado.auth.audit import AuditEvent
from synthorg_tornado.errors import LabError, SessionExpired, SessionRevoked, problem_for
from synthorg_tornado.handlers.arguments import encodable
from synthorg_tornado.handlers.base import BaseHandler

# Why a visitor lands on the login page (`/login?reason=`): the page says so in these words.
# Only these names are ever put in a URL, so no text from a link is shown on the page.
SIGN_IN_NOTICES = {
    "signed_out": "You signed out.",
    "revoked": "You were signed out from another device.",
    "expired": "Your session expired. Log in again to continue.",
    "token_rejected": "The access token was not accepted: it is mistyped, revoked or expired.",
}
# The credential errors a page can name (401 with code 1002 and 1003); any other is only "log in".
SIGN_IN_REASONS: tuple[tuple[type[LabError], str], ...] = (
    (SessionRevoked, "revoked"),
    (SessionExpired, "expired"),
)
# What an error page says instead of the API's words, which are written for scripts.
ERROR_PAGES = {
    403: ("Not allowed", None),
    404: ("Page not found", "There is no page at this address."),
}


class PageHandler(BaseHandler):
    """Every page renders inside `layout.html`, which reads `lab_name`, `me` and `base_url` from
    the template namespace; errors are pages in that layout too, never JSON or a traceback.

    A page load may carry `?token=<API token>` (Jupyter's habit): it is exchanged for a session
    cookie and the browser is redirected to the same page without it, so the token leaves the
    address bar and the history at once.
    """

    async def prepare(self) -> None:
        self.check_host()
        self.xsrf_token  # noqa: B018 - every page sets the _xsrf cookie
        if self.request.method == "GET" and self.get_query_argument("token", None) is not None:
            await self._exchange_query_token(self.get_query_argument("token"))
            return
        await self.identify()
        if self._auth_error is not None and self.get_cookie(self.config.auth.cookie_name):
            self.clear_session_cookie()

    async def _exchange_query_token(self, token: str) -> None:
        """The session the browser held before (its cookie) ends once the new one exists, as at
        any re-login. A token that is not valid changes nothing for a browser already signed in;
        one that is not goes to the login page, which says the token was not accepted."""
        await self.identify()
        try:
            identity = await self.services.authenticator.token_identity(token)
        except LabError:
            identity = None
        if identity is not None:
            ip = self.request.remote_ip or ""
            login = AuditEvent("auth.token_login", identity.actor(ip), target=identity.user.username)
            result = await self.services.login.start_session(identity.user, ip, self.user_agent, audit=login)
            await self.end_replaced_session()
            self.set_session_cookie(result.token, result.session.expires_at)
        remaining = [(k, v) for k, v in parse_qsl(self.request.query, keep_blank_values=True) if k != "token"]
        target = self.request.path + (f"?{urlencode(remaining)}" if remaining else "")
        if identity is None and self._identity is None:
            # On the login page itself, its own `next` is where to go after logging in.
            after = dict(remaining).get("next") if self.request.path == self.login_path else target
            self.redirect(self.login_location(after, "token_rejected"))
            return
        self.redirect(target)

    @property
    def login_path(self) -> str:
        return self.config.server.base_url + "login"

    def login_location(self, next_url: str | None, reason: str | None = None) -> str:
        query = {"next": next_url} if next_url else {}
        if reason:
            query["reason"] = reason
        return self.login_path + (f"?{urlencode(query)}" if query else "")

    def get_template_namespace(self) -> dict[str, Any]:
        """What the layout needs on every page: read from memory, never from the database."""
        namespace = super().get_template_namespace()
        namespace.update(
            base_url=self.config.server.base_url,
            lab_name=encodable(self.services.settings.value("ui", "lab_name")),
            banner=encodable(self.services.settings.value("ui", "banner")),
            me=encodable(self._identity.me()) if self._identity is not None else None,
        )
        return namespace

    def render_string(self, template_name: str, **kwargs: Any) -> bytes:
        """Templates get only text that encodes: a stored value that cannot (a lone surrogate
        that slipped in before it was refused at every entry) is shown with "?" instead of
        taking the page down for every user."""
        return super().render_string(template_name, **{k: encodable(v) for k, v in kwargs.items()})

    def require_identity(self) -> bool:
        """Pages send a visitor without a session to the login page, then back; one whose
        session was revoked or has expired is told which."""
        if self._identity is not None:
            return True
        reason = next((name for kind, name in SIGN_IN_REASONS if isinstance(self._auth_error, kind)), None)
        self.redirect(self.login_location(self.request.uri, reason))
        return False

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        error = kwargs["exc_info"][1] if "exc_info" in kwargs else None
        body = problem_for(error or web.HTTPError(status_code), self.request_id, status_code)
        title, detail = ERROR_PAGES.get(body["status"], (body["title"], None))
        self.set_status(body["status"])
        self.render(
            "error.html",
            status=body["status"],
            title=title,
            detail=detail or body["detail"],
            request_id=self.request_id,
        )
