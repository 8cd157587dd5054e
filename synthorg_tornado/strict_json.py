"""The one JSON reader for text that comes from clients: request bodies and WebSocket messages.

`json.loads` accepts more than we can store or even survive: nesting deep enough to exhaust the
recursion limit, integers of thousands of digits (Python refuses to convert them and says so
with a ValueError), `NaN` and `Infinity`, numbers that overflow a float, lone surrogates
(`"\\ud800"`) that no UTF-8 encoder accepts, and NUL characters that PostgreSQL refuses in text.
Each of these reached a handler and became a 500, or worse, a page that fails for everyone later.
Here they are refused before any value is used, as `BadRequest` (the text is not JSON we can read)
or `InvalidValue` (it is, but holds a string we do not accept).
"""

from __future__ import annotations

import json
import math
from typing import Any

from synthorg_tornado.errors import BadRequest, InvalidValue

MAX_DEPTH = 32
# Far above any number the API means (ids and limits fit in 19 digits) and far below Python's
# 4,300-digit conversion limit, whose ValueError would otherwise escape as a 500.
MAX_INT_DIGITS = 64


def loads(text: str | bytes) -> Any:
    """Parse client JSON; anything we cannot safely hold raises BadRequest or InvalidValue."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise BadRequest("The JSON text is not valid UTF-8.") from None
    try:
        value = json.loads(
            text, parse_int=_parse_int, parse_float=_parse_float, parse_constant=_parse_constant
        )
    except RecursionError:
        raise BadRequest(f"The JSON text is nested more than {MAX_DEPTH} levels deep.") from None
    except json.JSONDecodeError as exc:
        raise BadRequest(f"The text is not valid JSON (line {exc.lineno}, column {exc.colno}).") from None
    _check_tree(value)
    return value


def check_text(text: str, what: str = "A string") -> str:
    """A string we can encode as UTF-8 and store anywhere: no lone surrogates, no NUL."""
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise BadRequest(f"{what} is not valid Unicode text (it holds a lone surrogate).") from None
    if "\x00" in text:
        raise InvalidValue(f"{what} must not contain NUL characters.")
    return text


def _check_tree(value: Any) -> None:
    """Depth and strings, checked without recursion, so no input can exhaust the stack here."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            check_text(item)
        elif isinstance(item, dict | list):
            if depth >= MAX_DEPTH:
                raise BadRequest(f"The JSON text is nested more than {MAX_DEPTH} levels deep.")
            if isinstance(item, dict):
                for key, member in item.items():
                    check_text(key, "A key")
                    stack.append((member, depth + 1))
            else:
                stack.extend((member, depth + 1) for member in item)


def _parse_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise BadRequest(f"Integers are limited to {MAX_INT_DIGITS} digits.")
    return int(text)


def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise BadRequest("A number is too large to represent.")
    return value


def _parse_constant(name: str) -> Any:
    raise BadRequest(f"{name} is not a JSON value.")
