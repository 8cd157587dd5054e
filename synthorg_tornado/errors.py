"""Errors of every layer, and the one table that turns them into RFC 9457 problem JSON.

Services raise the domain errors below and never think about HTTP. The API base handler asks
`problem_for()` how to render whatever was raised, so each status and error code is decided here
and nowhere else.
"""

from __future__ import annotations

import http
from enum import IntEnum
from typing import Any


class ErrorCode(IntEnum):
    UNAUTHORIZED = 1000
    FORBIDDEN = 1001
    SESSION_REVOKED = 1002
    SESSION_EXPIRED = 1003
    ACCOUNT_LOCKED = 1004
    VALIDATION_ERROR = 2000
    REQUEST_VALIDATION_ERROR = 2001
    METHOD_NOT_ALLOWED = 2002
    RESOURCE_NOT_FOUND = 3000
    ROUTE_NOT_FOUND = 3002
    RESOURCE_CONFLICT = 4000
    DUPLICATE_RECORD = 4001
    VERSION_CONFLICT = 4002
    PRECONDITION_REQUIRED = 4003
    LAST_ADMIN = 4004
    RATE_LIMITED = 5000
    INTERNAL_ERROR = 8000
    SERVICE_UNAVAILABLE = 8001
    PERSISTENCE_ERROR = 8002

    @property
    def category(self) -> str:
        return _CATEGORIES[self.value // 1000]


_CATEGORIES = {
    1: "auth",
    2: "validation",
    3: "not_found",
    4: "conflict",
    5: "rate_limit",
    8: "internal",
}


class LabError(Exception):
    """Base of every error the product raises on purpose.

    `detail` is shown to the client, so it must never carry a secret or an internal detail.
    `extra` adds members to the problem body (for example `current` on a version conflict).
    """

    default_detail = "The request failed."

    def __init__(
        self,
        detail: str | None = None,
        *,
        retry_after: int | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self.detail = detail or self.default_detail
        self.retry_after = retry_after
        self.extra = extra or {}
        super().__init__(self.detail)


class NotAuthenticated(LabError):
    default_detail = "Authentication is required."


class SessionRevoked(NotAuthenticated):
    default_detail = "This session has been revoked. Log in again."


class SessionExpired(NotAuthenticated):
    default_detail = "This session has expired. Log in again."


class PermissionDenied(LabError):
    default_detail = "You are not allowed to do this."


class AccountLocked(LabError):
    default_detail = "Too many failed logins for this account from your address. Try again later."


class InvalidValue(LabError):
    default_detail = "The value is not valid."


class UnsupportedOperation(LabError):
    """The request is well-formed but does not apply here (for example logout with an API token)."""

    default_detail = "This operation does not apply to this request."


class BadRequest(LabError):
    default_detail = "The request is malformed."


class PayloadTooLarge(BadRequest):
    default_detail = "The request body is too large."


class UnsupportedMediaType(BadRequest):
    """A body in a format the endpoint does not read (JSON endpoints take application/json only,
    which also keeps cross-site HTML forms, limited to text/plain and form encodings, out)."""

    default_detail = "The request body must be sent as Content-Type: application/json."


class MethodNotAllowed(LabError):
    default_detail = "This method is not allowed on this resource."


class NotFound(LabError):
    default_detail = "The resource does not exist."


class RouteNotFound(NotFound):
    default_detail = "No such API route."


class Conflict(LabError):
    default_detail = "The request conflicts with the current state."


class DuplicateRecord(Conflict):
    default_detail = "A record with this identity already exists."


class VersionConflict(Conflict):
    default_detail = "The resource changed since you read it."


class LastAdmin(Conflict):
    """The change would leave the lab without an enabled admin, and so without anyone able to
    manage its users through the API."""

    default_detail = "The lab must keep at least one enabled admin."


class PreconditionRequired(LabError):
    default_detail = "This write needs an If-Match header with the ETag you read."


class RateLimited(LabError):
    default_detail = "Too many requests. Try again later."


class Unavailable(LabError):
    default_detail = "The service is temporarily unavailable. Try again shortly."


class PersistenceFailure(LabError):
    default_detail = "The change could not be stored."


# Most specific first: the first class in an error's MRO found here decides.
PROBLEM_TABLE: dict[type[LabError], tuple[int, ErrorCode]] = {
    SessionRevoked: (401, ErrorCode.SESSION_REVOKED),
    SessionExpired: (401, ErrorCode.SESSION_EXPIRED),
    NotAuthenticated: (401, ErrorCode.UNAUTHORIZED),
    PermissionDenied: (403, ErrorCode.FORBIDDEN),
    AccountLocked: (429, ErrorCode.ACCOUNT_LOCKED),
    InvalidValue: (422, ErrorCode.VALIDATION_ERROR),
    UnsupportedOperation: (400, ErrorCode.VALIDATION_ERROR),
    PayloadTooLarge: (413, ErrorCode.REQUEST_VALIDATION_ERROR),
    UnsupportedMediaType: (415, ErrorCode.REQUEST_VALIDATION_ERROR),
    BadRequest: (400, ErrorCode.REQUEST_VALIDATION_ERROR),
    MethodNotAllowed: (405, ErrorCode.METHOD_NOT_ALLOWED),
    RouteNotFound: (404, ErrorCode.ROUTE_NOT_FOUND),
    NotFound: (404, ErrorCode.RESOURCE_NOT_FOUND),
    DuplicateRecord: (409, ErrorCode.DUPLICATE_RECORD),
    VersionConflict: (412, ErrorCode.VERSION_CONFLICT),
    LastAdmin: (409, ErrorCode.LAST_ADMIN),
    Conflict: (409, ErrorCode.RESOURCE_CONFLICT),
    PreconditionRequired: (428, ErrorCode.PRECONDITION_REQUIRED),
    RateLimited: (429, ErrorCode.RATE_LIMITED),
    Unavailable: (503, ErrorCode.SERVICE_UNAVAILABLE),
    PersistenceFailure: (503, ErrorCode.PERSISTENCE_ERROR),
    LabError: (500, ErrorCode.INTERNAL_ERROR),
}

# Errors raised by Tornado itself (unknown method, XSRF failure, oversized body, ...).
HTTP_STATUS_CODES: dict[int, ErrorCode] = {
    400: ErrorCode.REQUEST_VALIDATION_ERROR,
    401: ErrorCode.UNAUTHORIZED,
    403: ErrorCode.FORBIDDEN,
    404: ErrorCode.ROUTE_NOT_FOUND,
    405: ErrorCode.METHOD_NOT_ALLOWED,
    409: ErrorCode.RESOURCE_CONFLICT,
    412: ErrorCode.VERSION_CONFLICT,
    413: ErrorCode.REQUEST_VALIDATION_ERROR,
    415: ErrorCode.REQUEST_VALIDATION_ERROR,
    422: ErrorCode.VALIDATION_ERROR,
    428: ErrorCode.PRECONDITION_REQUIRED,
    429: ErrorCode.RATE_LIMITED,
    503: ErrorCode.SERVICE_UNAVAILABLE,
}

RETRYABLE_STATUSES = frozenset({429, 503})


def classify(error: LabError) -> tuple[int, ErrorCode]:
    for cls in type(error).__mro__:
        if cls in PROBLEM_TABLE:
            return PROBLEM_TABLE[cls]
    return 500, ErrorCode.INTERNAL_ERROR


def problem_body(
    status: int,
    code: ErrorCode,
    detail: str,
    instance: str,
    retry_after: int | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The RFC 9457 body. `type` points into our API reference, one anchor per error code."""
    body: dict[str, Any] = {
        "type": f"https://synthorg.dev/errors/{code.name.lower().replace('_', '-')}",
        "title": _reason(status),
        "status": status,
        "detail": detail,
        "instance": instance,
        "error_code": int(code),
        "error_category": code.category,
        "retryable": status in RETRYABLE_STATUSES,
        "retry_after": retry_after,
    }
    if extra:
        body.update(extra)
    return body


def problem_for(error: BaseException, instance: str, status_hint: int = 500) -> dict[str, Any]:
    """Problem body for anything that reached the API boundary.

    Unknown exceptions become a bare 500: their text may hold internals, so it is not shown.
    """
    if isinstance(error, LabError):
        status, code = classify(error)
        return problem_body(status, code, error.detail, instance, error.retry_after, error.extra)
    status = status_hint if 400 <= status_hint < 600 else 500
    code = HTTP_STATUS_CODES.get(status, ErrorCode.INTERNAL_ERROR)
    if status >= 500:
        detail = "The server hit an unexpected error. It has been logged."
        code = HTTP_STATUS_CODES.get(status, ErrorCode.INTERNAL_ERROR)
    else:
        message = getattr(error, "log_message", None)
        arguments = getattr(error, "args", ())
        if message and arguments:
            message = message % arguments
        detail = message or _reason(status)
    return problem_body(status, code, detail, instance)


def _reason(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Error"
