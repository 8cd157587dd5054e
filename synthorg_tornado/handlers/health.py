"""Health for load balancers, monitors and orchestrators.

- `/api/v1/health` is readiness: the process answers AND its database does (503 when not).
- `/api/v1/health/live` is liveness: the process answers; it never asks the database, so an
  orchestrator does not restart a healthy process during a database outage.

Both answer HEAD as well as GET, because many load-balancer probes send HEAD.
"""

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

    @allow_anonymous
    async def head(self) -> None:
        # Tornado sends the headers of the GET answer and drops its body for HEAD.
        await self.get()


class LivenessHandler(ApiHandler):
    @allow_anonymous
    def get(self) -> None:
        self.write_json(
            {
                "status": "ok",
                "version": __version__,
                "uptime_seconds": round(time.monotonic() - self.services.started_at, 3),
            }
        )

    @allow_anonymous
    def head(self) -> None:
        self.get()


default_handlers = [
    (r"api/v1/health", HealthHandler),
    (r"api/v1/health/live", LivenessHandler),
]
