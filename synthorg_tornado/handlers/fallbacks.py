"""What answers when no route of ours does, and the static files: under the same headers and
Host check as every other response."""

from __future__ import annotations

from tornado import web

from synthorg_tornado.errors import BadRequest, PermissionDenied, RouteNotFound
from synthorg_tornado.handlers.base import ApiHandler, LabHandlerMixin
from synthorg_tornado.handlers.decorators import allow_anonymous
from synthorg_tornado.handlers.page_base import PageHandler


class ApiNotFoundHandler(ApiHandler):
    """Any unknown path under the API prefix, whatever the method."""

    SUPPORTED_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")

    @allow_anonymous
    def prepare(self) -> None:
        raise RouteNotFound(f"No API route matches {self.request.path}.")


class PageNotFoundHandler(PageHandler):
    """A 404 page inside the layout, with the navigation bar of whoever is signed in and a link
    home; it runs the page prelude first, so a `?token=` is exchanged here as anywhere."""

    @allow_anonymous
    async def prepare(self) -> None:
        await super().prepare()
        if not self._finished:
            raise web.HTTPError(404)


class StaticHandler(LabHandlerMixin, web.StaticFileHandler):
    """Static files with the same security headers and Host check as everything else.

    Tornado's static handler renders only its own HTTPErrors, so ours are translated."""

    def decode_argument(self, value: bytes, name: str | None = None) -> str:
        try:
            return super().decode_argument(value, name)
        except BadRequest as error:
            raise web.HTTPError(400, reason="Bad Request") from error

    def prepare(self) -> None:
        try:
            self.check_host()
        except PermissionDenied:
            raise web.HTTPError(403) from None
