"""`synthorg-tornado db ...`: the schema (upgrade, current) and the data (backup, restore)."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from synthorg_tornado.cli.support import EXIT_OK, CommandError, leaf, run_db
from synthorg_tornado.config import Config

T = TypeVar("T")


def add_commands(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    db = commands.add_parser("db", parents=[common], help="database schema and backups")
    db_commands = db.add_subparsers(title="db commands", metavar="ACTION", required=True)
    leaf(db_commands, "upgrade", "apply pending migrations", cmd_db_upgrade, common)
    leaf(db_commands, "current", "show the schema revision", cmd_db_current, common)
    leaf(
        db_commands,
        "backup",
        "write a consistent copy of the database to a new 0600 file (safe while serving)",
        cmd_db_backup,
        common,
    ).add_argument("path", type=Path)
    restore = leaf(
        db_commands,
        "restore",
        "replace the database with a backup (stop the server first); keeps a 0600 copy of what it replaces",
        cmd_db_restore,
        common,
    )
    restore.add_argument("path", type=Path)
    restore.add_argument(
        "--force", action="store_true", help="restore even while a server of this machine uses the database"
    )


def cmd_db_upgrade(config: Config, args: argparse.Namespace) -> int:
    from synthorg_tornado.db import migrate
    from synthorg_tornado.db.engine import Database

    async def upgrade() -> str | None:
        database = Database(config.database)
        try:
            await migrate.upgrade(database)
            return await migrate.current_revision(database)
        finally:
            await database.dispose()

    revision = run_db(upgrade, config)
    print(f"database {config.database.masked_url} is at revision {revision}")
    return EXIT_OK


def cmd_db_current(config: Config, args: argparse.Namespace) -> int:
    from synthorg_tornado.db import migrate
    from synthorg_tornado.db.engine import Database

    async def current() -> str | None:
        database = Database(config.database)
        try:
            return await migrate.current_revision(database)
        finally:
            await database.dispose()

    revision = run_db(current, config)
    head = migrate.head_revision()
    state = "up to date" if revision == head else f"behind; head is {head}, run: synthorg-tornado db upgrade"
    print(f"{revision or '(empty)'} ({state})")
    return EXIT_OK


def cmd_db_backup(config: Config, args: argparse.Namespace) -> int:
    from synthorg_tornado.db import backup

    _copy(backup.backup, config, args.path)
    print(f"database {config.database.masked_url} backed up to {args.path} (mode 0600)")
    return EXIT_OK


def cmd_db_restore(config: Config, args: argparse.Namespace) -> int:
    """A restore under a running server leaves it serving from caches that disagree with the
    data, so it is refused unless forced; and what it replaces is kept, since a restore of the
    wrong file would otherwise lose everything written since that backup."""
    from synthorg_tornado.db import backup

    if not args.force:
        _refuse_while_served(config)
    source = Path(os.path.abspath(args.path.expanduser()))
    if not source.is_file():
        raise CommandError(f"{source} is not a backup file")
    kept = _copy(backup.safety_copy, config, source.parent)
    if kept is None:
        print("no database to keep before restoring (it does not exist yet)")
    else:
        print(f"kept a copy of the database as it was before the restore in {kept} (mode 0600)")
    _copy(backup.restore, config, source)
    print(f"database {config.database.masked_url} restored from {args.path}")
    return EXIT_OK


def _refuse_while_served(config: Config) -> None:
    """The runtime files say which servers of this machine run, and with which database."""
    from synthorg_tornado.process import runtime

    found = runtime.scan(config)
    for path in found.unreadable:
        raise CommandError(
            f"cannot tell whether a server uses the database: cannot read {path}; "
            "run as the server's user, or pass --force"
        )
    for entry in runtime.describe(found.servers):
        if entry["database"] == config.database.masked_url:
            raise CommandError(
                f"server pid {entry['pid']} ({entry['url']}) is using database "
                f"{config.database.masked_url}; stop it first (systemctl stop synthorg-tornado), "
                "or pass --force to restore under it"
            )


def _copy(operation: Callable[[str, Path], T], config: Config, path: Path) -> T:
    """Paths are used as given (made absolute, never resolved): see `db.backup`."""
    from synthorg_tornado.db.backup import BackupError

    try:
        return operation(config.database.url, Path(os.path.abspath(path.expanduser())))
    except BackupError as exc:
        raise CommandError(str(exc)) from None
