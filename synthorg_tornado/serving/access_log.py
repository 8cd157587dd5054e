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
from synthorg_tornado.log_masking import MASK, SECRET_NAMES, cap
from synthorg_tornado.logs import ACCESS_LOGGER

if TYPE_CHECKING:
    from tornado import web

access_log = logging.getLogger(ACCESS_LOGGER)

REQUEST_ID_PATTERN = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
# The path and query of an access line, and its method: short enough that the whole line stays
# under the log's field cap (log_masking.MAX_FIELD_CHARS), so the status and request id that
# follow them are never cut off.
MAX_LOGGED_PATH = 2048
MAX_LOGGED_METHOD = 32

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
        "method": cap(request.method or "", MAX_LOGGED_METHOD),
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
    """The path and query for the access line: credentials masked, at most `MAX_LOGGED_PATH`
    characters (and a marker), and only that much of the query is ever parsed."""
    path, query = request.path, request.query
    if not query or len(path) >= MAX_LOGGED_PATH:
        return cap(path, MAX_LOGGED_PATH, dropped=len(query) + 1 if query else 0)
    parsed = query[:MAX_LOGGED_PATH]
    pairs = parse_qsl(parsed, keep_blank_values=True)
    masked = [(key, MASK if key.lower() in SECRET_NAMES else value) for key, value in pairs]
    return cap(f"{path}?{urlencode(masked, safe='*')}", MAX_LOGGED_PATH, dropped=len(query) - len(parsed))
