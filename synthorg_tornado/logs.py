"""The one logging setup: plain text for people, one JSON object per line for collectors."""

from __future__ import annotations

import json
import logging
import sys

from synthorg_tornado.clock import isoformat, utcnow
from synthorg_tornado.config import LoggingConfig

ACCESS_LOGGER = "synthorg.access"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """Structured fields travel in `record.fields` (set with `extra={"fields": {...}}`)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": isoformat(utcnow()),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(getattr(record, "fields", None) or {})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def setup_logging(config: LoggingConfig) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if config.format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(config.level)
    # Tornado's own access log would duplicate ours and include raw query strings.
    logging.getLogger("tornado.access").disabled = True
    # SQL echo has its own switch (database.echo); INFO here would print every statement.
    logging.getLogger("sqlalchemy.engine").setLevel(logging.WARNING)
    # Alembic narrates every start ("Context impl SQLiteImpl", ...) at INFO; the server logs one
    # line of its own when a migration really runs. DEBUG still shows Alembic's detail.
    logging.getLogger("alembic").setLevel(logging.DEBUG if config.level == "DEBUG" else logging.WARNING)
