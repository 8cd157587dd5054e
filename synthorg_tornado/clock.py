"""The one clock. Everything stored or compared is timezone-aware UTC."""

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """Databases without time zones (SQLite) hand back naive values; they were stored as UTC."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def isoformat(value: datetime | None) -> str | None:
    """RFC 3339 with a `Z`, the form every API response uses."""
    if value is None:
        return None
    return as_utc(value).isoformat().replace("+00:00", "Z")


def parse_isoformat(text: str) -> datetime:
    """The inverse of `isoformat`, for times that travel between processes as text."""
    return as_utc(datetime.fromisoformat(text.replace("Z", "+00:00")))
