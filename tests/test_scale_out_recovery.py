"""What the bus log survives: commits out of order, lost listener connections, pruned gaps,
reconnecting sockets, and a process that dies without a word."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import create_engine

from synthorg_tornado.clock import utcnow
from synthorg_tornado.realtime.pg_bus import _STAGE, BUS_LOCK_KEY, NOTIFY_CHANNEL
from tests.realtime import connect, receive, receive_until, request
from tests.scale_out import TwoProcesses, two_processes
from tests.servers import PostgresCluster, wait_for

RETENTION = 10
SECTIONS = {"auth": {"cleanup_interval_seconds": 1}, "realtime": {"event_retention_seconds": RETENTION}}


@pytest.fixture(scope="module")
def two(pg_cluster: PostgresCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TwoProcesses]:
    with two_processes(pg_cluster, tmp_path_factory.mktemp("two"), "recovery", **SECTIONS) as lab2:
        yield lab2


def publish(client, event_type: str, payload: dict):  # type: ignore[no-untyped-def]
    reply = client.post("/api/v1/events", {"channel": "lab", "event_type": event_type, "payload": payload})
    assert reply.status == 202, reply
    return reply


def stage_event(connection, tag: str) -> int:  # type: ignore[no-untyped-def]
    """What the server's own staging does, in a transaction the test holds open."""
    body = {"channel": "lab", "event_type": "gap", "payload": {"tag": tag}}
    parameters = {
        "lock_key": BUS_LOCK_KEY,
        "topic": "event.published",
        "payload": json.dumps(body),
        "origin": "test",
        "created_at": utcnow(),
        "channel": NOTIFY_CHANNEL,
    }
    return connection.execute(_STAGE, parameters).one().id


@pytest.mark.gen_test(timeout=60)
async def test_two_writers_out_of_order_are_each_applied_once_in_id_order(two: TwoProcesses) -> None:
    """The first writer takes id n and commits late; the second cannot even take n+1 until the
    first has committed, so no reader can move past n before n is visible."""
    watcher = await connect(two.b.url, token=two.a.admin.token)
    await request(watcher, {"action": "subscribe", "channels": ["lab"]})
    engine = create_engine(two.url)
    try:
        with engine.connect() as first, ThreadPoolExecutor(1) as pool:
            first.begin()
            n = stage_event(first, "first")

            def second_writer() -> int:
                with engine.connect() as second, second.begin():
                    return stage_event(second, "second")

            second = pool.submit(second_writer)
            wait_for(
                lambda: (
                    two.sql("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
                    == [(1,)]
                ),
                5.0,
                "the second writer to wait for the bus lock",
            )
            assert not second.done()
            first.commit()
            assert second.result(timeout=5) == n + 1
    finally:
        engine.dispose()
    events = [await receive_until(watcher, lambda m: m.get("event_type") == "gap") for _ in range(2)]
    assert [(e["id"], e["payload"]["tag"]) for e in events] == [(n, "first"), (n + 1, "second")]
    assert await request(watcher, {"action": "ping"}) == {"action": "pong"}  # nothing applied twice
    watcher.close()


@pytest.mark.gen_test(timeout=60)
async def test_a_socket_that_reconnects_with_since_gets_exactly_what_it_missed(two: TwoProcesses) -> None:
    socket = await connect(two.a.url, token=two.a.admin.token)
    await request(socket, {"action": "subscribe", "channels": ["lab"]})
    publish(two.a.admin, "before", {"n": -1})
    last_seen = (await receive_until(socket, lambda m: m.get("event_type") == "before"))["id"]
    socket.close()
    admin_b = two.on_b(token=two.a.admin.token)
    for n in range(5):
        publish(admin_b, "missed", {"n": n})
    back = await connect(two.a.url, token=two.a.admin.token)
    await back.write_message(
        json.dumps({"action": "subscribe", "channels": ["lab"], "since": {"lab": last_seen}})
    )
    reply = await receive(back)
    assert reply is not None and reply["action"] == "subscribed" and reply["recovered"] is True
    missed = [await receive(back) for _ in range(5)]
    assert [m["payload"]["n"] for m in missed if m] == [0, 1, 2, 3, 4]
    assert all(m["event_type"] == "missed" and m["id"] > last_seen for m in missed if m)
    publish(two.a.admin, "live", {})
    live = await receive(back)
    assert live is not None and live["event_type"] == "live"  # then live ones, nothing twice
    back.close()


@pytest.mark.gen_test(timeout=60)
async def test_since_older_than_the_retention_window_says_not_recovered(two: TwoProcesses) -> None:
    publish(two.a.admin, "old", {})
    oldest = two.sql("SELECT max(id) FROM bus_events")[0][0]
    publish(two.a.admin, "newer", {})
    wait_for(
        lambda: two.sql("SELECT min(id) FROM bus_events")[0][0] > oldest + 1,
        RETENTION + 10,
        "the cleanup job to prune past the old event",
        interval=0.5,
    )
    socket = await connect(two.a.url, token=two.a.admin.token)
    reply = await request(socket, {"action": "subscribe", "channels": ["lab"], "since": {"lab": oldest}})
    assert reply["action"] == "subscribed" and reply["recovered"] is False
    bad = await request(socket, {"action": "subscribe", "channels": ["lab"], "since": {"lab": -1}})
    assert bad["code"] == "invalid_since"
    socket.close()


def test_a_revocation_made_while_b_has_no_listener_is_enforced_once_b_reconnects(two: TwoProcesses) -> None:
    user = two.a.create_user()
    on_a, body = two.a.login(user["username"])
    on_b = two.on_b(token=body["token"])
    assert on_b.get("/api/v1/me").status == 200  # cached on B
    listener = two.listener_backend(two.b)
    assert two.b.process is not None
    # B is held still, so it cannot reconnect before the revocation commits.
    os.kill(two.b.process.pid, signal.SIGSTOP)
    try:
        assert two.sql(f"SELECT pg_terminate_backend({listener})") == [(True,)]
        assert on_a.post("/api/v1/auth/logout").status == 204
    finally:
        os.kill(two.b.process.pid, signal.SIGCONT)
    two.b.wait_for_log(r"bus listener reconnected after [\d.]+ s", timeout=5.0)
    reconnected = time.monotonic()
    wait_for(lambda: on_b.get("/api/v1/me").status == 401, 1.0, "B to refuse the revoked session")
    assert time.monotonic() - reconnected < 1.0
    log = two.b.log()
    assert log.count("bus listener connection lost") == 1 and log.count("bus listener reconnected") == 1
    assert two.listener_backend(two.b) != listener


def test_after_a_pruned_gap_b_resyncs_and_says_so(two: TwoProcesses) -> None:
    user = two.a.create_user()
    on_a, body = two.a.login(user["username"])
    on_b = two.on_b(token=body["token"])
    assert on_b.get("/api/v1/me").status == 200
    listener = two.listener_backend(two.b)
    assert two.b.process is not None
    os.kill(two.b.process.pid, signal.SIGSTOP)
    try:
        two.sql(f"SELECT pg_terminate_backend({listener})")
        assert on_a.post("/api/v1/auth/logout").status == 204
        revoked_at = two.sql("SELECT max(id) FROM bus_events")[0][0]
        publish(two.a.admin, "later", {})
        wait_for(
            lambda: two.sql("SELECT min(id) FROM bus_events")[0][0] > revoked_at,
            RETENTION + 10,
            "the revocation's message to be pruned",
            interval=0.5,
        )
    finally:
        os.kill(two.b.process.pid, signal.SIGCONT)
    two.b.wait_for_log("were re-read from the database", timeout=5.0)
    wait_for(lambda: on_b.get("/api/v1/me").status == 401, 2.0, "B to refuse the revoked session")


@pytest.fixture
def doomed(pg_cluster: PostgresCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TwoProcesses]:
    with two_processes(pg_cluster, tmp_path_factory.mktemp("doomed"), "doomed") as lab2:
        yield lab2


@pytest.mark.gen_test(timeout=90)
async def test_users_of_a_killed_process_drop_out_of_presence_within_35_s(doomed: TwoProcesses) -> None:
    watcher = await connect(doomed.a.url, token=doomed.a.admin.token)
    await request(watcher, {"action": "subscribe", "channels": ["presence"]})
    user = doomed.a.create_user()
    _, body = doomed.a.login(user["username"])
    await connect(doomed.b.url, token=body["token"])
    online = await receive_until(watcher, lambda m: m.get("payload", {}).get("user_id") == user["id"])
    assert online["event_type"] == "presence.online"
    assert doomed.b.process is not None
    doomed.b.process.kill()
    doomed.b.process.wait(10)
    killed = time.monotonic()
    offline = await receive_until(
        watcher, lambda m: m.get("payload", {}).get("user_id") == user["id"], timeout=40.0
    )
    assert offline["event_type"] == "presence.offline"
    assert time.monotonic() - killed < 35.0
    assert user["id"] not in {p["user_id"] for p in doomed.a.admin.get("/api/v1/presence").json()}
    watcher.close()
