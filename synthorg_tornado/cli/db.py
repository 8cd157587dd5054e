"""`synthorg-tornado db ...`: the schema (upgrade, current) and the data (backup, restore)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from synthorg_tornado.cli.support import EXIT_OK, CommandError, leaf, run_db
from synthorg_tornado.config import Config


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
    leaf(
        db_commands,
        "restore",
        "replace the database with a backup (stop the server first)",
        cmd_db_restore,
        common,
    ).add_argument("path", type=Path)


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
    from synthorg_tornado.db import backup

    _copy(backup.restore, config, args.path)
    print(f"database {config.database.masked_url} restored from {args.path}")
    return EXIT_OK


def _copy(operation: Callable[[str, Path], None], config: Config, path: Path) -> None:
    from synthorg_tornado.db.backup import BackupError

    try:
        operation(config.database.url, path.expanduser().resolve())
    except BackupError as exc:
        raise CommandError(str(exc)) from None
