"""Database URLs and loopback hosts: the small parsing that both the schema and the rules need.

Kept below both, so that the schema's properties and the cross-key rules share one parser
without importing each other.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError


def is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_url(url: str) -> URL | None:
    """The parsed database URL, or None when it does not parse.

    An unparseable URL is reported once by `load_config`; the checks that run after it (secret
    file, processes) must still work so that every other problem is reported too.
    """
    try:
        return make_url(url)
    except (ArgumentError, ValueError):
        return None


def resolve_sqlite_url(url: str, base_dir: Path, problems: list[str]) -> str:
    """Relative SQLite paths resolve against the config file's folder, like every other path."""
    parsed = parse_url(url)
    if parsed is None:
        # The text itself is not shown: it may hold a password.
        problems.append(
            "database.url is not a valid database URL; write sqlite+aiosqlite:///PATH "
            "or postgresql+psycopg://USER:PASSWORD@HOST/DATABASE"
        )
        return url
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        database = parsed.database
        if database and database != ":memory:" and not Path(database).is_absolute():
            parsed = parsed.set(database=str((base_dir / database).resolve()))
        if parsed.drivername == "sqlite":
            parsed = parsed.set(drivername="sqlite+aiosqlite")
        return parsed.render_as_string(hide_password=False)
    if backend == "postgresql":
        if parsed.drivername in ("postgresql", "postgres"):
            parsed = parsed.set(drivername="postgresql+psycopg")
        return parsed.render_as_string(hide_password=False)
    problems.append(f"database.url: use sqlite+aiosqlite:/// or postgresql+psycopg://, not {backend}")
    return url
