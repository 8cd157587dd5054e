"""What a publisher may put into the event log: a size per event, a rate per user, a byte budget.

A manager's 200 events of 1 MiB added 204 MiB to the server for the retention window: the log
was bounded by count and age only. Now an event over `realtime.max_event_bytes` is 413, the
publisher's events past `realtime.publish_rate_per_minute` are 429 with Retry-After, and the
retained log keeps at most `realtime.event_log_max_bytes` (the oldest go, and a resume that needs
them answers `recovered: false`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from tests.client import Client
from tests.conftest import sqlite_lab
from tests.realtime import connect, receive, receive_until, request
from tests.servers import Lab, rss_kib, wait_for

KIB = 1024
RATE = 10
LOG_BYTES = 256 * KIB
LAB_CONFIG = {
    "realtime": {"event_log_max_bytes": LOG_BYTES, "publish_rate_per_minute": RATE},
    # On PostgreSQL the byte budget is applied by the cleanup job.
    "auth": {"cleanup_interval_seconds": 1},
}
PAYLOAD_TOO_LARGE, RATE_LIMITED = 2001, 5000


def manager(lab: Lab) -> Client:
    """A fresh publisher, with a full allowance of its own."""
    client, _ = lab.login(lab.create_user(role="manager")["username"])
    return client


def publish(client: Client, payload: object, event_type: str = "limits.test"):  # type: ignore[no-untyped-def]
    return client.post("/api/v1/events", {"channel": "lab", "event_type": event_type, "payload": payload})


def test_an_event_over_max_event_bytes_is_413_problem_json(lab: Lab) -> None:
    publisher = manager(lab)
    refused = publish(publisher, {"blob": "x" * (64 * KIB)})
    assert refused.status == 413 and refused.code == PAYLOAD_TOO_LARGE
    assert refused.headers["Content-Type"].startswith("application/problem+json")
    assert "65536" in refused.json()["detail"]
    # Characters count as the bytes they take in the log (escaped), not as characters.
    assert publish(publisher, {"blob": "\u00e9" * (12 * KIB)}).status == 413
    # Just under the limit is accepted, and the refusals took no place in the rate.
    assert publish(publisher, {"blob": "x" * (60 * KIB)}).status == 202
    for _ in range(RATE - 1):
        assert publish(publisher, {}).status == 202


def test_past_the_publish_rate_a_publisher_gets_429_with_retry_after(lab: Lab) -> None:
    publisher, other = manager(lab), manager(lab)
    for _ in range(RATE):
        assert publish(publisher, {}).status == 202
    refused = publish(publisher, {})
    assert refused.status == 429 and refused.code == RATE_LIMITED
    assert refused.headers["Content-Type"].startswith("application/problem+json")
    retry_after = int(refused.headers["Retry-After"])
    assert 1 <= retry_after <= 60 // RATE + 1
    # The limit is the publisher's own: another user publishes as before.
    assert publish(other, {}).status == 202


@pytest.mark.gen_test(timeout=60)
async def test_a_resume_from_events_dropped_by_the_byte_budget_is_not_recovered(lab: Lab) -> None:
    first, second = manager(lab), manager(lab)
    socket = await connect(lab.url, token=lab.admin.token)
    await request(socket, {"action": "subscribe", "channels": ["lab"]})
    assert publish(first, {}, "budget.before").status == 202
    seen = (await receive_until(socket, lambda m: m.get("event_type") == "budget.before"))["id"]
    socket.close()
    # 12 events of 50 KiB: more than twice the 256 KiB budget, far below the count and age bounds.
    for n in range(12):
        publisher = first if n < RATE - 1 else second
        assert publish(publisher, {"n": n, "blob": "x" * (50 * KIB)}, "budget.missed").status == 202

    async def resume() -> tuple[bool, list[int]]:
        """`recovered`, and the `n` of each event replayed."""
        back = await connect(lab.url, token=lab.admin.token)
        reply = await request(back, {"action": "subscribe", "channels": ["lab"], "since": {"lab": seen}})
        assert reply["action"] == "subscribed"
        replayed = []
        while (message := await receive(back)) is not None and message.get("event_type") == "budget.missed":
            replayed.append(message["payload"]["n"])
            if message["payload"]["n"] == 11:
                break
        back.close()
        return reply["recovered"], replayed

    # What is left is the newest, within the budget (on PostgreSQL once the cleanup job, every
    # second here, has trimmed the table: polled with a deadline).
    kept = LOG_BYTES // (50 * KIB)
    deadline = time.monotonic() + 10
    recovered, replayed = await resume()
    while (recovered is not False or len(replayed) > kept) and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        recovered, replayed = await resume()
    assert recovered is False
    assert replayed and replayed == list(range(12 - len(replayed), 12)) and len(replayed) <= kept


# -- memory under a flood ------------------------------------------------------------------

FLOOD_EVENTS = 300
FLOOD_EVENT_BYTES = 60 * KIB
FLOOD_LOG_BYTES = 1024 * KIB
# The old log kept every event of the flood: 300 x 60 KiB is 18 MiB, held for 300 s.
RSS_GROWTH_BUDGET_KIB = 6 * 1024


@pytest.fixture(scope="module")
def flood_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    yield from sqlite_lab(
        tmp_path_factory,
        "flood",
        realtime={"event_log_max_bytes": FLOOD_LOG_BYTES, "publish_rate_per_minute": 100_000},
    )


def test_a_flood_of_maximal_events_leaves_the_server_rss_bounded(flood_lab: Lab) -> None:
    pid = flood_lab.server.process.pid
    publisher = Client(flood_lab.url, token=flood_lab.admin.token, keep_alive=True)
    blob = "x" * (FLOOD_EVENT_BYTES - 64)
    # Warm-up: the log reaches its budget, and the allocator its working set.
    for n in range(40):
        assert publish(publisher, {"n": n, "blob": blob}).status == 202
    before = rss_kib(pid)
    for n in range(FLOOD_EVENTS):
        assert publish(publisher, {"n": n, "blob": blob}).status == 202
    growth = wait_for(lambda: [rss_kib(pid) - before], 5, "an RSS reading")[0]
    publisher.close()
    assert growth < RSS_GROWTH_BUDGET_KIB, f"RSS grew {growth} KiB over {FLOOD_EVENTS} events"
