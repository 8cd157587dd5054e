"""Request ids and the access log: one line per request, credentials masked.

Below the handlers' base classes, so both they and the application's `log_function` use it.
"""

from __future__ import annotations

import itertools
import logging
import re
import secrets
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlencode

from tornado import httputil

from synthorg_tornado.config import Config
from synthorg_tornado.logs import ACCESS_LOGGER

if TYPE_CHECKING:
    from tornado import web

access_log = logging.getLogger(ACCESS_LOGGER)

REQUEST_ID_PATTERN = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
# Query parameters that carry credentials: masked in every log line.
SECRET_PARAMETERS = frozenset({"token", "ticket", "password", "_xsrf", "access_token"})

# Fresh ids: a random per-process prefix and a counter. Unique, 32 hex characters, and far
# cheaper than a uuid4 per request.
_ID_PREFIX = secrets.token_hex(8)
_id_counter = itertools.count(1)


def request_id_of(request: httputil.HTTPServerRequest) -> str:
    """A well-formed incoming X-Request-ID is kept, so ids can be followed through nginx."""
    cached = getattr(request, "_synthorg_request_id", None)
    if cached is None:
        incoming = request.headers.get("X-Request-ID", "")
        cached = incoming if REQUEST_ID_PATTERN.match(incoming) else f"{_ID_PREFIX}{next(_id_counter):016x}"
        request._synthorg_request_id = cached  # type: ignore[attr-defined]
    return cached


def log_request(handler: web.RequestHandler) -> None:
    """Metrics for every request, and one access line: method, path (secrets masked), status,
    ms, client, scheme, user, request id. Nothing is formatted for a line nobody will read."""
    request = handler.request
    status = handler.get_status()
    seconds = request.request_time()
    services = handler.settings.get("services")
    if services is not None:
        services.metrics.observe(type(handler).__name__, request.method or "", status, seconds)
    level = logging.INFO if status < 400 else logging.WARNING if status < 500 else logging.ERROR
    config: Config = handler.settings["config"]
    if not config.logging.access_log or not access_log.isEnabledFor(level):
        return
    fields = {
        "method": request.method,
        "path": safe_path(request),
        "status": status,
        "ms": round(1000.0 * seconds, 2),
        "client_ip": request.remote_ip,
        "scheme": request.protocol,
        "user": handler.log_identity() if hasattr(handler, "log_identity") else "-",
        "request_id": request_id_of(request),
    }
    access_log.log(
        level,
        "%(method)s %(path)s %(status)s %(ms).2fms client=%(client_ip)s scheme=%(scheme)s "
        "user=%(user)s request_id=%(request_id)s",
        fields,
        extra={"fields": fields},
    )


def safe_path(request: httputil.HTTPServerRequest) -> str:
    if not request.query:
        return request.path
    pairs = parse_qsl(request.query, keep_blank_values=True)
    masked = [(key, "***" if key.lower() in SECRET_PARAMETERS else value) for key, value in pairs]
    return f"{request.path}?{urlencode(masked, safe='*')}"
