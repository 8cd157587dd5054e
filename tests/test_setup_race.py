"""The one-time setup token creates one first admin, whatever the concurrency.

In one process the token is spent before the first await; across processes (each prints its own
token) the database refuses a second first admin.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from pathlib import Path

from tests.client import Client
from tests.servers import SETUP_LINE, PostgresCluster, ServerProcess, setup_token, wait_for, write_config
from tests.test_login_concurrency import burst

PASSWORD = "root-password-1"


def setup_request(url: str, token: str, username: str):  # type: ignore[no-untyped-def]
    client = Client(url)
    body = {"token": token, "username": username, "password": PASSWORD}
    return lambda: client.post("/api/v1/auth/setup", body)


def usernames(url: str, token: str) -> list[str]:
    return sorted(user["username"] for user in Client(url, token=token).get("/api/v1/users").json())


def test_eight_parallel_setups_with_the_token_create_one_admin(database_url: str, tmp_path: Path) -> None:
    server = ServerProcess(write_config(tmp_path, database_url)).start()
    try:
        token = setup_token(server)
        replies = burst([setup_request(server.url, token, f"root{n}") for n in range(8)])
        assert Counter(reply.status for reply in replies) == {201: 1, 403: 7}
        assert all(reply.code == 1001 for reply in replies if reply.status == 403)
        winner = next(reply for reply in replies if reply.status == 201).json()
        assert usernames(server.url, winner["token"]) == [winner["user"]["username"]]
    finally:
        assert server.terminate() == 0


def test_two_processes_each_holding_a_token_create_one_first_admin(
    pg_cluster: PostgresCluster, tmp_path: Path
) -> None:
    url = pg_cluster.create_database("setup_race")
    # A realistic cost, so the password hash (before the write) leaves both requests time to
    # get past every check made in memory or by a plain read.
    auth = {"bcrypt_rounds": 12, "password_min_length": 8}
    first = ServerProcess(write_config(tmp_path / "a", url, auth=auth)).start()
    second = ServerProcess(write_config(tmp_path / "b", url, auth=auth))
    try:
        second.start()
        tokens = setup_token(first), setup_token(second)
        assert tokens[0] != tokens[1]
        for server in (first, second):  # warm: the race is then about the setups alone
            assert Client(server.url).get("/api/v1/health").status == 200
        replies = burst(
            [
                setup_request(first.url, tokens[0], "root-a"),
                setup_request(second.url, tokens[1], "root-b"),
            ]
        )
        assert sorted(reply.status for reply in replies) == [201, 403], replies
        # Each server keeps its own secret here, so the winner's token is read where it was made.
        won = next(n for n, reply in enumerate(replies) if reply.status == 201)
        winner = replies[won].json()
        assert usernames((first, second)[won].url, winner["token"]) == [winner["user"]["username"]]
        assert pg_cluster.psql("SELECT count(*) FROM users", url.rsplit("/", 1)[1]) == [(1,)]
    finally:
        assert first.terminate() == 0
        if second.process is not None:
            assert second.terminate() == 0


def test_a_lab_whose_users_are_all_gone_can_be_set_up_again(tmp_path: Path) -> None:
    """The marker an earlier first admin left does not block the setup of an empty lab."""
    database = tmp_path / "lab.db"
    server = ServerProcess(write_config(tmp_path, f"sqlite+aiosqlite:///{database}"))
    server.start()
    try:
        assert setup_request(server.url, setup_token(server), "root-old")().status == 201
    finally:
        assert server.terminate() == 0
    with sqlite3.connect(database) as db:
        db.execute("DELETE FROM sessions")
        db.execute("DELETE FROM users")
    server.start()
    try:
        token = wait_for(lambda: SETUP_LINE.search(server.log()), 10, "a new setup line").group(2)
        assert setup_request(server.url, token, "root-new")().status == 201
    finally:
        assert server.terminate() == 0
