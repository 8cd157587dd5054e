"""The base of every browser page (the API's is in base.py)."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlencode

from tornado import escape, web

from synthorg_tornado.auth.audit import AuditEvent
from synthorg_tornado.errors import LabError, problem_for
from synthorg_tornado.handlers.arguments import encodable
from synthorg_tornado.handlers.base import BaseHandler


class PageHandler(BaseHandler):
    """Pages render small HTML errors; a browser user should never see JSON or a traceback.

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
        any re-login; a token that is not valid changes nothing."""
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
        self.redirect(self.request.path + (f"?{urlencode(remaining)}" if remaining else ""))

    def render_string(self, template_name: str, **kwargs: Any) -> bytes:
        """Templates get only text that encodes: a stored value that cannot (a lone surrogate
        that slipped in before it was refused at every entry) is shown with "?" instead of
        taking the page down for every user."""
        return super().render_string(template_name, **{k: encodable(v) for k, v in kwargs.items()})

    def require_identity(self) -> bool:
        """Pages send a visitor without a session to the login page, then back."""
        if self._identity is not None:
            return True
        login = self.config.server.base_url + "login"
        self.redirect(f"{login}?{urlencode({'next': self.request.uri})}")
        return False

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        error = kwargs["exc_info"][1] if "exc_info" in kwargs else None
        body = problem_for(error or web.HTTPError(status_code), self.request_id, status_code)
        self.set_status(body["status"])
        self.set_header("Content-Type", "text/html; charset=UTF-8")
        title = escape.xhtml_escape(body["title"])
        detail = escape.xhtml_escape(body["detail"])
        self.finish(
            f"<!doctype html><html><head><meta charset='utf-8'><title>{body['status']} {title}</title>"
            f"</head><body><h1>{body['status']} {title}</h1><p>{detail}</p>"
            f"<p><small>Request {self.request_id}</small></p></body></html>"
        )
