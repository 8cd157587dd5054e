"""Security rules written on each handler method, where a reviewer sees them.

Every HTTP method a handler defines carries exactly one of these; a test walks the URL table and
fails on any method that has none. The rule runs before the method body, so the order of checks
is always authentication (401), then role (403), then whatever the method does.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from synthorg_tornado.errors import PermissionDenied

Method = TypeVar("Method", bound=Callable[..., Any])

AUTH_RULE_ATTRIBUTE = "__auth_rule__"
HTTP_METHODS = ("get", "head", "post", "put", "patch", "delete", "options")


def allow_anonymous(method: Method) -> Method:
    """Open to everyone, logged in or not."""
    setattr(method, AUTH_RULE_ATTRIBUTE, "anonymous")
    return method


def authenticated(method: Method) -> Method:
    """Any logged-in user (session or API token)."""
    return _guard(method, "authenticated", None)


def require_role(*allowed: str) -> Callable[[Method], Method]:
    """Logged in with one of the named roles; anyone else gets 403."""

    def decorate(method: Method) -> Method:
        return _guard(method, "role:" + ",".join(allowed), frozenset(allowed))

    return decorate


def _guard(method: Method, rule: str, roles: frozenset[str] | None) -> Method:
    @functools.wraps(method)
    def wrapper(self, *args: Any, **kwargs: Any) -> Any:
        # Not a coroutine itself: it returns the method's own result (a coroutine for async
        # methods), which Tornado awaits, so the rule costs no extra await per request.
        if not self.require_identity():
            return None
        if roles is not None and self._identity.user.role not in roles:
            raise PermissionDenied()
        return method(self, *args, **kwargs)

    setattr(wrapper, AUTH_RULE_ATTRIBUTE, rule)
    return wrapper  # type: ignore[return-value]


def auth_rule(method: Callable[..., Any]) -> str | None:
    return getattr(method, AUTH_RULE_ATTRIBUTE, None)
