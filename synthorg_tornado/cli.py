"""Command line: `synthorg-tornado serve | db | config ...`.

Every failure ends with one clear line on stderr and a non-zero exit: 2 for configuration
problems (one line each), 1 for anything else. Never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Callable, Sequence

from synthorg_tornado import __version__
from synthorg_tornado.config import Config, ConfigError, describe, load_config, resolve_config_path
from synthorg_tornado.logs import setup_logging

EXIT_OK, EXIT_FAILURE, EXIT_CONFIG = 0, 1, 2


class CommandError(Exception):
    """A command failed for a reason the user can act on; the message is the one line shown."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "command"):
        parser.print_help()
        return EXIT_CONFIG
    try:
        config = load_config(resolve_config_path(args.config))
        return args.command(config, args)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"error: {problem}", file=sys.stderr)
        return EXIT_CONFIG
    except CommandError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return EXIT_FAILURE
    except Exception as exc:
        logging.getLogger("synthorg.cli").debug("command failed", exc_info=True)
        print(f"error: {type(exc).__name__}: {_first_line(exc)}", file=sys.stderr)
        return EXIT_FAILURE


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        metavar="PATH",
        help="config file (default: $SYNTHORG_CONFIG, else ./config.yaml)",
    )
    parser = argparse.ArgumentParser(
        prog="synthorg-tornado",
        description="Multi-user lab server: login, sessions, settings and live channels.",
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    serve = commands.add_parser("serve", parents=[common], help="run the server")
    serve.set_defaults(command=cmd_serve)

    db = commands.add_parser("db", parents=[common], help="database schema")
    db_commands = db.add_subparsers(title="db commands", metavar="ACTION", required=True)
    _leaf(db_commands, "upgrade", "apply pending migrations", cmd_db_upgrade, common)
    _leaf(db_commands, "current", "show the schema revision", cmd_db_current, common)

    cfg = commands.add_parser("config", parents=[common], help="check or show the configuration")
    cfg_commands = cfg.add_subparsers(title="config commands", metavar="ACTION", required=True)
    _leaf(cfg_commands, "check", "validate config.yaml and the environment", cmd_config_check, common)
    _leaf(cfg_commands, "show", "print effective values and their sources", cmd_config_show, common)
    return parser


def _leaf(
    group: argparse._SubParsersAction,
    name: str,
    help_text: str,
    command: Callable[[Config, argparse.Namespace], int],
    common: argparse.ArgumentParser,
) -> argparse.ArgumentParser:
    parser = group.add_parser(name, parents=[common], help=help_text, description=help_text)
    parser.set_defaults(command=command)
    return parser


def cmd_serve(config: Config, args: argparse.Namespace) -> int:
    from synthorg_tornado import server

    setup_logging(config.logging)
    for warning in config.warnings:
        logging.getLogger("synthorg.config").warning(warning)
    try:
        return server.run(config)
    except OSError as exc:
        raise CommandError(
            f"cannot listen on {config.server.host}:{config.server.port}: {exc.strerror}"
        ) from None


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

    revision = _run_db(upgrade, config)
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

    revision = _run_db(current, config)
    head = migrate.head_revision()
    state = "up to date" if revision == head else f"behind; head is {head}, run: synthorg-tornado db upgrade"
    print(f"{revision or '(empty)'} ({state})")
    return EXIT_OK


def cmd_config_check(config: Config, args: argparse.Namespace) -> int:
    for warning in config.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"config OK: {config.path}")
    return EXIT_OK


def cmd_config_show(config: Config, args: argparse.Namespace) -> int:
    rows = describe(config)
    width = max(len(key) for key, _, _ in rows)
    print(f"# {config.path}")
    for key, value, source in rows:
        print(f"{key.ljust(width)}  {value}  ({source})")
    return EXIT_OK


def _run_db(coroutine_factory: Callable, config: Config):  # type: ignore[no-untyped-def]
    try:
        return asyncio.run(coroutine_factory())
    except OSError as exc:
        raise CommandError(f"cannot reach the database {config.database.masked_url}: {exc}") from None
    except Exception as exc:
        if type(exc).__module__.startswith("sqlalchemy"):
            raise CommandError(f"database {config.database.masked_url} failed: {_first_line(exc)}") from None
        raise


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
