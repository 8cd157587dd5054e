"""The one logging setup: plain text for people, one JSON object per line for collectors."""

from __future__ import annotations

import json
import logging
import re
import sys
from typing import Any
from urllib.parse import unquote

from synthorg_tornado.auth.tokens import API_TOKEN_PREFIX
from synthorg_tornado.clock import isoformat, utcnow
from synthorg_tornado.config import LoggingConfig

ACCESS_LOGGER = "synthorg.access"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
MASK = "***"
# `extra=SHOW_SECRETS` exempts one record from masking. Only the first-run line uses it: the
# one-time setup URL it prints is useless masked, and it is valid only until the admin exists.
SHOW_SECRETS = {"show_secrets": True}

# Query or form parameters whose value is a credential: by exact name, or by how the name ends.
SECRET_NAMES = frozenset({"token", "ticket", "password", "_xsrf", "access_token"})
SECRET_SUFFIXES = ("token", "ticket", "password", "passwd", "secret")
# name=value after ?, &, ; or a space, also percent-encoded inside another URL (a `next=`).
_PARAMETER = re.compile(
    r"(?:(?<=[?&;\s])|(?<=%3[fF])|(?<=%26)|^)([^=&\s?#\"'<>]{1,64})(=|%3[dD])((?:(?!%26)[^&\s#\"'<>])*)"
)
# (pattern, replacement, a lower-case word the text must hold for the pattern to be tried):
# the words are cheap to look for, so a line without any (most access lines) costs little.
_PATTERNS: tuple[tuple[re.Pattern[str], str, str], ...] = (
    # Authorization: Bearer x / token x / Basic x, as a header line or in a dict's repr.
    (
        re.compile(r"(?i)(authorization[\"']?\s*[:=]\s*[\"']?)(?:(?:bearer|token|basic)\s+)?[^\s\"',}]+"),
        rf"\1{MASK}",
        "authorization",
    ),
    (re.compile(r"(?i)((?:set-)?cookie[\"']?\s*[:=]\s*[\"']?)[^\r\n\"']+"), rf"\1{MASK}", "cookie"),
    (re.compile(r"(?i)\b(bearer\s+)[^\s\"',]+"), rf"\1{MASK}", "bearer"),
    # "password": "..." in JSON or a dict's repr.
    (
        re.compile(r"(?i)([\"'][a-z_]*(?:password|token|ticket|secret)[\"']\s*:\s*[\"'])[^\"']*"),
        rf"\1{MASK}",
        ":",
    ),
    (re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*"), MASK, "eyj"),  # JWTs
    (re.compile(re.escape(API_TOKEN_PREFIX) + r"[A-Za-z0-9_-]{8,}"), MASK, API_TOKEN_PREFIX),
    (re.compile(r"\$2[abxy]?\$\d{2}\$[./A-Za-z0-9]{53}"), MASK, "$2"),  # bcrypt hashes
)
_PARAMETER_WORDS = ("token", "ticket", "passw", "secret", "_xsrf", "%")


def _mask_parameter(match: re.Match[str]) -> str:
    name = unquote(match.group(1)).lower()
    if name in SECRET_NAMES or name.endswith(SECRET_SUFFIXES):
        return f"{match.group(1)}{match.group(2)}{MASK}"
    value = match.group(3)
    if "%3" in value:  # a URL inside the value (`next=%2F%3Ftoken%3D...`)
        value = _PARAMETER.sub(_mask_parameter, value)
    return f"{match.group(1)}{match.group(2)}{value}"


def mask_secrets(text: str) -> str:
    """`text` with every credential we can recognise replaced by `***`."""
    lower = text.lower()
    if any(word in lower for word in _PARAMETER_WORDS):
        text = _PARAMETER.sub(_mask_parameter, text)
    for pattern, replacement, word in _PATTERNS:
        if word in lower:
            text = pattern.sub(replacement, text)
    return text


class SecretMaskingFilter(logging.Filter):
    """Masks credentials in every record that reaches our handler, whichever logger wrote it.

    Our own lines never print a secret, but Tornado's warnings print the raw URI (a `?token=` or
    `?ticket=` with it), and library exceptions print what they were given. So the message (with
    its arguments merged in), the exception text, the stack and the structured fields are masked
    here, once, before any formatter sees them.
    """

    _formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "show_secrets", False):
            return True
        try:
            message = record.getMessage()
        except Exception:  # a malformed call: leave it to logging's own error report
            return True
        record.msg, record.args = mask_secrets(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask_secrets(record.exc_text)
        if record.stack_info:
            record.stack_info = mask_secrets(record.stack_info)
        fields: dict[str, Any] | None = getattr(record, "fields", None)
        if fields:
            record.fields = {k: mask_secrets(v) if isinstance(v, str) else v for k, v in fields.items()}
        return True


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
        if record.exc_info or record.exc_text:
            # exc_text is the masked text, when the masking filter has seen this record.
            entry["exception"] = record.exc_text or self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def setup_logging(config: LoggingConfig) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if config.format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
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
