"""`GET /metrics` in Prometheus text format, for admins and API tokens (scrapers)."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST

from synthorg_tornado.auth import roles
from synthorg_tornado.auth.identity import TOKEN
from synthorg_tornado.errors import PermissionDenied
from synthorg_tornado.handlers.base import ApiHandler
from synthorg_tornado.handlers.decorators import authenticated


class MetricsHandler(ApiHandler):
    @authenticated
    async def get(self) -> None:
        if self.identity.kind != TOKEN and self.identity.user.role != roles.ADMIN:
            raise PermissionDenied("Metrics need an admin session or an API token.")
        self.set_header("Content-Type", CONTENT_TYPE_LATEST)
        self.set_header("Cache-Control", "no-store")
        self.finish(self.services.metrics.render())


default_handlers = [(r"metrics", MetricsHandler)]
