"""Every HTTP method of every route carries an explicit security rule."""

from __future__ import annotations

from tornado import web

from synthorg_tornado.handlers.decorators import HTTP_METHODS, auth_rule


def test_every_handler_method_has_an_auth_decorator(app: web.Application) -> None:
    checked, missing = 0, []
    for rule in app.wildcard_router.rules:
        handler = rule.target
        if not isinstance(handler, type) or not issubclass(handler, web.RequestHandler):
            continue
        if issubclass(handler, web.StaticFileHandler):
            continue  # public files by design
        for name in HTTP_METHODS:
            method = getattr(handler, name)
            if method is getattr(web.RequestHandler, name):
                continue
            checked += 1
            if auth_rule(method) is None:
                missing.append(f"{handler.__name__}.{name}")
        if auth_rule(handler.prepare) is not None:
            checked += 1  # a catch-all that answers in prepare (the 404 handlers)
    assert not missing, f"handler methods without an auth decorator: {missing}"
    assert checked >= 20
