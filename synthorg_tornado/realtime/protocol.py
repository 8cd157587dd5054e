"""Checks on what clients send over the socket: every problem becomes an error reply."""

from __future__ import annotations

from typing import Any

MAX_FILTER_KEYS = 10
MAX_FILTER_VALUE = 256
MAX_CHANNELS = 256
MAX_EVENT_ID = 2**63 - 1


def channel_list(value: Any) -> list[str] | None:
    if not isinstance(value, list) or not value or len(value) > MAX_CHANNELS:
        return None
    if not all(isinstance(item, str) and 0 < len(item) <= 128 for item in value):
        return None
    return list(dict.fromkeys(value))


def valid_filters(filters: Any) -> bool:
    if not isinstance(filters, dict) or len(filters) > MAX_FILTER_KEYS:
        return False
    for key, value in filters.items():
        if not isinstance(key, str) or len(key) > MAX_FILTER_VALUE:
            return False
        if not isinstance(value, str | int | float | bool):
            return False
        if isinstance(value, str) and len(value) > MAX_FILTER_VALUE:
            return False
    return True


def since_positions(value: Any, requested: list[str]) -> dict[str, int] | None:
    """`since`: the last event id the client saw, per channel it is subscribing to."""
    if not isinstance(value, dict) or not value or len(value) > MAX_CHANNELS:
        return None
    positions = {}
    for channel, position in value.items():
        if channel not in requested or isinstance(position, bool) or not isinstance(position, int):
            return None
        if not 0 <= position <= MAX_EVENT_ID:
            return None
        positions[channel] = position
    return positions
