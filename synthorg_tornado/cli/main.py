"""Command line: `synthorg-tornado serve | db | user | token | sessions | audit | config ...`.

Every failure ends with one clear line on stderr and a non-zero exit: 2 for configuration
problems (one line each), 1 for anything else. Never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import stat
import sys
from collections.abc import Sequence

from synthorg_tornado import __version__
from synthorg_tornado.cli import access as cli_access
from synthorg_tornado.cli import audit as cli_audit
from synthorg_tornado.cli import db as cli_db
from synthorg_tornado.cli import server as cli_server
from synthorg_tornado.cli import users as cli_users
from synthorg_tornado.cli.support import (
    EXIT_CONFIG,
    EXIT_FAILURE,
    EXIT_OK,
    CommandError,
    Parser,
    first_line,
    leaf,
)
from synthorg_tornado.config import Config, ConfigError, describe, load_config, resolve_config_path
from synthorg_tornado.logs import setup_logging


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
    except BrokenPipeError:
        # The reader went away (`... list | head`): what it did not read is not an error. Point
        # stdout at /dev/null so the interpreter's final flush does not complain either.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except Exception as exc:
        logging.getLogger("synthorg.cli").debug("command failed", exc_info=True)
        print(f"error: {type(exc).__name__}: {first_line(exc)}", file=sys.stderr)
        return EXIT_FAILURE


def build_parser() -> argparse.ArgumentParser:
    common = Parser(add_help=False)
    # SUPPRESS, so a --config given before the command is not reset by the subcommand's default.
    common.add_argument(
        "--config",
        metavar="PATH",
        default=argparse.SUPPRESS,
        help="config file (default: $SYNTHORG_CONFIG, else ./config.yaml)",
    )
    parser = Parser(
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

    cli_users.add_commands(commands, common)
    cli_access.add_commands(commands, common)
    cli_server.add_commands(commands, common)
    cli_audit.add_commands(commands, common)

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
