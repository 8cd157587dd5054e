"""Security rules written on each handler method, where a reviewer sees them.

Every HTTP method a handler defines carries exactly one of these; a test walks the URL table and
fails on any method that has none.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

Method = TypeVar("Method", bound=Callable[..., Any])

AUTH_RULE_ATTRIBUTE = "__auth_rule__"
HTTP_METHODS = ("get", "head", "post", "put", "patch", "delete", "options")


def allow_anonymous(method: Method) -> Method:
    """Open to everyone, logged in or not."""
    setattr(method, AUTH_RULE_ATTRIBUTE, "anonymous")
    return method


def auth_rule(method: Callable[..., Any]) -> str | None:
    return getattr(method, AUTH_RULE_ATTRIBUTE, None)
