"""Hostile WebSocket frames: answered with an `error`, or closed with the code RFC 6455 names.

Sizes, as SPEC section 6 and docs/api.md put them: a text frame of at most
`websocket.max_message_bytes` is read; a larger one up to the hard cap (16 x that, at least
64 KiB) gets `message_too_large` and the socket stays open; past the hard cap the socket is closed
with 1009 before the frame is buffered.
"""

from __future__ import annotations

import json

import pytest

from tests.realtime import closed_with, connect, request
from tests.servers import Lab

MAX_MESSAGE_BYTES = 4096
HARD_CAP = max(64 * 1024, 16 * MAX_MESSAGE_BYTES)
LAB_CONFIG = {"websocket": {"max_message_bytes": MAX_MESSAGE_BYTES}}
TEXT_FRAME = 0x1


def ping_of_size(size: int) -> str:
    """A ping message of exactly `size` bytes."""
    head = json.dumps({"action": "ping", "pad": ""})
    return head[:-2] + "x" * (size - len(head)) + head[-2:]


async def socket_for(lab: Lab):  # type: ignore[no-untyped-def]
    user = lab.create_user()
    _, body = lab.login(user["username"])
    return await connect(lab.url, token=body["token"])


@pytest.mark.gen_test(timeout=30)
async def test_deeply_nested_json_gets_an_error_and_the_socket_stays_open(lab: Lab) -> None:
    socket = await socket_for(lab)
    for text in ("[" * 3000, "[" * 2000 + "]" * 2000, '{"a":' * 600 + "1" + "}" * 600):
        assert len(text.encode()) <= MAX_MESSAGE_BYTES
        reply = await request(socket, text)
        assert reply["action"] == "error" and reply["code"] == "invalid_json", reply
    for text in ('{"action": "ping", "n": ' + "9" * 3000 + "}", '{"action": "ping", "s": "\\ud800"}'):
        reply = await request(socket, text)
        assert reply["action"] == "error" and reply["code"] == "invalid_json", reply
    assert await request(socket, {"action": "ping"}) == {"action": "pong"}
    socket.close()


@pytest.mark.gen_test(timeout=30)
async def test_text_frame_that_is_not_utf8_closes_with_1007(lab: Lab) -> None:
    socket = await socket_for(lab)
    assert await request(socket, {"action": "ping"}) == {"action": "pong"}
    await socket.protocol._write_frame(True, TEXT_FRAME, b'{"action": "\xff\xfe"}')
    assert await closed_with(socket) == 1007
    # A binary frame with the same bytes is only a bad message.
    other = await socket_for(lab)
    await other.write_message(b'{"action": "\xff\xfe"}', binary=True)
    reply = json.loads(await other.read_message())
    assert reply["action"] == "error" and reply["code"] == "invalid_json"
    assert await request(other, {"action": "ping"}) == {"action": "pong"}
    other.close()


@pytest.mark.gen_test(timeout=30)
async def test_message_size_limits_behave_as_documented(lab: Lab) -> None:
    socket = await socket_for(lab)
    for size in (MAX_MESSAGE_BYTES - 1, MAX_MESSAGE_BYTES):
        assert await request(socket, ping_of_size(size)) == {"action": "pong"}, size
    for size in (MAX_MESSAGE_BYTES + 1, HARD_CAP):
        reply = await request(socket, ping_of_size(size))
        assert reply["action"] == "error" and reply["code"] == "message_too_large", size
    assert await request(socket, {"action": "ping"}) == {"action": "pong"}
    await socket.write_message(ping_of_size(HARD_CAP + 1))
    assert await closed_with(socket) == 1009
    assert lab.client().get("/api/v1/health").status == 200
