"""PostgreSQL stops for a few seconds under two serving processes: both keep what is cached,
refuse writes with 503, and recover on their own, with events flowing both ways again."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.realtime import connect, receive_until, request
from tests.scale_out import TwoProcesses, two_processes
from tests.servers import throwaway_cluster, wait_for


@pytest.fixture(scope="module")
def two(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TwoProcesses]:
    """A cluster of its own: this module stops and restarts it."""
    with (
        throwaway_cluster("synthorg-pg-two-outage-") as cluster,
        two_processes(cluster, Path(tmp_path_factory.mktemp("two")), "outage") as lab2,
    ):
        yield lab2


def publish(client, tag: str):  # type: ignore[no-untyped-def]
    return client.post("/api/v1/events", {"channel": "lab", "event_type": "after", "payload": {"tag": tag}})


@pytest.mark.gen_test(timeout=120)
async def test_both_processes_ride_out_a_database_outage(two: TwoProcesses) -> None:
    user = two.a.create_user()
    on_a, body = two.a.login(user["username"])
    on_b = two.on_b(token=body["token"])
    admin_b = two.on_b(token=two.a.admin.token)
    assert on_b.get("/api/v1/me").status == 200
    sockets = [await connect(url, token=two.a.admin.token) for url in (two.a.url, two.b.url)]
    for socket in sockets:
        await request(socket, {"action": "subscribe", "channels": ["lab"]})

    two.cluster.stop(mode="fast")
    for client in (on_a, on_b):
        assert client.get("/api/v1/me").status == 200  # from the session cache
        write = client.patch("/api/v1/me", {"display_name": "During the outage"})
        assert (write.status, write.code) == (503, 8001) and int(write.headers["Retry-After"]) > 0
    for client in (two.a.client(), two.on_b()):
        health = client.get("/api/v1/health")
        assert health.status == 503 and health.json()["database"] == "down"
    assert publish(admin_b, "lost").status == 503

    two.cluster.start_server()
    for client in (two.a.client(), two.on_b()):
        wait_for(lambda c=client: c.get("/api/v1/health").status == 200, 20.0, "health to recover")
    assert publish(two.a.admin, "from A").status == 202
    assert publish(admin_b, "from B").status == 202
    for socket in sockets:
        tags = [
            (await receive_until(socket, lambda m: m.get("event_type") == "after", timeout=10.0))["payload"][
                "tag"
            ]
            for _ in range(2)
        ]
        assert tags == ["from A", "from B"]
        socket.close()
    for server in (two.a.server, two.b):
        assert server.log().count("Traceback") <= 3  # background jobs log a failure once, not every tick
