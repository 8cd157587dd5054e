"""Two processes on one PostgreSQL behave as one lab: revocations, users, settings, events,
tickets and presence all cross between them through the bus log."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest

from synthorg_tornado.clock import parse_isoformat
from tests.realtime import closed_with, connect, receive_until, request
from tests.scale_out import TwoProcesses, two_processes
from tests.servers import USER_PASSWORD, PostgresCluster, wait_for

SECTIONS = {"auth": {"cleanup_interval_seconds": 1}}


@pytest.fixture(scope="module")
def two(pg_cluster: PostgresCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TwoProcesses]:
    with two_processes(pg_cluster, tmp_path_factory.mktemp("two"), "scale_out", **SECTIONS) as lab2:
        yield lab2


def publish(client, channel: str, event_type: str, payload: dict):  # type: ignore[no-untyped-def]
    return client.post("/api/v1/events", {"channel": channel, "event_type": event_type, "payload": payload})


async def session_on_b(two: TwoProcesses):  # type: ignore[no-untyped-def]
    """A new user logged in on A, whose session B has cached and holds a socket of."""
    user = two.a.create_user()
    _, body = two.a.login(user["username"])
    on_b = two.on_b(token=body["token"])
    assert on_b.get("/api/v1/me").status == 200
    socket = await connect(two.b.url, token=body["token"])
    assert await request(socket, {"action": "ping"}) == {"action": "pong"}
    return user, on_b, socket


def crossing(user_id: str):  # type: ignore[no-untyped-def]
    """A user's presence.online or presence.offline (not the tab counts in between)."""
    return lambda m: m.get("payload", {}).get("user_id") == user_id and m["event_type"] != "presence.updated"


@pytest.mark.gen_test(timeout=60)
async def test_logout_on_a_is_refused_on_b_within_250_ms_and_closes_b_sockets(two: TwoProcesses) -> None:
    user = two.a.create_user()
    on_a, body = two.a.login(user["username"])
    on_b = two.on_b(token=body["token"])
    known = on_b.get("/api/v1/me")  # a session created on A, unknown to B's cache until now
    assert known.status == 200 and known.json()["username"] == user["username"], known
    socket = await connect(two.b.url, token=body["token"])
    assert await request(socket, {"action": "ping"}) == {"action": "pong"}
    started = time.monotonic()
    assert on_a.post("/api/v1/auth/logout").status == 204
    refused = wait_for(lambda: (r := on_b.get("/api/v1/me")).status == 401 and r, 5.0, "B to refuse")
    delay = time.monotonic() - started
    assert refused.code == 1002
    assert delay < 0.25, f"B refused the session {delay * 1000:.0f} ms after the logout"
    assert await closed_with(socket, timeout=1.0) == 4001


@pytest.mark.gen_test(timeout=60)
async def test_disable_on_a_closes_b_sockets_and_b_refuses_the_user(two: TwoProcesses) -> None:
    user, on_b, socket = await session_on_b(two)
    assert two.a.admin.patch(f"/api/v1/users/{user['id']}", {"disabled": True}).status == 200
    assert await closed_with(socket, timeout=1.0) == 4001
    assert on_b.get("/api/v1/me").status in (401, 403)
    login = two.on_b().post("/api/v1/auth/login", {"username": user["username"], "password": USER_PASSWORD})
    assert login.status == 403


@pytest.mark.gen_test(timeout=60)
async def test_role_lowered_on_a_drops_forbidden_channels_on_b(two: TwoProcesses) -> None:
    manager = two.a.create_user(role="manager")
    _, body = two.a.login(manager["username"])
    socket = await connect(two.b.url, token=body["token"])
    subscribed = await request(socket, {"action": "subscribe", "channels": ["budget", "lab"]})
    assert "budget" in subscribed["channels"]
    assert two.a.admin.patch(f"/api/v1/users/{manager['id']}", {"role": "member"}).status == 200
    dropped = await receive_until(socket, lambda m: m.get("action") == "unsubscribed", timeout=2.0)
    assert dropped["reason"] == "role_changed" and "budget" not in dropped["channels"]
    assert "lab" in dropped["channels"]
    assert two.on_b(token=body["token"]).get("/api/v1/me").json()["role"] == "member"
    socket.close()


@pytest.mark.gen_test(timeout=60)
async def test_password_change_on_a_ends_the_sessions_on_b(two: TwoProcesses) -> None:
    user, on_b, socket = await session_on_b(two)
    changed = two.a.admin.patch(f"/api/v1/users/{user['id']}", {"password": "a-new-password-2"})
    assert changed.status == 200
    assert await closed_with(socket, timeout=1.0) == 4001
    assert on_b.get("/api/v1/me").status == 401


@pytest.mark.gen_test(timeout=60)
async def test_api_token_revoked_on_a_is_refused_on_b(two: TwoProcesses) -> None:
    client, _ = two.a.login(two.a.create_user()["username"])
    created = client.post("/api/v1/tokens", {"name": "cross"}).json()
    on_b = two.on_b(token=created["token"], scheme="token")
    assert on_b.get("/api/v1/me").status == 200  # now cached on B
    socket = await connect(two.b.url, token=created["token"], scheme="token")
    assert await request(socket, {"action": "ping"}) == {"action": "pong"}
    assert client.delete(f"/api/v1/tokens/{created['id']}").status == 204
    assert await closed_with(socket, timeout=1.0) == 4001
    assert on_b.get("/api/v1/me").status == 401


@pytest.mark.gen_test(timeout=60)
async def test_setting_written_on_a_is_effective_on_b_and_reaches_b_subscribers(two: TwoProcesses) -> None:
    watcher = await connect(two.b.url, token=two.a.admin.token)
    await request(watcher, {"action": "subscribe", "channels": ["settings"]})
    admin_b = two.on_b(token=two.a.admin.token)
    user = two.a.create_user()
    path = "/api/v1/settings/auth/session_ttl_minutes"
    for minutes in (77, 78):
        written = two.a.admin.put(path, {"value": minutes}, headers={"If-Match": "*"})
        assert written.status == 200
        # B reads the setting at once: before the fix that read hid the change from B's feed.
        seen = admin_b.get(path).json()
        assert seen["value"] == minutes and seen["version"] == written.json()["version"]
        event = await receive_until(watcher, lambda m: m.get("event_type") == "setting.updated", timeout=2.0)
        assert event["payload"]["value"] == minutes and event["payload"]["key"] == "session_ttl_minutes"
        # Effective on B: a session B creates now lives that long.
        login = two.on_b().post(
            "/api/v1/auth/login", {"username": user["username"], "password": USER_PASSWORD}
        )
        assert login.status == 200
        session = login.json()["session"]
        lifetime = parse_isoformat(session["expires_at"]) - parse_isoformat(session["created_at"])
        assert lifetime == timedelta(minutes=minutes)
    watcher.close()


@pytest.mark.gen_test(timeout=60)
async def test_events_cross_both_ways_with_ids_increasing_on_the_channel(two: TwoProcesses) -> None:
    admin_b = two.on_b(token=two.a.admin.token)
    on_a = await connect(two.a.url, token=two.a.admin.token)
    on_b = await connect(two.b.url, token=two.a.admin.token)
    for socket in (on_a, on_b):
        await request(socket, {"action": "subscribe", "channels": ["lab"]})
    for n in range(6):
        sender = two.a.admin if n % 2 else admin_b
        assert publish(sender, "lab", "step", {"n": n}).status == 202
    for socket in (on_a, on_b):
        received = [await receive_until(socket, lambda m: m.get("event_type") == "step") for _ in range(6)]
        assert [m["payload"]["n"] for m in received] == list(range(6))
        ids = [m["id"] for m in received]
        assert ids == sorted(ids) and len(set(ids)) == 6
        socket.close()


@pytest.mark.gen_test(timeout=60)
async def test_a_ticket_from_a_works_once_on_b_even_when_both_redeem_at_once(two: TwoProcesses) -> None:
    client, _ = two.a.login(two.a.create_user()["username"])
    ticket = client.post("/api/v1/auth/ws-ticket").json()["ticket"]
    socket = await connect(two.b.url, ticket=ticket)
    assert await request(socket, {"action": "ping"}) == {"action": "pong"}
    socket.close()
    with pytest.raises(Exception) as refused:
        await connect(two.a.url, ticket=ticket)
    assert getattr(refused.value, "code", None) == 401
    for _ in range(5):
        ticket = client.post("/api/v1/auth/ws-ticket").json()["ticket"]
        outcomes = await asyncio.gather(
            connect(two.a.url, ticket=ticket), connect(two.b.url, ticket=ticket), return_exceptions=True
        )
        opened = [o for o in outcomes if not isinstance(o, BaseException)]
        assert len(opened) == 1, outcomes
        assert getattr(next(o for o in outcomes if isinstance(o, BaseException)), "code", None) == 401
        opened[0].close()


@pytest.mark.gen_test(timeout=60)
async def test_one_online_and_one_offline_for_a_user_with_a_tab_on_each_process(two: TwoProcesses) -> None:
    watchers = [await connect(server.url, token=two.a.admin.token) for server in (two.a.server, two.b)]
    for watcher in watchers:
        await request(watcher, {"action": "subscribe", "channels": ["presence"]})
    user = two.a.create_user()
    _, body = two.a.login(user["username"])
    tab_a = await connect(two.a.url, token=body["token"])
    tab_b = await connect(two.b.url, token=body["token"])
    for watcher in watchers:
        online = await receive_until(watcher, crossing(user["id"]))
        assert online["event_type"] == "presence.online"

    def listed(client) -> dict:  # type: ignore[no-untyped-def]
        return {p["user_id"]: p["connections"] for p in client.get("/api/v1/presence").json()}

    admin_b = two.on_b(token=two.a.admin.token)
    wait_for(lambda: listed(two.a.admin).get(user["id"]) == 2, 2.0, "A to count both tabs")
    wait_for(lambda: listed(admin_b).get(user["id"]) == 2, 2.0, "B to count both tabs")
    assert listed(two.a.admin) == listed(admin_b)
    tab_a.close()
    wait_for(lambda: listed(admin_b).get(user["id"]) == 1, 2.0, "B to see one tab left")
    tab_b.close()
    for watcher in watchers:
        # The next message about this user is the offline: no second online, no early offline.
        offline = await receive_until(watcher, crossing(user["id"]))
        assert offline["event_type"] == "presence.offline"
    wait_for(lambda: user["id"] not in listed(admin_b), 2.0, "B to list the user offline")
    assert user["id"] not in listed(two.a.admin)
    for watcher in watchers:
        assert await request(watcher, {"action": "ping"}) == {"action": "pong"}
        watcher.close()


@pytest.mark.gen_test(timeout=60)
async def test_a_user_deleted_on_a_is_forgotten_by_b_at_once(two: TwoProcesses) -> None:
    user, on_b, socket = await session_on_b(two)
    client, _ = two.a.login(user["username"])
    token = client.post("/api/v1/tokens", {"name": "script"}).json()["token"]
    by_token_b = two.on_b(token=token, scheme="token")
    assert by_token_b.get("/api/v1/me").status == 200  # cached on B
    channel = f"user:{user['id']}"
    assert publish(two.a.admin, channel, "private.note", {}).status == 202
    admin_b = two.on_b(token=two.a.admin.token)
    assert user["id"] in {p["user_id"] for p in admin_b.get("/api/v1/presence").json()}
    assert two.a.admin.delete(f"/api/v1/users/{user['id']}").status == 204

    def refused() -> bool:
        return by_token_b.get("/api/v1/me").status == 401 and on_b.get("/api/v1/me").status == 401

    wait_for(refused, 2.0, "B to refuse the deleted user's token and session")
    assert await closed_with(socket, timeout=1.0) == 4001
    assert user["id"] not in {p["user_id"] for p in admin_b.get("/api/v1/presence").json()}
    retained = f"SELECT count(*) FROM bus_events WHERE payload::json ->> 'channel' = '{channel}'"  # noqa: S608
    wait_for(lambda: two.sql(retained) == [(0,)], 2.0, "the user's retained events to be dropped")


def test_concurrent_setting_writes_on_both_processes_bump_one_version(two: TwoProcesses) -> None:
    admin_b = two.on_b(token=two.a.admin.token)
    path = "/api/v1/settings/ui/banner"
    start = two.a.admin.get(path).json()["version"]

    def write(n: int) -> int:
        client = two.a.admin if n % 2 else admin_b
        return client.put(path, {"value": f"banner {n}"}, headers={"If-Match": "*"}).status

    with ThreadPoolExecutor(8) as pool:
        assert set(pool.map(write, range(40))) == {200}
    final = [client.get(path).json()["version"] for client in (two.a.admin, admin_b)]
    assert final == [start + 40, start + 40]
