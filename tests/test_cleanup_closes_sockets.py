"""The cleanup job ends expired sessions, and with them their open WebSockets (4001)."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import update
from tornado.httpclient import AsyncHTTPClient

from synthorg_tornado.auth.audit import SYSTEM
from synthorg_tornado.clock import utcnow
from synthorg_tornado.db.models import Session as SessionRow
from tests.realtime import closed_with, connect, request


@pytest.mark.gen_test(timeout=30)
async def test_cleanup_job_closes_sockets_of_expired_sessions(app, http_server, base_url) -> None:  # type: ignore[no-untyped-def]
    services = app.settings["services"]
    await services.users.create("carl", "a-long-password", "member", actor=SYSTEM)
    reply = await AsyncHTTPClient().fetch(
        base_url + "/api/v1/auth/login",
        method="POST",
        body='{"username": "carl", "password": "a-long-password"}',
        headers={"Content-Type": "application/json"},
    )
    token = json.loads(reply.body)["token"]
    socket = await connect(base_url + "/", token=token)
    assert await request(socket, {"action": "ping"}) == {"action": "pong"}

    past = utcnow() - timedelta(seconds=1)
    session_id = next(iter(services.sessions.cache.sessions))
    async with services.database.session() as db:
        await db.execute(update(SessionRow).where(SessionRow.id == session_id).values(expires_at=past))
        await db.commit()
    services.sessions.cache.get(session_id).expires_at = past
    await services.sessions.cleanup()
    assert await closed_with(socket, timeout=1.0) == 4001
