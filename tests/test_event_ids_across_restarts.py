"""Event ids are never reused, not even across a restart of a one-process (SQLite) lab.

Its event log lives in memory, so a restart forgets it. Ids used to start again at 1: a socket
that resumed with `since` from before the restart was told `recovered: true` while it had missed
everything, and then skipped new events whose ids it had already seen.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.client import Client
from tests.realtime import connect, receive_until, request
from tests.servers import Lab, ServerProcess, write_config


def publish(client: Client, event_type: str) -> None:
    body = {"channel": "lab", "event_type": event_type, "payload": {}}
    assert client.post("/api/v1/events", body).status == 202


async def event_id(url: str, token: str, event_type: str) -> int:
    """Publish one `lab` event and return the id a subscriber sees for it."""
    socket = await connect(url, token=token)
    await request(socket, {"action": "subscribe", "channels": ["lab"]})
    publish(Client(url, token=token), event_type)
    seen = await receive_until(socket, lambda message: message.get("event_type") == event_type)
    socket.close()
    return seen["id"]


@pytest.mark.gen_test(timeout=60)
async def test_a_restart_never_hands_out_an_event_id_again_and_an_old_since_is_not_recovered(
    tmp_path: Path,
) -> None:
    config = write_config(tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'lab.db'}")
    lab = Lab(ServerProcess(config).start())
    token = lab.admin.token
    try:
        before = [await event_id(lab.url, token, f"before.{n}") for n in range(3)]
    finally:
        assert lab.server.terminate() == 0

    server = ServerProcess(config).start()
    try:
        after = await event_id(server.url, token, "after")
        assert after > max(before)
        socket = await connect(server.url, token=token)
        reply = await request(
            socket, {"action": "subscribe", "channels": ["lab"], "since": {"lab": before[-1]}}
        )
        assert reply["recovered"] is False
        socket.close()
    finally:
        assert server.terminate() == 0
