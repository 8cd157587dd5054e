"""The one logging setup: plain text for people, one JSON object per line for collectors."""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

from synthorg_tornado.clock import isoformat, utcnow
from synthorg_tornado.config import LoggingConfig
from synthorg_tornado.log_masking import MAX_TRACE_CHARS, cap, mask_field, mask_secrets

__all__ = ["ACCESS_LOGGER", "SHOW_SECRETS", "JsonFormatter", "SecretMaskingFilter", "mask_secrets"]

ACCESS_LOGGER = "synthorg.access"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# `extra=SHOW_SECRETS` exempts one record from masking. Only the first-run line uses it: the
# one-time setup URL it prints is useless masked, and it is valid only until the admin exists.
SHOW_SECRETS = {"show_secrets": True}
# What a record becomes when it cannot be masked or formatted: logging must never fail the code
# that logs (a request, the IOLoop), and must never fall back to printing the raw record.
UNSAFE_RECORD = "log record could not be formatted safely"
_SCALARS = (int, float, bool, type(None))


class SecretMaskingFilter(logging.Filter):
    """Caps and masks every record that reaches our handler, whichever logger wrote it.

    Our own lines never print a secret, but Tornado's warnings print the raw URI (a `?token=` or
    `?ticket=` with it), and library exceptions print what they were given. So the message (with
    its arguments merged in), the exception text, the stack and the structured fields are capped
    and masked here, once, before any formatter sees them. A filter runs outside the handler's
    own error handling, so whatever goes wrong here would be raised into the code that logged:
    instead the record is replaced by a fixed line.
    """

    _formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            self._mask(record)
        except Exception:  # any failure, by design: see the class docstring
            _replace(record)
        return True

    def _mask(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if getattr(record, "show_secrets", False):
            record.msg, record.args = cap(message), None
            return
        record.msg, record.args = mask_field(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask_field(record.exc_text, MAX_TRACE_CHARS, keep_end=True)
        if record.stack_info:
            record.stack_info = mask_field(record.stack_info, MAX_TRACE_CHARS, keep_end=True)
        fields: dict[str, Any] | None = getattr(record, "fields", None)
        if fields:
            record.fields = {
                key: value if isinstance(value, _SCALARS) else mask_field(str(value))
                for key, value in fields.items()
            }


def _replace(record: logging.LogRecord) -> None:
    """The record reduced to the fixed line; only what logging itself set (level, logger name,
    time) is kept."""
    record.msg, record.args = UNSAFE_RECORD, None
    record.exc_info = record.exc_text = record.stack_info = None
    record.fields = {}


class TextFormatter(logging.Formatter):
    """`TEXT_FORMAT`, or the fixed line when the record cannot be formatted."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        try:
            return super().format(record)
        except Exception:  # a formatter must never raise into the logging call
            return UNSAFE_RECORD


class JsonFormatter(logging.Formatter):
    """Structured fields travel in `record.fields` (set with `extra={"fields": {...}}`)."""

    def format(self, record: logging.LogRecord) -> str:
        try:
            return self._format(record)
        except Exception:  # a formatter must never raise into the logging call
            return json.dumps({"ts": isoformat(utcnow()), "level": "ERROR", "message": UNSAFE_RECORD})

    def _format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": isoformat(utcnow()),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(getattr(record, "fields", None) or {})
        if record.exc_info or record.exc_text:
            # exc_text is the masked text, when the masking filter has seen this record.
            entry["exception"] = record.exc_text or self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def setup_logging(config: LoggingConfig) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if config.format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter())
    handler.addFilter(SecretMaskingFilter())
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
