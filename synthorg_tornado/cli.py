"""Command line: `synthorg-tornado serve | db | config ...`.

Every failure ends with one clear line on stderr and a non-zero exit: 2 for configuration
problems (one line each), 1 for anything else. Never a traceback.
"""

from __future__ import annotations

import argparse
import getpass
import logging
import os
import stat
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

from synthorg_tornado import __version__, cli_db
from synthorg_tornado.auth import roles
from synthorg_tornado.auth.audit import Actor
from synthorg_tornado.cli_support import (
    EXIT_CONFIG,
    EXIT_FAILURE,
    EXIT_OK,
    CommandError,
    first_line,
    leaf,
    run_db,
)
from synthorg_tornado.config import Config, ConfigError, describe, load_config, resolve_config_path
from synthorg_tornado.errors import LabError
from synthorg_tornado.logs import setup_logging

if TYPE_CHECKING:
    from synthorg_tornado.services import Services


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "command"):
        parser.print_help()
        return EXIT_CONFIG
    try:
        config = load_config(resolve_config_path(getattr(args, "config", None)))
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
        print(f"error: {type(exc).__name__}: {first_line(exc)}", file=sys.stderr)
        return EXIT_FAILURE


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    # SUPPRESS, so a --config given before the command is not reset by the subcommand's default.
    common.add_argument(
        "--config",
        metavar="PATH",
        default=argparse.SUPPRESS,
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
    serve.add_argument("--host", help="address to bind, instead of server.host")
    serve.add_argument("--port", type=int, help="port to bind, instead of server.port")
    serve.set_defaults(command=cmd_serve)

    cli_db.add_commands(commands, common)

    user = commands.add_parser("user", parents=[common], help="manage user accounts")
    user_commands = user.add_subparsers(title="user commands", metavar="ACTION", required=True)
    add = leaf(
        user_commands,
        "add",
        "create a user (password from a prompt or --password-stdin)",
        cmd_user_add,
        common,
    )
    add.add_argument("name")
    add.add_argument("--role", default="member", choices=roles.ROLES)
    add.add_argument("--display-name", default="")
    add.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    leaf(user_commands, "list", "list users", cmd_user_list, common)
    passwd = leaf(
        user_commands, "passwd", "set a user's password (revokes their sessions)", cmd_user_passwd, common
    )
    passwd.add_argument("name")
    passwd.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    for action, help_text in (
        ("disable", "disable a user and end their sessions"),
        ("enable", "enable a user"),
    ):
        leaf(user_commands, action, help_text, cmd_user_toggle, common).add_argument("name")
    set_role = leaf(user_commands, "set-role", "change a user's role", cmd_user_set_role, common)
    set_role.add_argument("name")
    set_role.add_argument("role", choices=roles.ROLES)

    token = commands.add_parser("token", parents=[common], help="manage personal API tokens")
    token_commands = token.add_subparsers(title="token commands", metavar="ACTION", required=True)
    create = leaf(
        token_commands, "create", "create an API token for a user (printed once)", cmd_token_create, common
    )
    create.add_argument("name", help="what the token is for")
    create.add_argument("--user", required=True, help="the token's owner")
    create.add_argument("--expires-days", type=int, default=None)
    leaf(token_commands, "list", "list a user's tokens", cmd_token_list, common).add_argument(
        "--user", required=True
    )
    leaf(token_commands, "revoke", "revoke a token by id", cmd_token_revoke, common).add_argument(
        "id", type=int
    )

    sessions = commands.add_parser("sessions", parents=[common], help="list or revoke login sessions")
    session_commands = sessions.add_subparsers(title="sessions commands", metavar="ACTION", required=True)
    leaf(session_commands, "list", "list live sessions", cmd_sessions_list, common).add_argument("--user")
    revoke = leaf(
        session_commands, "revoke", "revoke one session, a user's, or all", cmd_sessions_revoke, common
    )
    revoke.add_argument("session_id", nargs="?")
    revoke.add_argument("--user", help="revoke every session of this user")
    revoke.add_argument("--all", action="store_true", help="revoke every session of every user")

    cfg = commands.add_parser("config", parents=[common], help="check or show the configuration")
    cfg_commands = cfg.add_subparsers(title="config commands", metavar="ACTION", required=True)
    leaf(cfg_commands, "check", "validate config.yaml and the environment", cmd_config_check, common)
    leaf(cfg_commands, "show", "print effective values and their sources", cmd_config_show, common)
    return parser


def cmd_serve(config: Config, args: argparse.Namespace) -> int:
    """Run the server. From here on every line, fatal ones included, goes through the configured
    logging (format and level), so a JSON log collector sees why a start failed."""
    from synthorg_tornado import server

    overrides = {
        f"SYNTHORG_SERVER_{name.upper()}": str(value)
        for name, value in (("host", args.host), ("port", args.port))
        if value is not None
    }
    if overrides:
        # Through the environment layer, so the values are validated like any other.
        config = load_config(config.path, environ={**os.environ, **overrides})
    setup_logging(config.logging)
    log = logging.getLogger("synthorg.server")
    for warning in config.warnings:
        logging.getLogger("synthorg.config").warning(warning)
    try:
        return server.run(config)
    except ConfigError as exc:
        for problem in exc.problems:
            log.error("%s", problem)
        return EXIT_CONFIG
    except OSError as exc:
        log.error("cannot listen on %s:%s: %s", config.server.host, config.server.port, exc.strerror or exc)
        return EXIT_FAILURE
    except Exception as exc:
        log.debug("start-up failed", exc_info=True)
        log.error("start-up failed: %s: %s", type(exc).__name__, first_line(exc))
        return EXIT_FAILURE


def cmd_config_check(config: Config, args: argparse.Namespace) -> int:
    from synthorg_tornado.settings.registry import SettingsRegistry

    _, problems = SettingsRegistry().lower_sources(config, os.environ)
    if problems:
        raise ConfigError(problems)
    for warning in config.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"config OK: {config.path}")
    database_file = config.database.sqlite_path
    if database_file is not None:
        state = (
            f"mode {stat.S_IMODE(database_file.stat().st_mode):o}"
            if database_file.exists()
            else "will be created with mode 600"
        )
        print(f"database file {database_file}: {state}")
    return EXIT_OK


def cmd_config_show(config: Config, args: argparse.Namespace) -> int:
    rows = describe(config)
    width = max(len(key) for key, _, _ in rows)
    print(f"# {config.path}")
    for key, value, source in rows:
        print(f"{key.ljust(width)}  {value}  ({source})")
    return EXIT_OK


CLI_ACTOR = Actor(None, "cli")


def _with_services(config: Config, work: Callable[[Services], Awaitable[int]]) -> int:
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


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\n")
    if not sys.stdin.isatty():
        raise CommandError("no terminal to prompt for a password; pass --password-stdin")
    first = getpass.getpass("Password: ")
    if first != getpass.getpass("Repeat password: "):
        raise CommandError("the passwords do not match")
    return first


def cmd_user_add(config: Config, args: argparse.Namespace) -> int:
    password = _read_password(args.password_stdin)

    async def work(services: Services) -> int:
        user = await services.users.create(args.name, password, args.role, args.display_name, actor=CLI_ACTOR)
        print(f"created {user.role} {user.username} (id {user.id})")
        return EXIT_OK

    return _with_services(config, work)


def cmd_user_list(config: Config, args: argparse.Namespace) -> int:
    async def work(services: Services) -> int:
        for user in await services.users.list():
            state = "disabled" if user.disabled else "active"
            print(f"{user.id}\t{user.username}\t{user.role}\t{state}\t{user.display_name}")
        return EXIT_OK

    return _with_services(config, work)


def cmd_user_passwd(config: Config, args: argparse.Namespace) -> int:
    password = _read_password(args.password_stdin)

    async def work(services: Services) -> int:
        user = await services.users.find_by_username(args.name)
        await services.users.update(user.id, {"password": password}, actor=CLI_ACTOR)
        count = await services.sessions.revoke_all(user.id, "password_changed", CLI_ACTOR)
        print(f"password of {user.username} changed; {count} session(s) revoked")
        return EXIT_OK

    return _with_services(config, work)


def cmd_user_toggle(config: Config, args: argparse.Namespace) -> int:
    disable = args.command_name == "disable"

    async def work(services: Services) -> int:
        user = await services.users.find_by_username(args.name)
        await services.users.update(user.id, {"disabled": disable}, actor=CLI_ACTOR)
        message = f"{user.username} {'disabled' if disable else 'enabled'}"
        if disable:
            count = await services.sessions.revoke_all(user.id, "user_disabled", CLI_ACTOR)
            message += f"; {count} session(s) revoked"
        print(message)
        return EXIT_OK

    return _with_services(config, work)


def cmd_user_set_role(config: Config, args: argparse.Namespace) -> int:
    async def work(services: Services) -> int:
        user = await services.users.find_by_username(args.name)
        await services.users.update(user.id, {"role": args.role}, actor=CLI_ACTOR)
        print(f"{user.username} is now {args.role}")
        return EXIT_OK

    return _with_services(config, work)


def cmd_token_create(config: Config, args: argparse.Namespace) -> int:
    async def work(services: Services) -> int:
        user = await services.users.find_by_username(args.user)
        created = await services.api_tokens.create(user, args.name, args.expires_days, CLI_ACTOR)
        print(f"token {created['id']} for {user.username}, expires {created['expires_at']}:", file=sys.stderr)
        print(created["token"])
        return EXIT_OK

    return _with_services(config, work)


def cmd_token_list(config: Config, args: argparse.Namespace) -> int:
    async def work(services: Services) -> int:
        user = await services.users.find_by_username(args.user)
        for token in await services.api_tokens.list_all(user.id):
            print(
                f"{token['id']}\t{token['prefix']}...\t{token['name']}\texpires {token['expires_at']}"
                f"\tlast used {token['last_used_at'] or 'never'}"
            )
        return EXIT_OK

    return _with_services(config, work)


def cmd_token_revoke(config: Config, args: argparse.Namespace) -> int:
    async def work(services: Services) -> int:
        await services.api_tokens.revoke(args.id, None, CLI_ACTOR)
        print(f"token {args.id} revoked")
        return EXIT_OK

    return _with_services(config, work)


def cmd_sessions_list(config: Config, args: argparse.Namespace) -> int:
    async def work(services: Services) -> int:
        user_id = (await services.users.find_by_username(args.user)).id if args.user else None
        for entry in await services.sessions.list(user_id, None):
            print(
                f"{entry['session_id']}\t{entry['username']}\t{entry['ip_address'] or '-'}\t"
                f"created {entry['created_at']}\tlast active {entry['last_active_at']}"
            )
        return EXIT_OK

    return _with_services(config, work)


def cmd_sessions_revoke(config: Config, args: argparse.Namespace) -> int:
    chosen = sum(bool(x) for x in (args.session_id, args.user, args.all))
    if chosen != 1:
        raise CommandError("name exactly one of: a session id, --user NAME, or --all")

    async def work(services: Services) -> int:
        if args.session_id:
            await services.sessions.revoke(args.session_id, "revoked", CLI_ACTOR)
            print("1 session revoked")
            return EXIT_OK
        users = (
            [await services.users.find_by_username(args.user)] if args.user else await services.users.list()
        )
        total = 0
        for user in users:
            total += await services.sessions.revoke_all(user.id, "revoked", CLI_ACTOR)
        print(f"{total} session(s) revoked")
        return EXIT_OK

    return _with_services(config, work)
