"""Wiring: build the services once and hand them, with the URL table, to the Application."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from tornado import web

from synthorg_tornado.config import Config
from synthorg_tornado.db.engine import Database
from synthorg_tornado.handlers import base, health

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"

HANDLER_MODULES = (health,)


@dataclass
class Services:
    """Everything handlers use, built once per process."""

    config: Config
    secret: bytes
    database: Database
    started_at: float = field(default_factory=time.monotonic)

    async def close(self) -> None:
        await self.database.dispose()


def build_services(config: Config, secret: bytes) -> Services:
    return Services(config=config, secret=secret, database=Database(config.database))


def make_app(config: Config, services: Services) -> web.Application:
    prefix = config.server.base_url
    routes: list[tuple] = []
    for module in HANDLER_MODULES:
        routes.extend((prefix + pattern, handler) for pattern, handler in module.default_handlers)
    routes.append((prefix + r"static/(.*)", base.StaticHandler, {"path": str(STATIC_DIR)}))
    routes.append((prefix + r"api(?:/.*)?", base.ApiNotFoundHandler))
    return web.Application(
        routes,
        config=config,
        services=services,
        default_handler_class=base.PageNotFoundHandler,
        log_function=base.log_request,
        cookie_secret=services.secret,
        xsrf_cookies=True,
        xsrf_cookie_kwargs={"httponly": False, "samesite": "Lax", "path": prefix},
        websocket_ping_interval=config.websocket.ping_interval or None,
        websocket_ping_timeout=config.websocket.ping_timeout,
        websocket_max_message_size=config.websocket.max_message_bytes,
        static_path=None,
        compress_response=False,
    )
