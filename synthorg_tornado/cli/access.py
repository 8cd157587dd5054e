"""`synthorg-tornado token ...` and `sessions ...`: API tokens and login sessions.

Session ids are 64 hex digits, so listings show the first few (`SHORT_ID`, the length the audit
log's `session:` targets use) and every command takes any unique prefix of a live session's id.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from synthorg_tornado.cli import server as cli_server
from synthorg_tornado.cli.support import (
    CLI_ACTOR,
    EXIT_OK,
    CommandError,
    add_json_flag,
    leaf,
    print_listing,
    short_time,
    with_services,
)
from synthorg_tornado.config import Config

if TYPE_CHECKING:
    from synthorg_tornado.services import Services

SHORT_ID = 8
# Shorter prefixes match too much to be typed on purpose.
MIN_PREFIX = 4


def add_commands(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    token = commands.add_parser("token", parents=[common], help="manage personal API tokens")
    token_commands = token.add_subparsers(title="token commands", metavar="ACTION", required=True)
    create = leaf(
        token_commands, "create", "create an API token for a user (printed once)", cmd_token_create, common
    )
    create.add_argument("name", help="what the token is for")
    create.add_argument("--user", required=True, help="the token's owner")
    create.add_argument("--expires-days", type=int, default=None)
    add_json_flag(
        leaf(token_commands, "list", "list a user's live tokens", cmd_token_list, common)
    ).add_argument("--user", required=True)
    leaf(token_commands, "revoke", "revoke a token by id", cmd_token_revoke, common).add_argument(
        "id", type=int
    )

    sessions = commands.add_parser("sessions", parents=[common], help="list or revoke login sessions")
    session_commands = sessions.add_subparsers(title="sessions commands", metavar="ACTION", required=True)
    add_json_flag(
        leaf(session_commands, "list", "list live sessions", cmd_sessions_list, common)
    ).add_argument("--user")
    revoke = leaf(
        session_commands, "revoke", "revoke one session, a user's, or all", cmd_sessions_revoke, common
    )
    revoke.add_argument(
        "session_id",
        nargs="?",
        metavar="ID",
        help=f"a session id, or a unique prefix of at least {MIN_PREFIX}",
    )
    revoke.add_argument("--user", help="revoke every session of this user")
    revoke.add_argument("--all", action="store_true", help="revoke every session of every user")


def cmd_token_create(config: Config, args: argparse.Namespace) -> int:
    async def work(services: Services) -> int:
        user = await services.users.find_by_username(args.user)
        created = await services.api_tokens.create(user, args.name, args.expires_days, CLI_ACTOR)
        print(f"token {created['id']} for {user.username}, expires {created['expires_at']}:", file=sys.stderr)
        print(created["token"])
        return EXIT_OK

    return with_services(config, work)


def cmd_token_list(config: Config, args: argparse.Namespace) -> int:
    async def work(services: Services) -> int:
        user = await services.users.find_by_username(args.user)
        tokens = await services.api_tokens.list_all(user.id)
        print_listing(
            args,
            tokens,
            ("ID", "PREFIX", "NAME", "CREATED", "EXPIRES", "LAST USED"),
            lambda token: (
                token["id"],
                f"{token['prefix']}...",
                token["name"],
                short_time(token["created_at"]),
                short_time(token["expires_at"]) or "never",
                short_time(token["last_used_at"]) or "never",
            ),
        )
        return EXIT_OK

    return with_services(config, work)


def cmd_token_revoke(config: Config, args: argparse.Namespace) -> int:
    async def work(services: Services) -> int:
        await services.api_tokens.revoke(args.id, None, CLI_ACTOR)
        print(f"token {args.id} revoked")
        return EXIT_OK

    return with_services(config, work)


def cmd_sessions_list(config: Config, args: argparse.Namespace) -> int:
    cli_server.flush_running_servers(config)  # what the API shows, not what the debounce wrote

    async def work(services: Services) -> int:
        user_id = (await services.users.find_by_username(args.user)).id if args.user else None
        sessions = await services.sessions.list(user_id, None)
        print_listing(
            args,
            sessions,
            ("SESSION", "USER", "IP", "CREATED", "LAST ACTIVE", "EXPIRES"),
            lambda entry: (
                entry["session_id"][:SHORT_ID],
                entry["username"],
                entry["ip_address"],
                short_time(entry["created_at"]),
                short_time(entry["last_active_at"]),
                short_time(entry["expires_at"]),
            ),
        )
        return EXIT_OK

    return with_services(config, work)


def cmd_sessions_revoke(config: Config, args: argparse.Namespace) -> int:
    chosen = sum(bool(x) for x in (args.session_id, args.user, args.all))
    if chosen != 1:
        raise CommandError("name exactly one of: a session id, --user NAME, or --all")

    async def work(services: Services) -> int:
        if args.session_id:
            session_id = await resolve_session_id(services, args.session_id)
            await services.sessions.revoke(session_id, "revoked", CLI_ACTOR)
            print(f"session {session_id[:SHORT_ID]} revoked")
            return EXIT_OK
        users = (
            [await services.users.find_by_username(args.user)] if args.user else await services.users.list()
        )
        total = 0
        for user in users:
            total += await services.sessions.revoke_all(user.id, "revoked", CLI_ACTOR)
        print(f"{total} session(s) revoked")
        return EXIT_OK

    return with_services(config, work)


async def resolve_session_id(services: Services, prefix: str) -> str:
    """The live session whose id starts with `prefix`.

    Only live sessions are candidates, the ones `sessions list` shows, so a prefix read off
    the listing never collides with a session that ended long ago.
    """
    if len(prefix) < MIN_PREFIX:
        raise CommandError(f"a session id prefix needs at least {MIN_PREFIX} characters")
    matches = [
        entry for entry in await services.sessions.list(None, None) if entry["session_id"].startswith(prefix)
    ]
    if not matches:
        raise CommandError(f"no live session id starts with {prefix!r}")
    if len(matches) > 1:
        raise CommandError(f"{len(matches)} live sessions start with {prefix!r}; give more characters")
    return str(matches[0]["session_id"])
