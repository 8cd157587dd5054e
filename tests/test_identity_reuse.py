"""No identity is ever reused: a deleted user's id never goes to another account, and nothing a
process held about the deleted user (sessions, API tokens, audit rows, private events, presence)
is ever read as the next account. SQLite is where ids were recycled; PostgreSQL must hold too."""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest

from synthorg_tornado.clock import utcnow
from tests.realtime import closed_with, connect, receive_until, request
from tests.servers import USER_PASSWORD, Lab, cli, wait_for


def publish(lab: Lab, channel: str, event_type: str, payload: dict[str, Any]) -> None:
    body = {"channel": channel, "event_type": event_type, "payload": payload}
    assert lab.admin.post("/api/v1/events", body).status == 202


def delete(lab: Lab, user: dict[str, Any]) -> None:
    assert lab.admin.delete(f"/api/v1/users/{user['id']}").status == 204


def member_with_token(lab: Lab) -> tuple[dict[str, Any], str, Any]:
    """A new (so the newest) member, their API token, and a client using it."""
    user = lab.create_user()
    session, _ = lab.login(user["username"])
    token = session.post("/api/v1/tokens", {"name": "script"}).json()["token"]
    by_token = lab.client(token=token, scheme="token")
    assert by_token.get("/api/v1/me").json()["id"] == user["id"]  # cached by the server now
    return user, token, by_token


def test_deleting_the_newest_user_then_creating_one_never_reuses_its_id(lab: Lab) -> None:
    lab.create_user()
    newest = lab.create_user()
    delete(lab, newest)
    after = lab.create_user()
    assert int(after["id"]) > int(newest["id"])


def test_a_deleted_users_api_token_stays_401_after_the_next_user_is_created(lab: Lab) -> None:
    user, _token, by_token = member_with_token(lab)
    delete(lab, user)
    assert by_token.get("/api/v1/me").status == 401
    successor = lab.create_user()
    lab.login(successor["username"])  # the server knows the new account
    refused = by_token.get("/api/v1/me")
    assert refused.status == 401, f"the deleted user's token answered as {refused.body!r}"
    assert by_token.get("/api/v1/tokens").status == 401


def test_a_deleted_users_session_stays_401_after_the_next_user_is_created(lab: Lab) -> None:
    user = lab.create_user()
    session, _ = lab.login(user["username"])
    delete(lab, user)
    successor = lab.create_user()
    lab.login(successor["username"])
    assert session.get("/api/v1/me").status == 401


def test_user_delete_and_user_add_on_the_command_line_never_hand_over_a_token(lab: Lab) -> None:
    user, _token, by_token = member_with_token(lab)
    deleted = cli(lab, "user", "delete", user["username"])
    assert deleted.returncode == 0, deleted.stderr
    wait_for(lambda: by_token.get("/api/v1/me").status == 401, 5.0, "the server to refuse the token")
    added = cli(lab, "user", "add", "successor-cli", "--password-stdin", stdin=USER_PASSWORD + "\n")
    assert added.returncode == 0, added.stderr
    lab.login("successor-cli")
    refused = by_token.get("/api/v1/me")
    assert refused.status == 401, f"the deleted user's token answered as {refused.body!r}"
    listed = lab.admin.get("/api/v1/users").json()
    successor = next(u for u in listed if u["username"] == "successor-cli")
    assert int(successor["id"]) > int(user["id"])


def test_a_cached_token_or_session_never_admits_another_account_given_the_same_id(
    lab: Lab, database_url: str
) -> None:
    """The caches' own guard, should an id ever be handed out twice: forced here by replacing
    an account, in one transaction behind the server's back, with another of the same id."""
    if not database_url.startswith("sqlite"):
        pytest.skip("forced through SQLite's file; PostgreSQL labs announce every change on the bus")
    user, _token, by_token = member_with_token(lab)
    session, _ = lab.login(user["username"])
    assert session.get("/api/v1/me").status == 200  # both cached by the server
    stamp = utcnow().strftime("%Y-%m-%d %H:%M:%S.%f")
    with sqlite3.connect(database_url.split("///", 1)[1]) as db:
        db.execute("PRAGMA foreign_keys=ON")
        db.execute("DELETE FROM users WHERE id = ?", (int(user["id"]),))
        db.execute(
            "INSERT INTO users (id, username, username_key, display_name, role, disabled, created_at,"
            " updated_at) VALUES (?, 'impostor', 'impostor', '', 'admin', 0, ?, ?)",
            (int(user["id"]), stamp, stamp),
        )
    seen: list[tuple[int, str]] = []

    def both_refused() -> bool:
        replies = [by_token.get("/api/v1/me"), session.get("/api/v1/me")]
        seen.extend((r.status, r.json().get("username", "")) for r in replies if r.status == 200)
        return all(r.status == 401 for r in replies)

    wait_for(both_refused, 5.0, "the server to refuse the replaced account's credentials")
    assert "impostor" not in {name for _status, name in seen}, seen


def test_a_deleted_users_audit_rows_never_appear_under_another_account(lab: Lab) -> None:
    user, _token, _ = member_with_token(lab)  # a login and a token creation, both audited
    delete(lab, user)
    successor = lab.create_user()
    lab.login(successor["username"])
    items = lab.admin.get("/api/v1/audit?limit=500").json()["items"]
    theirs = [item for item in items if item["actor_id"] == user["id"]]
    assert theirs and {item["actor"] for item in theirs} == {user["username"]}
    assert {item["actor"] for item in items if item["actor_id"] == successor["id"]} == {successor["username"]}


@pytest.mark.gen_test(timeout=30)
async def test_a_new_account_is_never_replayed_a_deleted_users_private_events(lab: Lab) -> None:
    user = lab.create_user()
    publish(lab, f"user:{user['id']}", "private.note", {"secret": "for the deleted user only"})
    delete(lab, user)
    successor = lab.create_user()
    _, body = lab.login(successor["username"])
    socket = await connect(lab.url, token=body["token"])
    own = f"user:{successor['id']}"
    reply = await request(socket, {"action": "subscribe", "channels": [own], "since": {own: 0}})
    assert reply["action"] == "subscribed", reply
    publish(lab, own, "private.mine", {})
    first = await receive_until(socket, lambda m: "event_type" in m)
    assert first["event_type"] == "private.mine", f"replayed another account's event: {first}"
    socket.close()


def test_a_deleted_users_retained_events_are_dropped_from_the_log(
    lab: Lab, database_url: str, request: pytest.FixtureRequest
) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite keeps its event log in memory; the other tests cover what it replays")
    user = lab.create_user()
    channel = f"user:{user['id']}"
    publish(lab, channel, "private.note", {"n": 1})
    publish(lab, "lab", "kept", {})
    cluster = request.getfixturevalue("pg_cluster")
    database = database_url.rsplit("/", 1)[1]
    count = f"SELECT count(*) FROM bus_events WHERE payload::json ->> 'channel' = '{channel}'"  # noqa: S608
    assert cluster.psql(count, database=database) == [(1,)]
    delete(lab, user)
    wait_for(lambda: cluster.psql(count, database=database) == [(0,)], 5.0, "the events to be dropped")


@pytest.mark.gen_test(timeout=30)
async def test_presence_forgets_a_deleted_user_and_never_shows_its_id_again(lab: Lab) -> None:
    user = lab.create_user()
    _, body = lab.login(user["username"])
    socket = await connect(lab.url, token=body["token"])
    assert await request(socket, {"action": "ping"}) == {"action": "pong"}

    def listed() -> set[tuple[str, str]]:
        return {(p["user_id"], p["username"]) for p in lab.admin.get("/api/v1/presence").json()}

    assert (user["id"], user["username"]) in listed()
    delete(lab, user)
    assert await closed_with(socket, timeout=2.0) == 4001
    successor = lab.create_user()
    _, successor_body = lab.login(successor["username"])
    other = await connect(lab.url, token=successor_body["token"])
    assert await request(other, {"action": "ping"}) == {"action": "pong"}
    present = listed()
    assert (successor["id"], successor["username"]) in present
    assert not [entry for entry in present if user["id"] in entry or user["username"] in entry], present
    other.close()
