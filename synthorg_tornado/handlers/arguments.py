"""Reading what a client put in the URL and the headers: ids, counts, the body's media type.

One way to read each, so that no handler converts an id with `int()` on its own again: that
accepted `²` (which `str.isdigit()` calls a digit) and ids too large for the database's columns,
and both became 500s.
"""

from __future__ import annotations

import re
from typing import Any

from synthorg_tornado.errors import BadRequest, InvalidValue, NotFound, UnsupportedMediaType

JSON_MEDIA_TYPE = "application/json"
UTF8_CHARSETS = ("", "utf-8", "utf8")
# Our integer ids are INTEGER columns: anything above this cannot exist, and would make the
# database (or SQLite's driver) raise instead of simply finding nothing.
MAX_ID = 2**31 - 1
ASCII_DIGITS = re.compile(r"[0-9]{1,18}")


def parse_id(raw: str, what: str = "resource") -> int:
    """An integer id from a path: ASCII digits within the column's range, or 404 Not Found."""
    if not ASCII_DIGITS.fullmatch(raw) or int(raw) > MAX_ID:
        raise NotFound(f"No such {what}.")
    return int(raw)


def parse_count(name: str, raw: str, minimum: int, maximum: int) -> int:
    """A whole number from a query string, within bounds, or 422 naming the parameter."""
    if not ASCII_DIGITS.fullmatch(raw) or not minimum <= int(raw) <= maximum:
        raise InvalidValue(f"{name} must be a whole number from {minimum} to {maximum}.")
    return int(raw)


def refuse_nul(text: str, name: str | None) -> str:
    """An argument PostgreSQL can store and the file system can open: no NUL characters."""
    if "\x00" in text:
        raise BadRequest(f"The {name or 'path'} argument must not contain NUL characters.")
    return text


def require_json(content_type: str) -> None:
    """`application/json`, optionally with a UTF-8 charset; anything else is 415.

    A cross-site HTML form can post text/plain (or a form encoding) without a CORS preflight;
    a JSON endpoint that read such a body would let another site log a browser in.
    """
    media_type, _, parameters = content_type.partition(";")
    charset = ""
    for parameter in parameters.split(";"):
        key, _, value = parameter.partition("=")
        if key.strip().lower() == "charset":
            charset = value.strip().strip('"').lower()
    if media_type.strip().lower() != JSON_MEDIA_TYPE or charset not in UTF8_CHARSETS:
        raise UnsupportedMediaType()


def encodable(value: Any) -> Any:
    """`value` with every string made UTF-8-encodable (a lone surrogate becomes "?")."""
    if isinstance(value, str):
        return value if value.isascii() else value.encode("utf-8", "replace").decode("utf-8")
    if isinstance(value, dict):
        return {key: encodable(member) for key, member in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(encodable(member) for member in value)
    return value
