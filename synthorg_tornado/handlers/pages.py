"""The pages a newcomer meets first: setup, login, and the home page with a logout button."""

from __future__ import annotations

from urllib.parse import urlsplit

from synthorg_tornado.auth.audit import AuditEvent
from synthorg_tornado.auth.identity import SESSION
from synthorg_tornado.auth.login import SETUP_LINK_INVALID
from synthorg_tornado.errors import AccountLocked, LabError, PermissionDenied, RateLimited
from synthorg_tornado.handlers.decorators import allow_anonymous, authenticated
from synthorg_tornado.handlers.page_base import PageHandler


def safe_next(candidate: str | None, base_url: str) -> str:
    """Only a path on this server, under base_url; anything else (other hosts, `//x`, schemes,
    backslashes that browsers treat as slashes) goes to base_url. The target becomes a Location
    header, so it must be printable ASCII: control characters (DEL included) and non-ASCII text
    cannot be sent there (our own links are always percent-encoded)."""
    if not candidate or "\\" in candidate or not all(33 <= ord(c) <= 126 for c in candidate):
        return base_url
    parts = urlsplit(candidate)
    if parts.scheme or parts.netloc or not parts.path.startswith(base_url) or candidate.startswith("//"):
        return base_url
    return candidate


def login_error_message(error: LabError) -> str:
    if isinstance(error, RateLimited | AccountLocked):
        return f"{error.detail} (retry in {error.retry_after} s)"
    return error.detail


class LoginPage(PageHandler):
    @allow_anonymous
    async def get(self) -> None:
        """Before any user exists there is no one to log in: the visitor is sent to the page that
        says how to get the setup link (`/` arrives here too, through the login redirect)."""
        if self._identity is None and await self.services.login.setup_pending():
            self.redirect(self.config.server.base_url + "setup")
            return
        self._render(error=None)

    @allow_anonymous
    async def post(self) -> None:
        ip, agent = self.request.remote_ip or "", self.user_agent
        token = self.get_body_argument("token", "").strip()
        try:
            if token:
                identity = await self.services.authenticator.token_identity(token)
                login = AuditEvent("auth.token_login", identity.actor(ip), target=identity.user.username)
                result = await self.services.login.start_session(identity.user, ip, agent, audit=login)
            else:
                result = await self.services.login.login(
                    self.get_body_argument("username", ""), self.get_body_argument("password", ""), ip, agent
                )
        except LabError as error:
            self.set_status(429 if isinstance(error, RateLimited | AccountLocked) else 401)
            if error.retry_after:
                self.set_header("Retry-After", str(error.retry_after))
            self._render(error=login_error_message(error))
            return
        await self.end_replaced_session()
        self.set_session_cookie(result.token, result.session.expires_at)
        self.redirect(safe_next(self.get_body_argument("next", None), self.config.server.base_url))

    def _render(self, error: str | None) -> None:
        self.render(
            "login.html",
            error=error,
            next_url=safe_next(self.get_argument("next", None), self.config.server.base_url),
            base_url=self.config.server.base_url,
        )


class SetupPage(PageHandler):
    """The first admin's page. Without the current link it says how to get one, and never shows
    the token; once a user exists it says setup is complete and links to the login page.

    States: `form` (the current link), `needed` (no link, or one not current) and `complete`.
    """

    async def prepare(self) -> None:
        # The setup token also travels as ?token=, but it is not an API token to exchange.
        self.check_host()
        self.xsrf_token  # noqa: B018
        await self.identify()

    @allow_anonymous
    async def get(self) -> None:
        token = self.get_query_argument("token", "")
        if not await self.services.login.setup_pending():
            self._render("complete", "", error=None)
        elif not token:
            self._render("needed", "", error=None)
        elif not self.services.login.is_setup_token(token):
            self.set_status(403)
            self._render("needed", "", error=SETUP_LINK_INVALID)
        else:
            self._render("form", token, error=None)

    @allow_anonymous
    async def post(self) -> None:
        token = self.get_body_argument("token", "")
        try:
            result = await self.services.login.setup(
                token,
                self.get_body_argument("username", ""),
                self.get_body_argument("password", ""),
                self.request.remote_ip or "",
                self.user_agent,
            )
        except LabError as error:
            if not isinstance(error, PermissionDenied):
                self.set_status(422)
                self._render("form", token, error=error.detail)
                return
            self.set_status(403)
            if await self.services.login.setup_pending():
                self._render("needed", "", error=error.detail)
            else:
                self._render("complete", "", error=None)
            return
        self.set_session_cookie(result.token, result.session.expires_at)
        self.redirect(self.config.server.base_url)

    def _render(self, state: str, token: str, error: str | None) -> None:
        self.render("setup.html", state=state, token=token, error=error, base_url=self.config.server.base_url)


class HomePage(PageHandler):
    @authenticated
    def get(self) -> None:
        settings = self.services.settings
        self.render(
            "home.html",
            me=self.identity.me(),
            base_url=self.config.server.base_url,
            lab_name=settings.value("ui", "lab_name"),
            banner=settings.value("ui", "banner"),
        )


class LogoutPage(PageHandler):
    @authenticated
    async def post(self) -> None:
        if self.identity.kind == SESSION and self.identity.session_id:
            logout = AuditEvent("auth.logout", self.actor, target=self.identity.user.username)
            await self.services.sessions.revoke(self.identity.session_id, "logout", self.actor, audit=logout)
        self.clear_session_cookie()
        self.set_header("Clear-Site-Data", '"cookies"')
        self.redirect(self.config.server.base_url + "login")


class BaseUrlRedirect(PageHandler):
    """`/lab` -> `/lab/`, so a base_url typed without its slash still lands on the home page."""

    @allow_anonymous
    def get(self) -> None:
        self.redirect(self.config.server.base_url, permanent=True)


default_handlers = [
    (r"login", LoginPage),
    (r"setup", SetupPage),
    (r"logout", LogoutPage),
    (r"", HomePage),
]
