"""The base handlers: the API's, and what every response shares (the pages' is in page_base.py).

Everything a handler needs arrives through `Application.settings` (`config`, `services`), so a
test can build an application with its own services.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from tornado import escape, httputil, web

from synthorg_tornado import strict_json
from synthorg_tornado.auth.audit import Actor
from synthorg_tornado.auth.identity import Identity
from synthorg_tornado.config import Config
from synthorg_tornado.errors import (
    BadRequest,
    InvalidValue,
    LabError,
    NotAuthenticated,
    PermissionDenied,
    problem_for,
)
from synthorg_tornado.handlers.arguments import refuse_nul, require_json
from synthorg_tornado.handlers.hosts import host_name
from synthorg_tornado.serving.access_log import request_id_of
from synthorg_tornado.serving.responses import PROBLEM_CONTENT_TYPE, SECURITY_HEADERS

if TYPE_CHECKING:
    from synthorg_tornado.services import Services


class LabHandlerMixin:
    """Request id and security headers, shared by our handlers and the static file handler."""

    request: httputil.HTTPServerRequest
    settings: dict[str, Any]

    @property
    def config(self) -> Config:
        return self.settings["config"]

    @property
    def services(self) -> Services:
        return self.settings["services"]

    @property
    def request_id(self) -> str:
        return request_id_of(self.request)

    @property
    def via_proxy(self) -> str | None:
        """The trusted proxy this request came through, or None when the client is direct."""
        context = getattr(self.request.connection, "context", None)
        return getattr(context, "proxy_peer", None)

    def set_default_headers(self) -> None:
        # Written straight into the header map: these values are constants (or a request id
        # already checked against REQUEST_ID_PATTERN), so set_header's per-call validation would
        # only cost time on every response.
        headers = self._headers  # type: ignore[attr-defined]
        headers.pop("Server", None)
        headers["X-Request-ID"] = self.request_id
        for name, value in SECURITY_HEADERS:
            headers[name] = value
        max_age = self.config.server.effective_hsts_max_age
        if self.request.protocol == "https" and max_age > 0:
            headers["Strict-Transport-Security"] = f"max-age={max_age}; includeSubDomains"

    def log_identity(self) -> str:
        """Who made the request, for the access log; never triggers authentication itself."""
        return "-"

    def decode_argument(self, value: bytes, name: str | None = None) -> str:
        """Path, query and form arguments as text we can store: Tornado already refuses bytes
        that are not UTF-8 (so no surrogates get through); NUL, which PostgreSQL refuses in text
        and the file system in paths, is refused here with 400."""
        return refuse_nul(super().decode_argument(value, name), name)  # type: ignore[misc]

    def check_host(self) -> None:
        """DNS-rebinding protection, as Jupyter Server's `check_host`.

        A server bound to loopback answers only to the names it is known by: a page on some
        other site whose name was re-pointed at 127.0.0.1 carries that name in Host and is
        refused. Requests through a trusted proxy are exempt: its `server_name` decides.
        """
        allowed: frozenset[str] | None = self.settings["allowed_host_names"]
        if allowed is None or self.via_proxy is not None:
            return
        if host_name(self.request.host) not in allowed:
            raise PermissionDenied(
                f"Host {self.request.host!r} is not allowed; add it to server.allowed_hosts."
            )


class BaseHandler(LabHandlerMixin, web.RequestHandler):
    """Identity resolution and cookies, shared by API and page handlers."""

    _identity: Identity | None = None
    _auth_error: LabError | None = None

    def identify_cached(self) -> bool:
        """Try to resolve the caller from memory, without a coroutine; False if that cannot."""
        try:
            identity = self.services.authenticator.identify_cached(self.request.headers.get("Authorization"))
        except LabError as error:
            self._identity, self._auth_error = None, error
            return True
        if identity is None:
            return False
        self._identity = identity
        return True

    async def identify(self) -> None:
        """Resolve the caller once per request; a bad credential is remembered, not raised here,
        so that anonymous routes still answer and guarded ones raise the precise reason."""
        authorization = self.request.headers.get("Authorization")
        # Cookies are parsed only when needed: the header wins, and parsing costs.
        cookie = None if authorization else self.get_cookie(self.config.auth.cookie_name)
        try:
            self._identity = await self.services.authenticator.identify(authorization, cookie)
        except LabError as error:
            self._identity, self._auth_error = None, error

    def get_current_user(self) -> Identity | None:
        return self._identity

    @property
    def identity(self) -> Identity:
        """The caller of a guarded method (the decorators guarantee one)."""
        assert self._identity is not None
        return self._identity

    def require_identity(self) -> bool:
        if self._identity is None:
            raise self._auth_error or NotAuthenticated()
        return True

    @property
    def actor(self) -> Actor:
        return self.identity.actor(self.request.remote_ip or "")

    @property
    def user_agent(self) -> str:
        return self.request.headers.get("User-Agent", "")

    def log_identity(self) -> str:
        return self._identity.user.username if self._identity else "-"

    def set_cookie(self, name: str, value: str | bytes, **kwargs: Any) -> None:  # type: ignore[override]
        """Every cookie is Secure whenever the request is HTTPS (directly or via a trusted proxy)."""
        if self.request.protocol == "https":
            kwargs.setdefault("secure", True)
        super().set_cookie(name, value, **kwargs)

    def set_session_cookie(self, token: str, expires_at: datetime) -> None:
        self.set_cookie(
            self.config.auth.cookie_name,
            token,
            path=self.config.server.base_url,
            expires=expires_at,
            httponly=True,
            samesite="Lax",
        )
        self.xsrf_token  # noqa: B018 - sets the _xsrf cookie for the client's next write

    def check_xsrf_cookie(self) -> None:
        """Tornado's check, with the value taken from the `X-XSRFToken` / `X-CSRFToken` header
        or the form body only: in the query string it would reach logs and browser history.
        It holds before any session exists too: a cross-site login form comes without our
        SameSite=Strict `_xsrf` cookie, so nothing matches and nobody is logged in."""
        submitted = (
            self.request.headers.get("X-Xsrftoken")
            or self.request.headers.get("X-Csrftoken")
            or self.get_body_argument("_xsrf", None)
        )
        if not submitted:
            raise web.HTTPError(403, "'_xsrf' missing: send it in the X-XSRFToken header or the form body")
        _, token, _ = self._decode_xsrf_token(submitted)
        _, expected, _ = self._get_raw_xsrf_token()
        if not token or not hmac.compare_digest(escape.utf8(token), escape.utf8(expected)):
            raise web.HTTPError(403, "The _xsrf value does not match the XSRF cookie")

    async def end_replaced_session(self) -> None:
        """After a (re-)login, the session the client held before is ended, never kept alongside."""
        previous = self._identity
        if previous is not None and previous.session_id is not None:
            await self.services.sessions.revoke(previous.session_id, "reauthenticated", self.actor)

    def clear_session_cookie(self) -> None:
        self.clear_cookie(self.config.auth.cookie_name, path=self.config.server.base_url)

    def log_exception(self, typ, value, tb) -> None:  # type: ignore[override]
        # Domain errors are expected outcomes, not faults: the access log line is enough.
        if isinstance(value, LabError):
            return
        super().log_exception(typ, value, tb)


class ProblemResponseMixin:
    """Errors as RFC 9457 problem JSON: for the API, and for WebSocket handshakes."""

    request: httputil.HTTPServerRequest

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        error = kwargs["exc_info"][1] if "exc_info" in kwargs else None
        if error is None:
            error = web.HTTPError(status_code)
        body = problem_for(error, self.request_id, status_code)
        self.set_status(body["status"])
        self.set_header("Content-Type", PROBLEM_CONTENT_TYPE)
        self.set_header("Cache-Control", "no-store")
        if body["retry_after"] is not None:
            self.set_header("Retry-After", str(body["retry_after"]))
        if body["status"] == 405:
            self.set_header("Allow", ", ".join(self.allowed_methods()))
        self.finish(json.dumps(body, separators=(",", ":")))

    @classmethod
    def allowed_methods(cls) -> list[str]:
        return [
            method.upper()
            for method in ("get", "head", "post", "put", "patch", "delete", "options")
            if getattr(cls, method) is not getattr(web.RequestHandler, method)
        ]


@web.stream_request_body
class ApiHandler(ProblemResponseMixin, BaseHandler):
    """JSON in, JSON out, problem+json for every error.

    The body is streamed into `_body_chunks`. `server.max_body_size` is enforced below, at the
    HTTP layer (`http_limits.RequestLimitsDelegate`), for every route alike.
    """

    _body_chunks: list[bytes]

    def prepare(self) -> Awaitable[None] | None:
        """Synchronous when the caller is known from memory (the common case); otherwise it
        hands Tornado the coroutine that asks the database."""
        self.check_host()
        self._body_chunks = []
        if self.identify_cached():
            return None
        return self.identify()

    def check_xsrf_cookie(self) -> None:
        """Only cookie-authenticated writes need the XSRF token: a foreign page can make the
        browser send our cookie, but never an Authorization header."""
        if self.request.headers.get("Authorization"):
            return
        if self.get_cookie(self.config.auth.cookie_name) is None:
            return
        super().check_xsrf_cookie()

    def data_received(self, chunk: bytes) -> None:
        self._body_chunks.append(chunk)

    @property
    def body(self) -> bytes:
        return b"".join(getattr(self, "_body_chunks", []))

    def json_body(self) -> Any:
        """The parsed JSON body, through the one strict reader (`strict_json`).

        Only `Content-Type: application/json` (charset UTF-8 if named) is read: a cross-site
        HTML form can send text/plain without a preflight, and must not log a browser in. Then
        malformed JSON, nesting, huge numbers and unstorable strings are 400 or 422.
        """
        require_json(self.request.headers.get("Content-Type", ""))
        raw = self.body
        if not raw.strip():
            raise BadRequest("The request body must be JSON.")
        return strict_json.loads(raw)

    def compute_etag(self) -> str | None:
        """API responses carry validators only where a resource defines them (settings)."""
        return None

    def check_etag_header(self) -> bool:
        """Without an ETag there is nothing to compare; versioned resources answer 304 themselves."""
        return False

    def json_object(self) -> dict[str, Any]:
        body = self.json_body()
        if not isinstance(body, dict):
            raise InvalidValue("The request body must be a JSON object.")
        return body

    def write_json(self, data: Any, status: int = 200) -> None:
        self.set_status(status)
        headers = self._headers  # constants: see set_default_headers
        headers["Content-Type"] = "application/json; charset=UTF-8"
        headers["Cache-Control"] = "no-store"
        self.finish(json.dumps(data, separators=(",", ":")))
