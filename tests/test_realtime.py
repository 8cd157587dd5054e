"""The WebSocket endpoint with real clients: handshake, protocol, channels, presence, lifecycle."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys

import pytest

from tests.realtime import closed_with, connect, handshake_status, receive, receive_until, request
from tests.servers import Lab, ServerProcess, write_config

TICKET_TTL = 2
LAB_CONFIG = {
    "websocket": {"ticket_ttl_seconds": TICKET_TTL, "outbound_queue_limit": 20},
    # The slow-client test needs events big and many enough to back up a socket's buffers; the
    # publish limits themselves are tested in test_event_limits.py.
    "realtime": {"max_event_bytes": 256 * 1024, "publish_rate_per_minute": 10_000},
}


def ticket_for(client) -> str:  # type: ignore[no-untyped-def]
    reply = client.post("/api/v1/auth/ws-ticket")
    assert reply.status == 201 and reply.json()["expires_in"] == TICKET_TTL
    return reply.json()["ticket"]


def publish(lab: Lab, channel: str, event_type: str, payload: dict, client=None):  # type: ignore[no-untyped-def]
    return (client or lab.admin).post(
        "/api/v1/events", {"channel": channel, "event_type": event_type, "payload": payload}
    )


@pytest.mark.gen_test(timeout=30)
async def test_ticket_works_once_and_expires(lab: Lab) -> None:
    user = lab.create_user()
    client, _ = lab.login(user["username"])
    ticket = ticket_for(client)
    socket = await connect(lab.url, ticket=ticket)
    reply = await request(socket, {"action": "ping"})
    assert reply == {"action": "pong"}
    socket.close()
    assert await handshake_status(lab.url, ticket=ticket) == 401
    stale = ticket_for(client)
    await asyncio.sleep(TICKET_TTL + 0.3)  # the behaviour under test is the ticket's lifetime
    assert await handshake_status(lab.url, ticket=stale) == 401


@pytest.mark.gen_test(timeout=30)
async def test_missing_or_invalid_credentials_and_foreign_origin_fail_the_handshake(lab: Lab) -> None:
    assert await handshake_status(lab.url) == 401
    assert await handshake_status(lab.url, token="not.a.jwt") == 401
    assert await handshake_status(lab.url, ticket="made-up-ticket") == 401
    user = lab.create_user()
    browser, _ = lab.login_cookie(user["username"])
    cookies = {"synthorg_session": browser.cookies["synthorg_session"]}
    assert await handshake_status(lab.url, cookies=cookies, origin="https://evil.example") == 403
    same_origin = lab.url.rstrip("/")
    socket = await connect(lab.url, cookies=cookies, origin=same_origin)
    assert await request(socket, {"action": "ping"}) == {"action": "pong"}
    socket.close()


@pytest.mark.gen_test(timeout=30)
async def test_subscribe_reply_lists_granted_sorted_and_denied(lab: Lab) -> None:
    observer = lab.create_user("observer")
    other = lab.create_user("member")
    _, body = lab.login(observer["username"])
    socket = await connect(lab.url, token=body["token"])
    reply = await request(
        socket,
        {
            "action": "subscribe",
            "channels": ["system", "lab", "budget", f"user:{other['id']}", "nope", "presence"],
        },
    )
    assert reply["action"] == "subscribed"
    assert reply["channels"] == sorted(["lab", "presence", "system", f"user:{observer['id']}"])
    assert reply["denied"] == sorted(["budget", f"user:{other['id']}", "nope"])
    left = await request(socket, {"action": "unsubscribe", "channels": ["lab", f"user:{observer['id']}"]})
    assert left == {
        "action": "unsubscribed",
        "channels": sorted(["presence", "system", f"user:{observer['id']}"]),
    }
    socket.close()
    manager = lab.login(lab.create_user("manager")["username"])[1]
    socket = await connect(lab.url, token=manager["token"])
    assert "budget" in (await request(socket, {"action": "subscribe", "channels": ["budget"]}))["channels"]
    socket.close()


@pytest.mark.gen_test(timeout=30)
async def test_every_malformed_message_gets_its_own_error_and_the_socket_stays_usable(lab: Lab) -> None:
    _, body = lab.login(lab.create_user()["username"])
    socket = await connect(lab.url, token=body["token"])
    cases = [
        ("{not json", "invalid_json"),
        ("[1, 2]", "not_an_object"),
        (json.dumps({"action": "dance"}), "unknown_action"),
        (json.dumps({"action": "subscribe", "channels": "lab"}), "invalid_channels"),
        (json.dumps({"action": "subscribe", "channels": []}), "invalid_channels"),
        (
            json.dumps(
                {"action": "subscribe", "channels": ["lab"], "filters": {str(i): i for i in range(11)}}
            ),
            "invalid_filters",
        ),
        (
            json.dumps({"action": "subscribe", "channels": ["lab"], "filters": {"k": "v" * 257}}),
            "invalid_filters",
        ),
        (
            json.dumps({"action": "subscribe", "channels": ["lab"], "filters": {"k": {"nested": 1}}}),
            "invalid_filters",
        ),
        (json.dumps({"action": "ping", "pad": "x" * 5000}), "message_too_large"),
    ]
    for text, code in cases:
        reply = await request(socket, text)
        assert reply["action"] == "error" and reply["code"] == code, (text[:40], reply)
        assert reply["error"]
    assert await request(socket, {"action": "ping"}) == {"action": "pong"}
    socket.close()


@pytest.mark.gen_test(timeout=30)
async def test_lab_events_reach_subscribers_only_and_filters_apply(lab: Lab) -> None:
    one = lab.login(lab.create_user()["username"])[1]
    two = lab.login(lab.create_user()["username"])[1]
    subscriber = await connect(lab.url, token=one["token"])
    filtered = await connect(lab.url, token=two["token"])
    bystander = await connect(lab.url, token=two["token"])
    await request(subscriber, {"action": "subscribe", "channels": ["lab"]})
    await request(
        filtered, {"action": "subscribe", "channels": ["lab"], "filters": {"kind": "run", "gpu": 2}}
    )
    assert publish(lab, "lab", "run.started", {"kind": "run", "gpu": 1}).status == 202
    assert publish(lab, "lab", "run.started", {"kind": "run", "gpu": 2}).status == 202
    first = await receive(subscriber)
    second = await receive(subscriber)
    assert first["event_type"] == "run.started" and first["channel"] == "lab" and first["payload"]["gpu"] == 1
    # Ids are positions in the lab's event log: increasing on a channel, with gaps where other
    # messages (presence, other channels) came between.
    assert second["id"] > first["id"] and first["timestamp"].endswith("Z")
    only = await receive(filtered)
    assert only["payload"] == {"kind": "run", "gpu": 2}
    assert await request(bystander, {"action": "ping"}) == {"action": "pong"}  # it received no event first
    for socket in (subscriber, filtered, bystander):
        socket.close()


@pytest.mark.gen_test(timeout=30)
async def test_user_channel_reaches_every_tab_of_that_user_only(lab: Lab) -> None:
    target = lab.create_user()
    other = lab.create_user()
    tabs = [await connect(lab.url, token=lab.login(target["username"])[1]["token"]) for _ in range(2)]
    stranger = await connect(lab.url, token=lab.login(other["username"])[1]["token"])
    assert publish(lab, f"user:{target['id']}", "note", {"text": "hello"}).status == 202
    for tab in tabs:
        event = await receive(tab)
        assert event["channel"] == f"user:{target['id']}" and event["payload"] == {"text": "hello"}
    assert await request(stranger, {"action": "ping"}) == {"action": "pong"}
    member = lab.login(other["username"])[0]
    assert publish(lab, f"user:{target['id']}", "note", {}, client=member).status == 403
    assert publish(lab, "lab", "x", {}, client=member).status == 403
    assert publish(lab, "elsewhere", "x", {}).status == 422
    for socket in (*tabs, stranger):
        socket.close()


@pytest.mark.gen_test(timeout=30)
async def test_presence_online_once_and_offline_once(lab: Lab) -> None:
    watcher = await connect(lab.url, token=lab.admin.token)
    await request(watcher, {"action": "subscribe", "channels": ["presence"]})
    user = lab.create_user()
    _, body = lab.login(user["username"])
    tabs = [await connect(lab.url, token=body["token"]) for _ in range(2)]
    about = lambda m: m.get("payload", {}).get("user_id") == user["id"]  # noqa: E731
    online = await receive_until(watcher, about)
    assert (online["event_type"], online["payload"]["connections"]) == ("presence.online", 1)
    second = await receive_until(watcher, about)
    assert (second["event_type"], second["payload"]["connections"]) == ("presence.updated", 2)
    listed = {p["user_id"]: p for p in lab.admin.get("/api/v1/presence").json()}
    assert listed[user["id"]]["connections"] == 2 and listed[user["id"]]["username"] == user["username"]
    tabs[0].close()
    one_left = await receive_until(watcher, about)
    assert (one_left["event_type"], one_left["payload"]["connections"]) == ("presence.updated", 1)
    tabs[1].close()
    offline = await receive_until(watcher, about)
    assert offline["event_type"] == "presence.offline"  # no second online, no offline after tab one
    assert user["id"] not in {p["user_id"] for p in lab.admin.get("/api/v1/presence").json()}
    watcher.close()


@pytest.mark.gen_test(timeout=30)
async def test_logout_closes_that_sessions_sockets_with_4001_and_spares_the_others(lab: Lab) -> None:
    user = lab.create_user()
    leaving, leaving_body = lab.login(user["username"])
    _, staying_body = lab.login(user["username"])
    doomed = await connect(lab.url, token=leaving_body["token"])
    survivor = await connect(lab.url, token=staying_body["token"])
    started = asyncio.get_running_loop().time()
    assert leaving.post("/api/v1/auth/logout").status == 204
    assert await closed_with(doomed, timeout=1.0) == 4001
    assert asyncio.get_running_loop().time() - started < 1.0
    assert await request(survivor, {"action": "ping"}) == {"action": "pong"}
    assert lab.admin.patch(f"/api/v1/users/{user['id']}", {"disabled": True}).status == 200
    assert await closed_with(survivor, timeout=1.0) == 4001


@pytest.mark.gen_test(timeout=30)
async def test_token_bound_ticket_socket_closes_when_the_token_is_revoked(lab: Lab) -> None:
    client, _ = lab.login(lab.create_user()["username"])
    created = client.post("/api/v1/tokens", {"name": "socket"}).json()
    token_client = lab.client(token=created["token"], scheme="token")
    socket = await connect(lab.url, ticket=ticket_for(token_client))
    assert await request(socket, {"action": "ping"}) == {"action": "pong"}
    assert client.delete(f"/api/v1/tokens/{created['id']}").status == 204
    assert await closed_with(socket, timeout=1.0) == 4001


@pytest.mark.gen_test(timeout=30)
async def test_the_21st_connection_of_a_user_is_closed_with_4008(lab: Lab) -> None:
    _, body = lab.login(lab.create_user()["username"])
    sockets = [await connect(lab.url, token=body["token"]) for _ in range(20)]
    extra = await connect(lab.url, token=body["token"])
    assert await closed_with(extra) == 4008
    assert await request(sockets[-1], {"action": "ping"}) == {"action": "pong"}
    for socket in sockets:
        socket.close()


@pytest.mark.gen_test(timeout=60)
async def test_a_client_that_stops_reading_is_closed_with_4009_while_others_keep_receiving(lab: Lab) -> None:
    stalled = await connect(lab.url, token=lab.login(lab.create_user()["username"])[1]["token"])
    healthy = await connect(lab.url, token=lab.login(lab.create_user()["username"])[1]["token"])
    for socket in (stalled, healthy):
        await request(socket, {"action": "subscribe", "channels": ["lab"]})
    # Tornado's client stops reading from the socket once one message waits unread, so the
    # server's writes back up: kernel buffers first, then its own outbound queue.
    blob = "x" * 200_000
    received = 0
    for n in range(200):
        assert publish(lab, "lab", "bulk", {"n": n, "blob": blob}).status == 202
        while True:  # the healthy client keeps up
            message = await receive(healthy)
            if message.get("event_type") == "bulk":
                received += 1
                break
        if stalled.protocol is None or stalled.close_code is not None:
            break
    code = await closed_with(stalled, timeout=10)
    assert code == 4009
    assert received == n + 1
    assert await request(healthy, {"action": "ping"}) == {"action": "pong"}
    healthy.close()


@pytest.mark.gen_test(timeout=30)
async def test_setting_changes_arrive_masked_and_budget_changes_on_budget(lab: Lab) -> None:
    socket = await connect(lab.url, token=lab.admin.token)
    await request(socket, {"action": "subscribe", "channels": ["settings", "budget"]})
    secret = "very-secret-webhook"
    lab.admin.put(
        "/api/v1/settings/notifications/webhook_secret", {"value": secret}, headers={"If-Match": "*"}
    )
    event = await receive_until(socket, lambda m: m.get("channel") == "settings")
    assert event["event_type"] == "setting.updated" and event["payload"]["value"] == "********"
    assert secret not in json.dumps(event)
    lab.admin.put("/api/v1/settings/budget/monthly_limit", {"value": 1234.5}, headers={"If-Match": "*"})
    budget = await receive_until(socket, lambda m: m.get("channel") == "budget")
    assert budget["event_type"] == "budget.updated" and budget["payload"] == {"monthly_limit": 1234.5}
    socket.close()


@pytest.mark.gen_test(timeout=30)
async def test_lowering_a_role_drops_forbidden_channels(lab: Lab) -> None:
    manager = lab.create_user("manager")
    socket = await connect(lab.url, token=lab.login(manager["username"])[1]["token"])
    assert (
        "budget"
        in (await request(socket, {"action": "subscribe", "channels": ["budget", "lab"]}))["channels"]
    )
    assert lab.admin.patch(f"/api/v1/users/{manager['id']}", {"role": "member"}).status == 200
    notice = await receive_until(socket, lambda m: m.get("action") == "unsubscribed")
    assert notice["reason"] == "role_changed"
    assert notice["channels"] == sorted(["lab", f"user:{manager['id']}"])
    socket.close()


@pytest.mark.gen_test(timeout=30)
async def test_revocation_from_the_command_line_closes_the_socket(lab: Lab) -> None:
    user = lab.create_user()
    socket = await connect(lab.url, token=lab.login(user["username"])[1]["token"])
    result = await asyncio.get_running_loop().run_in_executor(
        None,
        lambda: subprocess.run(
            [
                sys.executable,
                "-m",
                "synthorg_tornado",
                "sessions",
                "revoke",
                "--user",
                user["username"],
                "--config",
                str(lab.server.config_path),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        ),
    )
    assert result.returncode == 0, result.stderr
    assert await closed_with(socket, timeout=2.0) == 4001


@pytest.mark.gen_test(timeout=60)
async def test_sigterm_closes_every_socket_with_1001_and_exits_0(sqlite_url: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    server = ServerProcess(write_config(tmp_path, sqlite_url)).start()
    try:
        fresh = Lab(server)
        user = fresh.create_user()
        sockets = [
            await connect(fresh.url, token=fresh.login(user["username"])[1]["token"]) for _ in range(3)
        ]
        sockets.append(await connect(fresh.url, token=fresh.admin.token))
        server.process.send_signal(signal.SIGTERM)
        codes = [await closed_with(socket, timeout=10) for socket in sockets]
        assert codes == [1001] * 4
        exit_code = await asyncio.get_running_loop().run_in_executor(None, server.terminate)
        assert exit_code == 0
    finally:
        server.kill()


async def miss_events(lab: Lab, count: int):  # type: ignore[no-untyped-def]
    """A socket that saw one `lab` event and went away, `count` events published meanwhile, and
    a new socket subscribing with `since`: its reply."""
    socket = await connect(lab.url, token=lab.admin.token)
    await request(socket, {"action": "subscribe", "channels": ["lab"]})
    assert publish(lab, "lab", "gap.before", {}).status == 202
    seen = (await receive_until(socket, lambda m: m.get("event_type") == "gap.before"))["id"]
    socket.close()
    for n in range(count):
        assert publish(lab, "lab", "gap.missed", {"n": n}).status == 202
    back = await connect(lab.url, token=lab.admin.token)
    reply = await request(back, {"action": "subscribe", "channels": ["lab"], "since": {"lab": seen}})
    return back, reply


@pytest.mark.gen_test(timeout=30)
async def test_resume_with_since_replays_what_was_missed_on_either_backend(lab: Lab) -> None:
    back, reply = await miss_events(lab, 3)
    assert reply["recovered"] is True and reply["channels"] == [
        "lab",
        f"user:{lab.admin.get('/api/v1/me').json()['id']}",
    ]
    missed = [await receive(back) for _ in range(3)]
    assert [(m["event_type"], m["payload"]["n"]) for m in missed if m] == [
        ("gap.missed", n) for n in range(3)
    ]
    assert await request(back, {"action": "ping"}) == {"action": "pong"}  # and nothing more
    back.close()


@pytest.mark.gen_test(timeout=30)
async def test_hostile_since_values_get_invalid_since_and_the_socket_stays_open(lab: Lab) -> None:
    socket = await connect(lab.url, token=lab.admin.token)
    for since in ([1], "7", {"lab": True}, {"lab": -1}, {"lab": 2**63}, {"lab": 1.5}, {"system": 1}, {}):
        reply = await request(socket, {"action": "subscribe", "channels": ["lab"], "since": since})
        assert reply == {"action": "error", "code": "invalid_since", "error": reply["error"]}, since
    assert await request(socket, {"action": "ping"}) == {"action": "pong"}
    socket.close()


@pytest.mark.gen_test(timeout=30)
async def test_a_gap_longer_than_the_socket_can_queue_replays_its_newest_and_says_not_recovered(
    lab: Lab,
) -> None:
    """outbound_queue_limit is 20 here: a 30-event gap must not trip the slow-client close."""
    back, reply = await miss_events(lab, 30)
    assert reply["recovered"] is False
    replayed = [await receive(back) for _ in range(10)]
    assert [m["payload"]["n"] for m in replayed if m] == list(range(20, 30))  # the newest half-queue
    assert await request(back, {"action": "ping"}) == {"action": "pong"}  # still open
    back.close()
