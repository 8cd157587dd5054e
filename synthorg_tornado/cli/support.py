"""What every command shares: exit codes, the one-line error, who acts, running async work once,
and how lists are printed (an aligned table for a person, `--json` for a script).

Every failure ends with one clear line on stderr and a non-zero exit: 2 for configuration
problems (one line each), 1 for anything else. Never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import sys
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

from synthorg_tornado.auth.audit import Actor
from synthorg_tornado.config import Config
from synthorg_tornado.errors import LabError

if TYPE_CHECKING:
    from synthorg_tornado.services import Services

EXIT_OK, EXIT_FAILURE, EXIT_CONFIG = 0, 1, 2


class CommandError(Exception):
    """A command failed for a reason the user can act on; the message is the one line shown."""


class Parser(argparse.ArgumentParser):
    """argparse, but a bad argument is one line (argparse prints the usage block first), with
    the configuration problems' exit status. Subcommands' parsers are of this class too."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_CONFIG, f"error: {self.prog}: {message} (see {self.prog} --help)\n")


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
    except BrokenPipeError:
        raise  # our reader went away, not the database (see cli.main)
    except OSError as exc:
        raise CommandError(f"cannot reach the database {config.database.masked_url}: {exc}") from None
    except Exception as exc:
        if type(exc).__module__.startswith("sqlalchemy"):
            raise CommandError(f"database {config.database.masked_url} failed: {first_line(exc)}") from None
        raise


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def operating_system_user() -> str:
    """Who runs the command, for the audit log: the login name, else the numeric uid.

    `getpass.getuser()` reads LOGNAME/USER first and then the passwd database, which a container
    or a systemd DynamicUser may lack (KeyError, or OSError on Python 3.13); a command must not
    fail because of that. Under sudo the person is SUDO_USER rather than root. None of these is
    proof of identity (whoever can run this can write the database), only a record of intent.
    """
    if os.geteuid() == 0 and os.environ.get("SUDO_USER"):
        return os.environ["SUDO_USER"]
    try:
        name = getpass.getuser()
    except (KeyError, OSError, ImportError):
        name = ""
    return name or f"uid{os.getuid()}"


# Computed once per command: every row a command writes names the same person.
CLI_ACTOR = Actor(None, f"cli:{operating_system_user()}")


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


def add_json_flag(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument(
        "--json", action="store_true", help="print a JSON array (full ids, ISO 8601 times) for scripts"
    )
    return parser


def print_json(items: Any) -> None:
    """One JSON document on stdout. ASCII-only, so no value can reach a terminal as a control
    character or a bidirectional override, whatever a client put in it."""
    json.dump(items, sys.stdout, indent=2, ensure_ascii=True)
    sys.stdout.write("\n")


def print_listing(
    args: argparse.Namespace,
    items: Sequence[Any],
    headers: Sequence[str],
    row: Callable[[Any], Sequence[object]],
) -> None:
    """A list command's output: the items as JSON with `--json`, else a table of `row(item)`."""
    if args.json:
        print_json(items)
    else:
        print_table(headers, (row(item) for item in items))


def print_table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    """Columns padded to their widest cell, headers first, no trailing blanks.

    Cells may hold what a client chose (an attempted username, a display name), so each is made
    printable first: an escape sequence would otherwise rewrite the operator's terminal.
    """
    cells = [list(headers)] + [[terminal_text(cell) for cell in row] for row in rows]
    widths = [max(len(row[column]) for row in cells) for column in range(len(headers))]
    for row in cells:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def terminal_text(value: object) -> str:
    """`value` as one line of plain text: None is "-", anything unprintable is escaped."""
    if value is None or value == "":
        return "-"
    text = str(value)
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in text)


def short_time(value: str | None) -> str | None:
    """An API timestamp without its fraction of a second, for a table: `2026-12-01T09:30:00Z`."""
    if not value:
        return value
    head, _, _ = value.removesuffix("Z").partition(".")
    return head + "Z"
