"""Check-then-act paths under real concurrent requests: each thing that happens, happens once.

Every test fires its requests from threads released together by a barrier, against the real
server on SQLite and on PostgreSQL, then reads the outcome and the audit log through the API.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from tornado.httpclient import HTTPClientError

from tests.client import Client, Reply
from tests.realtime import connect, request
from tests.servers import Lab

MAX_SESSIONS = 4
# Logins here are many and all correct: keep the login throttle out of the way.
LAB_CONFIG = {
    "auth": {
        "max_sessions_per_user": MAX_SESSIONS,
        "login_rate_limit_per_minute": 10_000,
        "lockout_threshold": 10_000,
    }
}


def together(count: int, send: Callable[[int], Any]) -> list[Any]:
    """`send(i)` from `count` threads at once (released by one barrier); results in order."""
    barrier = threading.Barrier(count)

    def run(index: int) -> Any:
        barrier.wait()
        return send(index)

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(run, range(count)))


def audit_rows(lab: Lab, action: str) -> list[dict[str, Any]]:
    reply = lab.admin.get(f"/api/v1/audit?action={action}&limit=500")
    assert reply.status == 200, reply
    return reply.json()["items"]


def session_target(session_id: str) -> str:
    return f"session:{session_id[:8]}"


def test_concurrent_revocations_of_one_token_are_recorded_once(lab: Lab) -> None:
    user = lab.create_user()
    client, _ = lab.login(user["username"])
    token = client.post("/api/v1/tokens", {"name": "raced"}).json()
    replies = together(10, lambda _i: client.delete(f"/api/v1/tokens/{token['id']}"))
    assert [reply.status for reply in replies] == [204] * 10
    rows = [row for row in audit_rows(lab, "token.revoke") if row["target"] == f"token:{token['id']}"]
    assert len(rows) == 1
    assert lab.client(token=token["token"]).get("/api/v1/me").status == 401


def test_concurrent_deletes_of_one_session_are_recorded_once(lab: Lab) -> None:
    user = lab.create_user()
    client, _ = lab.login(user["username"])
    doomed, body = lab.login(user["username"])
    session_id = body["session"]["session_id"]
    replies = together(10, lambda _i: client.delete(f"/api/v1/auth/sessions/{session_id}"))
    assert [reply.status for reply in replies] == [204] * 10
    rows = [row for row in audit_rows(lab, "session.revoke") if row["target"] == session_target(session_id)]
    assert len(rows) == 1
    assert doomed.get("/api/v1/me").code == 1002


def test_concurrent_revoke_others_revokes_each_session_once(lab: Lab) -> None:
    user = lab.create_user()
    keeper, _ = lab.login(user["username"])
    others = [lab.login(user["username"])[1]["session"]["session_id"] for _ in range(MAX_SESSIONS - 1)]
    replies = together(8, lambda _i: keeper.post("/api/v1/auth/sessions/revoke-others"))
    assert [reply.status for reply in replies] == [200] * 8
    assert sum(reply.json()["revoked"] for reply in replies) == len(others)
    targets = Counter(row["target"] for row in audit_rows(lab, "session.revoke"))
    assert [targets[session_target(session_id)] for session_id in others] == [1] * len(others)
    assert keeper.get("/api/v1/me").status == 200


def test_concurrent_logins_end_with_at_most_the_cap_and_one_revocation_each(lab: Lab) -> None:
    user = lab.create_user()
    anonymous = [lab.client() for _ in range(12)]
    credentials = {"username": user["username"], "password": "user-password-1"}
    replies = together(12, lambda i: anonymous[i].post("/api/v1/auth/login", credentials))
    assert [reply.status for reply in replies] == [200] * 12
    bodies = [reply.json() for reply in replies]
    live = [body for body in bodies if lab.client(token=body["token"]).get("/api/v1/me").status == 200]
    assert len(live) == MAX_SESSIONS
    listed = lab.client(token=live[0]["token"]).get("/api/v1/auth/sessions").json()
    assert len(listed) == MAX_SESSIONS
    ended = {session_target(body["session"]["session_id"]) for body in bodies if body not in live}
    revocations = Counter(
        row["target"]
        for row in audit_rows(lab, "session.revoke")
        if row["detail"].get("reason") == "session_limit" and row["target"] in ended
    )
    assert revocations == Counter({target: 1 for target in ended})


def test_concurrent_disables_revoke_and_audit_once(lab: Lab) -> None:
    user = lab.create_user()
    sessions = [lab.login(user["username"])[1]["session"]["session_id"] for _ in range(3)]
    replies = together(10, lambda _i: lab.admin.patch(f"/api/v1/users/{user['id']}", {"disabled": True}))
    assert [reply.status for reply in replies] == [200] * 10
    assert all(reply.json()["disabled"] is True for reply in replies)
    updates = [row for row in audit_rows(lab, "user.update") if row["target"] == user["username"]]
    assert [row["detail"] for row in updates] == [{"disabled": True}]
    targets = Counter(row["target"] for row in audit_rows(lab, "session.revoke"))
    assert [targets[session_target(session_id)] for session_id in sessions] == [1, 1, 1]


def test_concurrent_resets_with_one_etag_let_exactly_one_through(lab: Lab) -> None:
    path = "/api/v1/settings/ui/lab_name"
    etag = lab.admin.get(path).headers["ETag"]
    written = lab.admin.put(path, {"value": "Reset race"}, headers={"If-Match": etag})
    assert written.status == 200
    etag = written.headers["ETag"]
    before = len(audit_rows(lab, "setting.reset"))
    replies = together(10, lambda _i: lab.admin.delete(path, headers={"If-Match": etag}))
    assert sorted(reply.status for reply in replies) == [200] + [412] * 9
    assert all(reply.code == 4002 for reply in replies if reply.status == 412)
    assert len(audit_rows(lab, "setting.reset")) == before + 1
    assert lab.admin.get(path).json()["source"] != "database"


def test_if_match_star_never_fails_under_contention(lab: Lab) -> None:
    path = "/api/v1/settings/budget/monthly_limit"
    initial = lab.admin.get(path).json()["version"]
    writers = [Client(lab.url, token=lab.admin.token, keep_alive=True) for _ in range(16)]

    def write_twenty(index: int) -> list[Reply]:
        replies = [
            writers[index].put(path, {"value": float(index * 100 + n)}, headers={"If-Match": "*"})
            for n in range(20)
        ]
        writers[index].close()
        return replies

    statuses = Counter(reply.status for replies in together(16, write_twenty) for reply in replies)
    assert statuses == Counter({200: 320})
    assert lab.admin.get(path).json()["version"] == initial + 320


@pytest.mark.gen_test(timeout=30)
async def test_ten_concurrent_redemptions_of_one_ticket_open_one_socket(lab: Lab) -> None:
    user = lab.create_user()
    client, _ = lab.login(user["username"])
    ticket = client.post("/api/v1/auth/ws-ticket").json()["ticket"]
    outcomes = await asyncio.gather(
        *(connect(lab.url, ticket=ticket) for _ in range(10)), return_exceptions=True
    )
    opened = [outcome for outcome in outcomes if not isinstance(outcome, BaseException)]
    refused = [outcome for outcome in outcomes if isinstance(outcome, HTTPClientError)]
    assert len(opened) == 1 and len(refused) == 9
    assert {error.code for error in refused} == {401}
    assert await request(opened[0], {"action": "ping"}) == {"action": "pong"}
    opened[0].close()
