"""`synthorg-tornado audit list`: the audit log, newest first, as `GET /api/v1/audit` serves it.

The command line reads the database directly, so it pages through the service's cursor itself:
`--limit` may exceed the API's page size.
"""

from __future__ import annotations

import argparse
import re
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from synthorg_tornado.auth.audit import MAX_PAGE
from synthorg_tornado.cli.support import (
    EXIT_OK,
    CommandError,
    add_json_flag,
    leaf,
    print_listing,
    short_time,
    with_services,
)
from synthorg_tornado.clock import utcnow
from synthorg_tornado.config import Config
from synthorg_tornado.errors import InvalidValue

if TYPE_CHECKING:
    from synthorg_tornado.services import Services

AGE = re.compile(r"([0-9]{1,5})([smhd])")
AGE_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
TIME_HELP = "an ISO 8601 time (UTC unless it says otherwise) or an age such as 30m, 12h, 7d"


def add_commands(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    audit = commands.add_parser("audit", parents=[common], help="read the audit log")
    audit_commands = audit.add_subparsers(title="audit commands", metavar="ACTION", required=True)
    listing = add_json_flag(
        leaf(audit_commands, "list", "list audit entries, newest first", cmd_audit_list, common)
    )
    listing.add_argument("--actor", help="only entries by this actor (a username, or cli:NAME)")
    listing.add_argument("--action", help="only this action, such as auth.login or user.delete")
    listing.add_argument("--since", type=point_in_time, help=f"entries at or after: {TIME_HELP}")
    listing.add_argument("--until", type=point_in_time, help=f"entries before: {TIME_HELP}")
    listing.add_argument(
        "--limit", type=positive, default=100, help="at most this many entries (default 100)"
    )


def point_in_time(text: str) -> datetime:
    """What --since and --until take. The ISO form is read as the API reads it, one way."""
    from synthorg_tornado.handlers.audit import parse_time

    age = AGE.fullmatch(text)
    if age:
        return utcnow() - timedelta(**{AGE_UNITS[age.group(2)]: int(age.group(1))})
    try:
        parsed = parse_time("time", text)
    except InvalidValue:
        parsed = None
    if parsed is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not {TIME_HELP}")
    return parsed


def positive(text: str) -> int:
    if not text.isascii() or not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return int(text)


def cmd_audit_list(config: Config, args: argparse.Namespace) -> int:
    if args.since and args.until and args.since >= args.until:
        raise CommandError("--since must be earlier than --until")

    async def work(services: Services) -> int:
        entries: list[dict[str, Any]] = []
        cursor = None
        while len(entries) < args.limit:
            page, cursor = await services.audit.query(
                actor=args.actor,
                action=args.action,
                since=args.since,
                until=args.until,
                limit=min(MAX_PAGE, args.limit - len(entries)),
                cursor=cursor,
            )
            entries.extend(page)
            if cursor is None:
                break
        print_listing(
            args,
            entries,
            ("AT", "ACTOR", "ACTION", "TARGET", "IP", "OUTCOME", "DETAIL"),
            lambda entry: (
                short_time(entry["at"]),
                entry["actor"],
                entry["action"],
                entry["target"],
                entry["ip_address"],
                entry["outcome"],
                " ".join(f"{key}={value}" for key, value in entry["detail"].items()),
            ),
        )
        return EXIT_OK

    return with_services(config, work)
