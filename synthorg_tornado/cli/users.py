"""`synthorg-tornado user ...`: accounts, against the database a running server shares.

Changes reach a running server through its change feed, within about a second.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from synthorg_tornado.accounts import roles
from synthorg_tornado.cli.support import (
    CLI_ACTOR,
    EXIT_OK,
    add_json_flag,
    leaf,
    print_listing,
    read_password,
    short_time,
    with_services,
)
from synthorg_tornado.config import Config

if TYPE_CHECKING:
    from synthorg_tornado.services import Services


def add_commands(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
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
    add_json_flag(leaf(user_commands, "list", "list users", cmd_user_list, common))
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
    leaf(
        user_commands,
        "delete",
        "delete a user, ending their sessions and removing their API tokens",
        cmd_user_delete,
        common,
    ).add_argument("name")
    set_role = leaf(user_commands, "set-role", "change a user's role", cmd_user_set_role, common)
    set_role.add_argument("name")
    set_role.add_argument("role", choices=roles.ROLES)
    unlock = leaf(
        user_commands,
        "unlock",
        "clear a user's login lockouts from every address, in the running server too",
        cmd_user_unlock,
        common,
    )
    unlock.add_argument("name")


def cmd_user_add(config: Config, args: argparse.Namespace) -> int:
    password = read_password(args.password_stdin)

    async def work(services: Services) -> int:
        user = await services.users.create(args.name, password, args.role, args.display_name, actor=CLI_ACTOR)
        print(f"created {user.role} {user.username} (id {user.id})")
        return EXIT_OK

    return with_services(config, work)


def cmd_user_list(config: Config, args: argparse.Namespace) -> int:
    async def work(services: Services) -> int:
        users = [user.public() for user in await services.users.list()]
        print_listing(
            args,
            users,
            ("ID", "USERNAME", "ROLE", "STATE", "LAST LOGIN", "DISPLAY NAME"),
            lambda user: (
                user["id"],
                user["username"],
                user["role"],
                "disabled" if user["disabled"] else "active",
                short_time(user["last_login_at"]) or "never",
                user["display_name"],
            ),
        )
        return EXIT_OK

    return with_services(config, work)


def cmd_user_passwd(config: Config, args: argparse.Namespace) -> int:
    password = read_password(args.password_stdin)

    async def work(services: Services) -> int:
        user = await services.users.find_by_username(args.name)
        result = await services.accounts.reset_password(user.id, password, actor=CLI_ACTOR)
        print(f"password of {user.username} changed; {result.sessions_ended} session(s) revoked")
        return EXIT_OK

    return with_services(config, work)


def cmd_user_toggle(config: Config, args: argparse.Namespace) -> int:
    disable = args.command_name == "disable"

    async def work(services: Services) -> int:
        user = await services.users.find_by_username(args.name)
        result = await services.accounts.set_disabled(user.id, disable, actor=CLI_ACTOR)
        message = f"{user.username} {'disabled' if disable else 'enabled'}"
        if disable:
            message += f"; {result.sessions_ended} session(s) revoked"
        print(message)
        return EXIT_OK

    return with_services(config, work)


def cmd_user_delete(config: Config, args: argparse.Namespace) -> int:
    """What `DELETE /api/v1/users/{id}` does, by the same service method: the sessions are
    revoked (and audited) in the delete's transaction, so a running server ends them."""

    async def work(services: Services) -> int:
        user = await services.users.find_by_username(args.name)
        result = await services.accounts.delete(user.id, actor=CLI_ACTOR)
        print(f"{user.username} deleted; {result.sessions_ended} session(s) revoked")
        return EXIT_OK

    return with_services(config, work)


def cmd_user_set_role(config: Config, args: argparse.Namespace) -> int:
    async def work(services: Services) -> int:
        user = await services.users.find_by_username(args.name)
        await services.accounts.set_role(user.id, args.role, actor=CLI_ACTOR)
        print(f"{user.username} is now {args.role}")
        return EXIT_OK

    return with_services(config, work)


def cmd_user_unlock(config: Config, args: argparse.Namespace) -> int:
    async def work(services: Services) -> int:
        user = await services.users.find_by_username(args.name)
        await services.login.unlock(user.id, actor=CLI_ACTOR)
        print(f"login lockouts of {user.username} cleared; a running server applies it within a second")
        return EXIT_OK

    return with_services(config, work)
