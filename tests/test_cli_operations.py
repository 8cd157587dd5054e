"""Item 11 of issue 10, the command line completed: `user delete`, `audit list`, aligned lists
with headers and short session ids, a unique prefix wherever a session id is taken, `--json`
on every list, and audit rows that name the operating-system user.

Every command runs as a subprocess against the database of a real running server, on both
backends, and what it changes is checked on that server.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

from synthorg_tornado.clock import utcnow
from synthorg_tornado.config import load_config
from synthorg_tornado.db.engine import Database
from synthorg_tornado.db.models import Session as SessionRow
from tests.servers import Lab
from tests.test_cli_admin import cli, eventually_status, table

ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z")
SESSION_ID = re.compile(r"[0-9a-f]{64}")
README = Path(__file__).resolve().parent.parent / "README.md"


def cli_as(lab: Lab, login_name: str, *args: str) -> subprocess.CompletedProcess:
    """The command as the operating-system user `login_name` would run it (no sudo)."""
    env = {key: value for key, value in os.environ.items() if key != "SUDO_USER"}
    env.update(LOGNAME=login_name, USER=login_name)
    return subprocess.run(
        [sys.executable, "-m", "synthorg_tornado", *args, "--config", str(lab.server.config_path)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def audit(lab: Lab, *args: str) -> list[dict]:
    result = cli(lab, "audit", "list", "--json", *args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def one_error_line(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 1, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def add_live_sessions(lab: Lab, user_id: int, session_ids: list[str]) -> None:
    """Sessions as login makes them, with ids chosen so that two share a prefix (random ids
    would need thousands of logins before one did)."""
    config = load_config(lab.server.config_path)

    async def insert() -> None:
        database = Database(config.database)
        now = utcnow()
        try:
            async with database.session() as session:
                for session_id in session_ids:
                    session.add(
                        SessionRow(
                            id=session_id,
                            user_id=user_id,
                            created_at=now,
                            last_active_at=now,
                            expires_at=now + timedelta(hours=1),
                            ip_address="192.0.2.7",
                            user_agent="test",
                        )
                    )
                await session.commit()
        finally:
            await database.dispose()

    asyncio.run(insert())


def test_user_delete_ends_sessions_and_tokens_on_the_running_server(lab: Lab) -> None:
    user = lab.create_user()
    name = user["username"]
    session_client, _ = lab.login(name)
    token = cli(lab, "token", "create", "script", "--user", name).stdout.strip()
    token_client = lab.client(token=token, scheme="token")
    assert session_client.get("/api/v1/me").status == 200
    assert token_client.get("/api/v1/me").status == 200

    result = cli_as(lab, "alice", "user", "delete", name)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{name} deleted; 1 session(s) revoked"
    # The delete takes the user's rows with it: the server must still notice, and refuse both.
    eventually_status(session_client, "/api/v1/me", 401)
    eventually_status(token_client, "/api/v1/me", 401)
    assert lab.admin.get(f"/api/v1/users/{user['id']}").status == 404
    (entry,) = audit(lab, "--action", "user.delete", "--limit", "1")
    assert (entry["actor"], entry["target"], entry["outcome"]) == ("cli:alice", name, "success")

    one_error_line(cli(lab, "user", "delete", name), f"No user named {name!r}")


def test_audit_list_filters_newest_first_and_names_the_os_user(lab: Lab) -> None:
    user = lab.create_user()
    name = user["username"]
    started = utcnow().isoformat()
    for role in ("observer", "manager"):
        assert cli_as(lab, "alice", "user", "set-role", name, role).returncode == 0
    assert cli_as(lab, "bob", "user", "disable", name).returncode == 0

    by_alice = audit(lab, "--actor", "cli:alice", "--action", "user.update", "--since", started)
    assert [entry["detail"] for entry in by_alice] == [{"role": "manager"}, {"role": "observer"}]
    assert all(ISO.fullmatch(entry["at"]) and entry["target"] == name for entry in by_alice)
    assert by_alice[0]["at"] >= by_alice[1]["at"]
    assert audit(lab, "--actor", "cli:alice", "--since", started, "--limit", "1") == by_alice[:1]
    assert (
        audit(lab, "--actor", "cli:alice", "--since", started, "--until", by_alice[0]["at"]) == by_alice[1:]
    )
    assert [entry["detail"] for entry in audit(lab, "--actor", "cli:bob", "--since", "5m")] == [
        {"disabled": True}
    ]
    assert audit(lab, "--actor", "cli:alice", "--until", "1d") == []

    shown = cli(lab, "audit", "list", "--actor", "cli:alice", "--since", started)
    assert shown.returncode == 0, shown.stderr
    rows = table(shown.stdout)
    assert [(row["ACTOR"], row["ACTION"], row["TARGET"], row["DETAIL"]) for row in rows] == [
        ("cli:alice", "user.update", name, "role=manager"),
        ("cli:alice", "user.update", name, "role=observer"),
    ]


def test_audit_list_refuses_bad_arguments_with_one_line(lab: Lab) -> None:
    for args in (["--since", "yesterday"], ["--limit", "0"], ["--until", "99999999d"]):
        refused = cli(lab, "audit", "list", *args)
        assert refused.returncode == 2, refused
        (line,) = refused.stderr.strip().splitlines()
        assert line.startswith("error: synthorg-tornado audit list: argument "), line
    one_error_line(cli(lab, "audit", "list", "--since", "1h", "--until", "2h"), "--since must be earlier")


def test_audit_list_escapes_what_a_client_typed(lab: Lab) -> None:
    hostile = "x\x1b]0;owned\x07\u202e"
    reply = lab.client().post("/api/v1/auth/login", {"username": hostile, "password": "wrong-password"})
    assert reply.status == 401
    shown = cli(lab, "audit", "list", "--action", "auth.login", "--limit", "5")
    assert shown.returncode == 0, shown.stderr
    assert "x\\x1b]0;owned\\x07\\u202e" in shown.stdout
    assert "\x1b" not in shown.stdout and "\u202e" not in shown.stdout
    as_json = cli(lab, "audit", "list", "--json", "--action", "auth.login", "--limit", "5").stdout
    assert as_json.isascii() and hostile in [entry["actor"] for entry in json.loads(as_json)]


def test_sessions_list_has_headers_and_short_ids_and_json_has_full_ones(lab: Lab) -> None:
    user = lab.create_user()
    lab.login(user["username"])
    lab.login(user["username"])
    shown = cli(lab, "sessions", "list", "--user", user["username"])
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.split()[:6] == ["SESSION", "USER", "IP", "CREATED", "LAST", "ACTIVE"]
    rows = table(shown.stdout)
    listed = json.loads(cli(lab, "sessions", "list", "--user", user["username"], "--json").stdout)
    assert len(rows) == len(listed) == 2
    for row, entry in zip(rows, listed, strict=True):
        assert SESSION_ID.fullmatch(entry["session_id"])
        assert row["SESSION"] == entry["session_id"][:8]
        assert (row["USER"], row["IP"]) == (user["username"], "127.0.0.1")
        assert all(ISO.fullmatch(entry[key]) for key in ("created_at", "last_active_at", "expires_at"))
        assert row["CREATED"] == entry["created_at"].split(".")[0].removesuffix("Z") + "Z"


def test_sessions_revoke_takes_a_unique_prefix_and_reaches_the_running_server(lab: Lab) -> None:
    user = lab.create_user()
    doomed, body = lab.login(user["username"])
    spared, _ = lab.login(user["username"])
    session_id = body["session"]["session_id"]
    rows = table(cli(lab, "sessions", "list", "--user", user["username"]).stdout)
    (short,) = [row["SESSION"] for row in rows if session_id.startswith(row["SESSION"])]

    revoked = cli_as(lab, "alice", "sessions", "revoke", short)
    assert revoked.returncode == 0, revoked.stderr
    assert revoked.stdout.strip() == f"session {short} revoked"
    eventually_status(doomed, "/api/v1/me", 401, 1002)
    assert spared.get("/api/v1/me").status == 200
    (entry,) = audit(lab, "--actor", "cli:alice", "--action", "session.revoke", "--limit", "1")
    assert entry["target"] == f"session:{session_id[:8]}"
    left = [entry["session_id"] for entry in json.loads(cli(lab, "sessions", "list", "--json").stdout)]
    assert session_id not in left


def test_sessions_revoke_refuses_ambiguous_unknown_and_short_prefixes(lab: Lab) -> None:
    user = lab.create_user()
    first, second = "fe0c" + "a" * 60, "fe0c" + "b" * 60
    add_live_sessions(lab, int(user["id"]), [first, second])
    one_error_line(cli(lab, "sessions", "revoke", "fe0c"), "2 live sessions start with 'fe0c'")
    one_error_line(cli(lab, "sessions", "revoke", "fe0d"), "no live session id starts with 'fe0d'")
    one_error_line(cli(lab, "sessions", "revoke", "fe0"), "at least 4 characters")
    assert cli(lab, "sessions", "revoke", "fe0ca").returncode == 0
    left = [entry["session_id"] for entry in json.loads(cli(lab, "sessions", "list", "--json").stdout)]
    assert first not in left and second in left
    one_error_line(cli(lab, "sessions", "revoke", first), "no live session id starts with")


def test_user_and_token_lists_have_headers_and_json(lab: Lab) -> None:
    user = lab.create_user()
    name = user["username"]
    assert cli(lab, "token", "create", "nightly", "--user", name, "--expires-days", "2").returncode == 0
    users = json.loads(cli(lab, "user", "list", "--json").stdout)
    assert {"id": user["id"], "username": name, "role": "member", "disabled": False} == {
        key: value
        for key, value in next(u for u in users if u["username"] == name).items()
        if key in ("id", "username", "role", "disabled")
    }
    rows = {row["USERNAME"]: row for row in table(cli(lab, "user", "list").stdout)}
    assert (rows[name]["ID"], rows[name]["STATE"], rows[name]["LAST LOGIN"]) == (
        user["id"],
        "active",
        "never",
    )

    tokens = json.loads(cli(lab, "token", "list", "--user", name, "--json").stdout)
    (token,) = tokens
    assert token["name"] == "nightly" and ISO.fullmatch(token["expires_at"]) and token["last_used_at"] is None
    (row,) = table(cli(lab, "token", "list", "--user", name).stdout)
    assert (row["ID"], row["NAME"], row["PREFIX"], row["LAST USED"]) == (
        token["id"],
        "nightly",
        token["prefix"] + "...",
        "never",
    )


def test_every_command_has_help_and_the_readme_names_version() -> None:
    for command in (["user", "delete"], ["audit", "list"], ["sessions", "list"], ["token", "list"]):
        shown = subprocess.run(
            [sys.executable, "-m", "synthorg_tornado", *command, "--help"], capture_output=True, text=True
        )
        assert shown.returncode == 0 and shown.stdout.startswith("usage: synthorg-tornado"), shown
    version = subprocess.run(
        [sys.executable, "-m", "synthorg_tornado", "--version"], capture_output=True, text=True
    )
    assert version.returncode == 0 and version.stdout.startswith("synthorg-tornado ")
    readme = README.read_text()
    assert "synthorg-tornado --version" in readme
    for command in ("user delete", "audit list", "--json"):
        assert command in readme


def test_a_listing_cut_short_by_its_reader_ends_quietly(lab: Lab) -> None:
    """`audit list ... | head`: the reader closes the pipe long before the listing ends."""
    config = load_config(lab.server.config_path)

    async def insert() -> None:
        database = Database(config.database)
        try:
            async with database.session() as session:
                for number in range(3000):
                    add_audit_row(session, number)
                await session.commit()
        finally:
            await database.dispose()

    asyncio.run(insert())
    command = [sys.executable, "-m", "synthorg_tornado", "audit", "list", "--limit", "3000", "--json"]
    listing = subprocess.Popen(
        [*command, "--config", str(lab.server.config_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert listing.stdout is not None and listing.stderr is not None
    listing.stdout.read(100)  # far less than the listing, which no pipe buffer holds
    listing.stdout.close()
    errors = listing.stderr.read().decode()
    assert listing.wait(60) == 0
    assert errors == ""


def add_audit_row(session, number: int) -> None:  # type: ignore[no-untyped-def]
    from synthorg_tornado.db.models import AuditEntry

    session.add(
        AuditEntry(
            at=utcnow(),
            actor="pytest-pipe",
            action="test.row",
            target=f"row {number} " + "x" * 100,
            ip_address="192.0.2.8",
            outcome="success",
        )
    )
