"""The base of every versioned resource: ETag out, If-Match / If-None-Match in.

A resource handler says how to find its current entry's ETag; this class parses the conditional
headers (RFC 9110) and turns them into `Precondition`s and 304s, so the rules live in one place.
"""

from __future__ import annotations

from synthorg_tornado.handlers.base import ApiHandler
from synthorg_tornado.preconditions import Precondition, none_match


class VersionedResourceHandler(ApiHandler):
    def precondition(self) -> Precondition:
        return Precondition.parse(self.request.headers.get("If-Match"))

    def not_modified(self, etag: str) -> bool:
        """Answer 304 (with the ETag) when the client already has this representation."""
        self.set_header("ETag", etag)
        if none_match(self.request.headers.get("If-None-Match"), etag):
            self.set_status(304)
            self.finish()
            return True
        return False

    def write_versioned(self, body: object, etag: str, status: int = 200) -> None:
        self.set_header("ETag", etag)
        self.write_json(body, status=status)
