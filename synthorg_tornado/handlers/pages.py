"""The pages a newcomer meets first: setup, login and logout (the dashboard is in pages_account)."""

from __future__ import annotations

from urllib.parse import urlsplit

from synthorg_tornado.auth.audit import AuditEvent
from synthorg_tornado.auth.identity import SESSION
from synthorg_tornado.auth.login import SETUP_LINK_INVALID
from synthorg_tornado.errors import (
    AccountLocked,
    InvalidValue,
    LabError,
    PermissionDenied,
    RateLimited,
    classify,
)
from synthorg_tornado.handlers.decorators import allow_anonymous, authenticated
from synthorg_tornado.handlers.fallbacks import StaticHandler
from synthorg_tornado.handlers.page_base import SIGN_IN_NOTICES, PageHandler
from synthorg_tornado.resources import resource_dir

PASSWORDS_DIFFER = "The two passwords differ: type the same password twice."


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
    """The words of the page's own script (static/messages.js) for the same errors, so the page
    reads the same whether the form was sent by script or, without it, by the browser."""
    if isinstance(error, AccountLocked):
        return f"Too many failed logins for this account; try again in {error.retry_after} s."
    if isinstance(error, RateLimited):
        return f"Too many attempts; try again in {error.retry_after} s."
    return error.detail


class LoginPage(PageHandler):
    """The password form and the access-token form. The password form is sent by static/login.js
    to `POST /api/v1/auth/login`; the browser posts it here only when the script cannot run.
    The token form is always posted here: the API has no way to turn a token into a session."""

    @allow_anonymous
    async def get(self) -> None:
        """A visitor already signed in goes on to `next`. Before any user exists there is no one
        to log in: the visitor is sent to the page that says how to get the setup link (`/`
        arrives here too, through the login redirect)."""
        if self._identity is not None:
            self.redirect(self.next_url(self.get_query_argument("next", None)))
            return
        if await self.services.login.setup_pending():
            self.redirect(self.config.server.base_url + "setup")
            return
        reason = self.get_query_argument("reason", "")
        if reason == "token_rejected":
            self._render(token_error=SIGN_IN_NOTICES[reason])
        else:
            self._render(notice=SIGN_IN_NOTICES.get(reason))

    @allow_anonymous
    async def post(self) -> None:
        ip, agent = self.request.remote_ip or "", self.user_agent
        token = self.get_body_argument("token", "").strip()
        username = self.get_body_argument("username", "")
        try:
            if token:
                identity = await self.services.authenticator.token_identity(token)
                login = AuditEvent("auth.token_login", identity.actor(ip), target=identity.user.username)
                result = await self.services.login.start_session(identity.user, ip, agent, audit=login)
            else:
                result = await self.services.login.login(
                    username, self.get_body_argument("password", ""), ip, agent
                )
        except LabError as error:
            self.set_status(classify(error)[0])
            if error.retry_after:
                self.set_header("Retry-After", str(error.retry_after))
            if token:
                self._render(token_error=SIGN_IN_NOTICES["token_rejected"])
            else:
                self._render(error=login_error_message(error), username=username)
            return
        await self.end_replaced_session()
        self.set_session_cookie(result.token, result.session.expires_at)
        self.redirect(self.next_url(self.get_body_argument("next", None)))

    def next_url(self, candidate: str | None) -> str:
        return safe_next(candidate, self.config.server.base_url)

    def _render(
        self,
        error: str | None = None,
        token_error: str | None = None,
        notice: str | None = None,
        username: str = "",
    ) -> None:
        self.render(
            "login.html",
            error=error,
            token_error=token_error,
            notice=notice,
            username=username,
            next_url=self.next_url(self.get_argument("next", None)),
        )


class SetupPage(PageHandler):
    """The first admin's page. Without the current link it says how to get one, and never shows
    the token; once a user exists it says setup is complete and links to the login page.

    States: `form` (the current link), `needed` (no link, or one not current) and `complete`.
    The form is sent by static/setup.js to `POST /api/v1/auth/setup` once both passwords match;
    the browser posts it here only when the script cannot run.
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
            self._render("complete")
        elif not token:
            self._render("needed")
        elif not self.services.login.is_setup_token(token):
            self.set_status(403)
            self._render("needed", error=SETUP_LINK_INVALID)
        else:
            self._render("form", token)

    @allow_anonymous
    async def post(self) -> None:
        token = self.get_body_argument("token", "")
        username = self.get_body_argument("username", "")
        password = self.get_body_argument("password", "")
        repeated = self.get_body_argument("password_repeat", None)
        try:
            if repeated is not None and repeated != password:
                raise InvalidValue(PASSWORDS_DIFFER)
            result = await self.services.login.setup(
                token, username, password, self.request.remote_ip or "", self.user_agent
            )
        except LabError as error:
            if not isinstance(error, PermissionDenied):
                self.set_status(422)
                self._render("form", token, error=error.detail, username=username)
                return
            self.set_status(403)
            if await self.services.login.setup_pending():
                self._render("needed", error=error.detail)
            else:
                self._render("complete")
            return
        self.set_session_cookie(result.token, result.session.expires_at)
        self.redirect(self.config.server.base_url)

    def _render(self, state: str, token: str = "", error: str | None = None, username: str = "") -> None:
        self.render(
            "setup.html",
            state=state,
            token=token,
            error=error,
            username=username,
            min_length=self.config.auth.password_min_length,
            passwords_differ=PASSWORDS_DIFFER,
        )


class LogoutPage(PageHandler):
    @authenticated
    async def post(self) -> None:
        if self.identity.kind == SESSION and self.identity.session_id:
            logout = AuditEvent("auth.logout", self.actor, target=self.identity.user.username)
            await self.services.sessions.revoke(self.identity.session_id, "logout", self.actor, audit=logout)
        self.clear_session_cookie()
        self.set_header("Clear-Site-Data", '"cookies"')
        self.redirect(self.login_location(None, "signed_out"))


class BaseUrlRedirect(PageHandler):
    """`/lab` -> `/lab/`, so a base_url typed without its slash still lands on the home page."""

    @allow_anonymous
    def get(self) -> None:
        self.redirect(self.config.server.base_url, permanent=True)


default_handlers = [
    # Browsers ask for it at the root of the site; with a base_url the layout's <link> says where.
    (r"(favicon\.ico)", StaticHandler, {"path": str(resource_dir("static"))}),
    (r"login", LoginPage),
    (r"setup", SetupPage),
    (r"logout", LogoutPage),
]
