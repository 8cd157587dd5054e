"""HTTP conditional requests (RFC 9110 section 13) for versioned resources.

If-Match uses the strong comparison: a weak validator (`W/"..."`) never matches. If-None-Match
uses the weak comparison, as the RFC asks for GET.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_ENTITY_TAG = re.compile(r'\s*(W/)?("[^"]*")\s*(?:,|$)')


@dataclass(frozen=True)
class Precondition:
    """A parsed If-Match: absent, `*`, or a list of (weak?, tag) pairs."""

    present: bool
    any: bool = False
    tags: tuple[tuple[bool, str], ...] = ()

    @classmethod
    def parse(cls, header: str | None) -> Precondition:
        if header is None or not header.strip():
            return cls(present=False)
        if header.strip() == "*":
            return cls(present=True, any=True)
        return cls(present=True, tags=parse_entity_tags(header))

    def matches(self, etag: str) -> bool:
        """Strong comparison: only strong tags equal to the current one match."""
        if self.any:
            return True
        return any(not weak and tag == etag for weak, tag in self.tags)


def parse_entity_tags(header: str) -> tuple[tuple[bool, str], ...]:
    """`"a", W/"b"` -> ((False, '"a"'), (True, '"b"')). Malformed members are skipped."""
    tags = []
    position = 0
    while position < len(header):
        match = _ENTITY_TAG.match(header, position)
        if not match:
            next_comma = header.find(",", position)
            if next_comma < 0:
                break
            position = next_comma + 1
            continue
        tags.append((bool(match.group(1)), match.group(2)))
        position = match.end()
    return tuple(tags)


def none_match(header: str | None, etag: str) -> bool:
    """True when If-None-Match names the current representation (weak comparison)."""
    if header is None:
        return False
    if header.strip() == "*":
        return True
    return any(tag == etag for _weak, tag in parse_entity_tags(header))
