"""`GET /api/v1/health`: liveness plus a database check, for load balancers and monitors."""

from __future__ import annotations

import time

from synthorg_tornado import __version__
from synthorg_tornado.handlers.base import ApiHandler
from synthorg_tornado.handlers.decorators import allow_anonymous


class HealthHandler(ApiHandler):
    @allow_anonymous
    async def get(self) -> None:
        database_ok = await self.services.database.ping()
        self.write_json(
            {
                "status": "ok" if database_ok else "degraded",
                "version": __version__,
                "database": "ok" if database_ok else "down",
                "uptime_seconds": round(time.monotonic() - self.services.started_at, 3),
            },
            status=200 if database_ok else 503,
        )


default_handlers = [(r"api/v1/health", HealthHandler)]
