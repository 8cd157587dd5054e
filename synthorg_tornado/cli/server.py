"""`synthorg-tornado server list`: the servers running on this machine, from their runtime files.

In the spirit of `jupyter server list`: pid, URL and start time of each, and the setup link
while no user exists, so a lost first-run link can be printed again. It reads files only (see
`runtime`); it needs no database and no running server to answer.
"""

from __future__ import annotations

import argparse
import sys

from synthorg_tornado.cli.support import EXIT_OK, leaf, print_json
from synthorg_tornado.config import Config
from synthorg_tornado.process import runtime


def add_commands(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    server = commands.add_parser("server", parents=[common], help="the servers running on this machine")
    server_commands = server.add_subparsers(title="server commands", metavar="ACTION", required=True)
    about = "running servers: pid, URL, started, and the setup link"
    listing = leaf(server_commands, "list", about, cmd_server_list, common)
    listing.add_argument("--json", action="store_true", help="one JSON array, for scripts")


def cmd_server_list(config: Config, args: argparse.Namespace) -> int:
    found = runtime.scan(config)
    for path in found.unreadable:
        print(f"warning: cannot read {path}; run as the server's user", file=sys.stderr)
    entries = runtime.describe(found.servers)
    if args.json:
        print_json(entries)
        return EXIT_OK
    if not entries:
        folders = ", ".join(str(folder) for folder in runtime.runtime_dirs(config))
        print(f"no running server found (looked in {folders})", file=sys.stderr)
        return EXIT_OK
    print(f"{'PID':<8}  {'STARTED':<27}  URL")
    for entry in entries:
        workers = f"  ({entry['processes']} processes)" if entry["processes"] > 1 else ""
        print(f"{entry['pid']:<8}  {entry['started']:<27}  {entry['url']}{workers}")
        if entry["setup_url"]:
            print(f"          no user exists yet; set up at: {entry['setup_url']}")
    return EXIT_OK


def flush_running_servers(config: Config) -> None:
    """Before a command reads what servers keep in memory for a while (session activity): ask
    this machine's servers to write it, and say on stderr when one could not."""
    for problem in runtime.request_flush(config):
        print(f"warning: {problem}", file=sys.stderr)
