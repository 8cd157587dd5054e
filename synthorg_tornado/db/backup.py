"""Online backups and restores of the lab's database, as files only their owner can read.

The database holds password and token hashes, so every file made here is created 0600 (never
widened afterwards), whatever the caller's umask.

These commands often run as root or as the service user, and the destination is a path someone
typed. A path is never resolved: the file is created by name inside its folder with
`O_CREAT | O_EXCL | O_NOFOLLOW`, so a symbolic link planted at that name (or any existing file)
is refused instead of written through. The folder itself must be one nobody else can change
under us: owned by the caller or root, and writable by group or others only when sticky (like
/tmp, where nobody can remove or replace a file they do not own).

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
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy.engine import make_url

from synthorg_tornado.clock import utcnow

PRIVATE = 0o600
CREATE_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class BackupError(Exception):
    """The backup or restore did not happen; the message says why in one line."""


def backup(url: str, destination: Path) -> None:
    """Write a consistent copy of the database at `url` to `destination` (which must not exist).

    `destination` is taken as given: made absolute, never resolved through symbolic links."""
    destination = Path(os.path.abspath(destination))
    with _new_private_file(destination) as (folder, descriptor):
        parsed = make_url(url)
        if parsed.get_backend_name() == "sqlite":
            _sqlite_copy_to(_sqlite_path(url), _pinned(folder, destination.parent), descriptor)
        else:
            _pg_tool("pg_dump", url, ["-Fc", "--no-owner"], stdout=descriptor)
        os.fsync(descriptor)


def safety_copy(url: str, folder: Path) -> Path | None:
    """Back the current database up into `folder` under a new name, before a restore replaces it.

    None when there is nothing to keep (a SQLite file that does not exist yet)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and not _sqlite_path(url).exists():
        return None
    name = Path(parsed.database or "database").stem or "database"
    stamp = utcnow().strftime("%Y%m%dT%H%M%S.%fZ")
    destination = Path(os.path.abspath(folder)) / f"{name}-before-restore-{stamp}.backup"
    backup(url, destination)
    return destination


def restore(url: str, source: Path) -> None:
    """Replace the database at `url` with the contents of a backup made by `backup`."""
    if not source.is_file():
        raise BackupError(f"{source} is not a backup file")
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        target = _sqlite_path(url)
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            os.close(os.open(target, CREATE_NEW, PRIVATE))
        _sqlite_copy(source, target)
    else:
        _pg_tool(
            "pg_restore", url, ["--clean", "--if-exists", "--no-owner", "--single-transaction", str(source)]
        )


@contextlib.contextmanager
def _new_private_file(destination: Path) -> Iterator[tuple[int, int]]:
    """The destination's folder and the new file, both as descriptors; removed on failure.

    The file is created relative to the folder's descriptor, the one whose owner and mode were
    checked, so the folder cannot be swapped between the check and the creation."""
    destination.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    folder = os.open(destination.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        _check_folder(destination.parent, os.fstat(folder))
        try:
            descriptor = os.open(destination.name, CREATE_NEW, PRIVATE, dir_fd=folder)
        except FileExistsError:
            raise BackupError(f"{destination} already exists; choose a new file name") from None
        except OSError as exc:
            raise BackupError(f"cannot create {destination}: {exc.strerror}") from None
        try:
            os.fchmod(descriptor, PRIVATE)
            yield folder, descriptor
        except BaseException:
            _remove_own(folder, destination.name, os.fstat(descriptor))
            raise
        finally:
            os.close(descriptor)
    finally:
        os.close(folder)


def _check_folder(path: Path, status: os.stat_result) -> None:
    """Refuse a folder where someone else could plant or replace the file after we check."""
    mode = stat.S_IMODE(status.st_mode)
    if status.st_uid not in (os.geteuid(), 0):
        raise BackupError(
            f"refusing to write into {path}: it belongs to uid {status.st_uid}, not to you or root"
        )
    if mode & 0o022 and not mode & stat.S_ISVTX:
        raise BackupError(
            f"refusing to write into {path}: group or others may write to it (mode {mode:o}) and it "
            "is not sticky; choose a folder only you can write"
        )


def _remove_own(folder: int, name: str, created: os.stat_result) -> None:
    """Remove the half-written file, but only if the name still points at the file we made."""
    with contextlib.suppress(OSError):
        found = os.stat(name, dir_fd=folder, follow_symlinks=False)
        if (found.st_dev, found.st_ino) == (created.st_dev, created.st_ino):
            os.unlink(name, dir_fd=folder)


def _sqlite_path(url: str) -> Path:
    database = make_url(url).database
    if not database or database == ":memory:":
        raise BackupError("an in-memory SQLite database has nothing to back up")
    return Path(database)


def _pinned(folder: int, path: Path) -> str:
    """A name for the checked folder that cannot be redirected: its descriptor's, where /proc has it."""
    pinned = f"/proc/self/fd/{folder}"
    return pinned if os.path.isdir(pinned) else str(path)


def _sqlite_copy_to(source: Path, folder: str, descriptor: int) -> None:
    """SQLite's backup API writes to a database it opens by name (with its journal beside it):
    it copies into a private 0700 folder made next to the destination, then into the new file."""
    with tempfile.TemporaryDirectory(dir=folder, prefix=".synthorg-backup-") as work:
        snapshot = Path(work) / "snapshot.db"
        _sqlite_copy(source, snapshot)
        with snapshot.open("rb") as reader:
            while chunk := reader.read(1 << 20):
                _write_all(descriptor, chunk)


def _write_all(descriptor: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(descriptor, view)
        view = view[written:]


def _sqlite_copy(source: Path, target: Path) -> None:
    if not source.exists():
        raise BackupError(f"the database file {source} does not exist")
    # A read-only source connection: a backup never changes the live database.
    with (
        contextlib.closing(sqlite3.connect(f"file:{source}?mode=ro", uri=True)) as reader,
        contextlib.closing(sqlite3.connect(target)) as writer,
    ):
        reader.backup(writer)


def _pg_tool(tool: str, url: str, arguments: list[str], stdout: int | None = None) -> None:
    program = shutil.which(tool)
    if program is None:
        raise BackupError(f"{tool} is not installed; install the postgresql-client package")
    parsed = make_url(url)
    env = dict(os.environ)
    if parsed.password is not None:
        env["PGPASSWORD"] = str(parsed.password)
    target = parsed.set(drivername="postgresql", password=None, query={})
    command = [program, f"--dbname={target.render_as_string(hide_password=False)}", *arguments]
    done = subprocess.run(
        command,
        env=env,
        stdout=stdout if stdout is not None else subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
        raise BackupError(f"{tool} failed: {lines[-1] if lines else f'exit status {done.returncode}'}")
