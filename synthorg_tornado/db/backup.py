"""Online backups and restores of the lab's database, as files only their owner can read.

The database holds password and token hashes, so every file made here is created 0600 (never
widened afterwards), whatever the caller's umask.

- SQLite: SQLite's online backup API copies a consistent snapshot page by page while the server
  keeps writing; a restore copies the other way with the same API.
- PostgreSQL: `pg_dump -Fc` (consistent while the server runs) and `pg_restore --clean`. The
  password travels in PGPASSWORD, never on a command line that `ps` shows.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import subprocess
from pathlib import Path

from sqlalchemy.engine import make_url

PRIVATE = 0o600


class BackupError(Exception):
    """The backup or restore did not happen; the message says why in one line."""


def backup(url: str, destination: Path) -> None:
    """Write a consistent copy of the database at `url` to `destination` (which must not exist)."""
    if destination.exists():
        raise BackupError(f"{destination} already exists; choose a new file name")
    _create_private(destination)
    try:
        parsed = make_url(url)
        if parsed.get_backend_name() == "sqlite":
            _sqlite_copy(_sqlite_path(url), destination)
        else:
            _pg_tool("pg_dump", url, ["-Fc", "--no-owner", f"--file={destination}"])
    except BaseException:
        destination.unlink(missing_ok=True)
        raise
    os.chmod(destination, PRIVATE)


def restore(url: str, source: Path) -> None:
    """Replace the database at `url` with the contents of a backup made by `backup`."""
    if not source.is_file():
        raise BackupError(f"{source} is not a backup file")
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        target = _sqlite_path(url)
        if not target.exists():
            _create_private(target)
        _sqlite_copy(source, target)
    else:
        _pg_tool(
            "pg_restore", url, ["--clean", "--if-exists", "--no-owner", "--single-transaction", str(source)]
        )


def _create_private(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE))


def _sqlite_path(url: str) -> Path:
    database = make_url(url).database
    if not database or database == ":memory:":
        raise BackupError("an in-memory SQLite database has nothing to back up")
    return Path(database)


def _sqlite_copy(source: Path, target: Path) -> None:
    if not source.exists():
        raise BackupError(f"the database file {source} does not exist")
    # A read-only source connection: a backup never changes the live database.
    with (
        contextlib.closing(sqlite3.connect(f"file:{source}?mode=ro", uri=True)) as reader,
        contextlib.closing(sqlite3.connect(target)) as writer,
    ):
        reader.backup(writer)


def _pg_tool(tool: str, url: str, arguments: list[str]) -> None:
    program = shutil.which(tool)
    if program is None:
        raise BackupError(f"{tool} is not installed; install the postgresql-client package")
    parsed = make_url(url)
    env = dict(os.environ)
    if parsed.password is not None:
        env["PGPASSWORD"] = str(parsed.password)
    target = parsed.set(drivername="postgresql", password=None, query={})
    command = [program, f"--dbname={target.render_as_string(hide_password=False)}", *arguments]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
        raise BackupError(f"{tool} failed: {lines[-1] if lines else f'exit status {done.returncode}'}")
