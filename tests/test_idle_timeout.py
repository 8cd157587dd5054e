"""An idle session ends like an expired one (401/1003); the absolute lifetime is separate."""

from __future__ import annotations

import time

from tests.servers import Lab

IDLE_SECONDS = 1.5
LAB_CONFIG = {"auth": {"idle_timeout_minutes": IDLE_SECONDS / 60}}


def test_session_idle_past_the_timeout_gets_401_with_code_1003(lab: Lab) -> None:
    user = lab.create_user()
    client, _ = lab.login(user["username"])
    assert client.get("/api/v1/me").status == 200
    # The behaviour under test is the passage of idle time itself.
    time.sleep(IDLE_SECONDS + 0.5)
    reply = client.get("/api/v1/me")
    assert reply.status == 401 and reply.code == 1003
    assert "inactivity" in reply.json()["detail"]
    # An idle session no longer appears in the list either.
    fresh, _ = lab.login(user["username"])
    assert len(fresh.get("/api/v1/auth/sessions").json()) == 1
