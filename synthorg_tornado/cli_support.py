"""What every command shares: exit codes, the one-line error, and running async work once.

Every failure ends with one clear line on stderr and a non-zero exit: 2 for configuration
problems (one line each), 1 for anything else. Never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from synthorg_tornado.auth.audit import Actor
from synthorg_tornado.config import Config
from synthorg_tornado.errors import LabError

if TYPE_CHECKING:
    from synthorg_tornado.services import Services

EXIT_OK, EXIT_FAILURE, EXIT_CONFIG = 0, 1, 2


class CommandError(Exception):
    """A command failed for a reason the user can act on; the message is the one line shown."""


def leaf(
    group: argparse._SubParsersAction,
    name: str,
    help_text: str,
    command: Callable[[Config, argparse.Namespace], int],
    common: argparse.ArgumentParser,
) -> argparse.ArgumentParser:
    parser = group.add_parser(name, parents=[common], help=help_text, description=help_text)
    parser.set_defaults(command=command, command_name=name)
    return parser


def run_db(coroutine_factory: Callable, config: Config):  # type: ignore[no-untyped-def]
    try:
        return asyncio.run(coroutine_factory())
    except OSError as exc:
        raise CommandError(f"cannot reach the database {config.database.masked_url}: {exc}") from None
    except Exception as exc:
        if type(exc).__module__.startswith("sqlalchemy"):
            raise CommandError(f"database {config.database.masked_url} failed: {first_line(exc)}") from None
        raise


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


CLI_ACTOR = Actor(None, "cli")


def with_services(config: Config, work: Callable[[Services], Awaitable[int]]) -> int:
    """Run `work` against the real services, on a migrated database."""
    from synthorg_tornado.config import ensure_secret
    from synthorg_tornado.server import prepare_database
    from synthorg_tornado.services import build_services

    async def run() -> int:
        await prepare_database(config)
        services = build_services(config, ensure_secret(config))
        try:
            return await work(services)
        finally:
            await services.close()

    try:
        return run_db(run, config)
    except LabError as error:
        raise CommandError(error.detail) from None


def read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\n")
    if not sys.stdin.isatty():
        raise CommandError("no terminal to prompt for a password; pass --password-stdin")
    first = getpass.getpass("Password: ")
    if first != getpass.getpass("Repeat password: "):
        raise CommandError("the passwords do not match")
    return first
