"""`GET /api/v1/audit`: the audit log for admins, newest first, cursor-paged."""

from __future__ import annotations

from datetime import datetime

from synthorg_tornado.accounts import roles
from synthorg_tornado.auth.audit import MAX_PAGE
from synthorg_tornado.clock import as_utc
from synthorg_tornado.errors import InvalidValue
from synthorg_tornado.handlers.arguments import parse_count
from synthorg_tornado.handlers.base import ApiHandler
from synthorg_tornado.handlers.decorators import require_role


def parse_time(name: str, raw: str | None) -> datetime | None:
    if not raw:
        return None
    try:
        return as_utc(datetime.fromisoformat(raw.replace("Z", "+00:00")))
    except (ValueError, OverflowError):  # OverflowError: year 1 or 9999 shifted out of range
        raise InvalidValue(f"{name} must be an ISO 8601 timestamp.") from None


class AuditHandler(ApiHandler):
    @require_role(roles.ADMIN)
    async def get(self) -> None:
        limit = parse_count("limit", self.get_query_argument("limit", "100"), 1, MAX_PAGE)
        items, next_cursor = await self.services.audit.query(
            actor=self.get_query_argument("actor", None),
            action=self.get_query_argument("action", None),
            since=parse_time("since", self.get_query_argument("since", None)),
            until=parse_time("until", self.get_query_argument("until", None)),
            limit=limit,
            cursor=self.get_query_argument("cursor", None),
        )
        self.write_json({"items": items, "next_cursor": next_cursor})


default_handlers = [(r"api/v1/audit", AuditHandler)]
