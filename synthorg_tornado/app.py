"""Wiring: the URL table and the Application, handed the services built in `services.py`."""

from __future__ import annotations

from tornado import web

from synthorg_tornado.auth.tokens import derive_key
from synthorg_tornado.config import Config
from synthorg_tornado.handlers import (
    audit,
    auth,
    fallbacks,
    health,
    hosts,
    me,
    metrics,
    pages,
    pages_account,
    pages_admin,
    realtime,
    settings,
    tokens,
    users,
)
from synthorg_tornado.resources import resource_dir
from synthorg_tornado.services import Services
from synthorg_tornado.serving import access_log

STATIC_DIR = resource_dir("static")

HANDLER_MODULES = (
    health,
    auth,
    me,
    users,
    tokens,
    settings,
    realtime,
    audit,
    metrics,
    pages_account,
    pages_admin,
    pages,
)


def make_app(config: Config, services: Services) -> web.Application:
    prefix = config.server.base_url
    routes: list[tuple] = []
    for module in HANDLER_MODULES:
        routes.extend((prefix + pattern, *rest) for pattern, *rest in module.default_handlers)
    routes.append((prefix + r"static/(.*)", fallbacks.StaticHandler, {"path": str(STATIC_DIR)}))
    routes.append((prefix + r"api(?:/.*)?", fallbacks.ApiNotFoundHandler))
    if prefix != "/":
        routes.append((prefix.rstrip("/"), pages.BaseUrlRedirect))
    return web.Application(
        routes,
        config=config,
        services=services,
        default_handler_class=fallbacks.PageNotFoundHandler,
        allowed_host_names=hosts.allowed_host_names(config),
        log_function=access_log.log_request,
        cookie_secret=derive_key(services.secret, "cookies"),
        xsrf_cookies=True,
        xsrf_cookie_kwargs={"httponly": False, "samesite": "Strict", "path": prefix},
        template_path=str(STATIC_DIR),
        login_url=prefix + "login",
        websocket_ping_interval=config.websocket.ping_interval or None,
        websocket_ping_timeout=config.websocket.ping_timeout,
        # A hard cap only: the protocol limit (max_message_bytes) is answered with an error
        # message by the hub, which keeps the socket open.
        websocket_max_message_size=max(64 * 1024, 16 * config.websocket.max_message_bytes),
        compress_response=False,
    )
