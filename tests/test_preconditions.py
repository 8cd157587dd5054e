"""RFC 9110 conditional headers, parsed once for every versioned resource."""

from __future__ import annotations

import pytest

from synthorg_tornado.preconditions import Precondition, none_match

ETAG = '"abc123"'


@pytest.mark.parametrize(
    ("header", "matches"),
    [
        ('"abc123"', True),
        ("*", True),
        (' "x", "abc123" ', True),
        ('"x","abc123","y"', True),
        ('W/"abc123"', False),  # weak validators never match If-Match
        ('"x", W/"abc123"', False),
        ('"abc"', False),
        ("abc123", False),  # unquoted is not an entity tag
        ('"abc123', False),
    ],
)
def test_if_match_uses_strong_comparison(header: str, matches: bool) -> None:
    precondition = Precondition.parse(header)
    assert precondition.present
    assert precondition.matches(ETAG) is matches


def test_missing_or_blank_if_match_is_absent() -> None:
    assert not Precondition.parse(None).present
    assert not Precondition.parse("  ").present


@pytest.mark.parametrize(
    ("header", "matches"),
    [('"abc123"', True), ('W/"abc123"', True), ("*", True), ('"other"', False), (None, False)],
)
def test_if_none_match_uses_weak_comparison(header: str | None, matches: bool) -> None:
    assert none_match(header, ETAG) is matches
