"""A login/logout cycle leaves (almost) nothing behind in the server's memory.

An ended session's cache entry, the identity built for it and its verified token used to stay
until the session would have expired (24 h by default), and the logout's announcement stayed in
the in-memory event log for its retention window: about 2.5 KiB a cycle, so one member's script
cycling at 50 logins a second held gigabytes within a day. Now only the revoked id stays, until
that expiry and under a cap. The caches' sizes are on `/metrics` (`synthorg_cache_entries`),
which is what these tests read: exact counts, where RSS would only be noisy. The RSS across
20,000 cycles is `python -m bench.session_soak`'s to print.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from tests.client import Client
from tests.conftest import sqlite_lab
from tests.servers import USER_PASSWORD, Lab

CYCLES = 150
ENTRY = re.compile(r'^synthorg_cache_entries\{cache="([a-z_]+)"\} ([0-9.e+]+)$', re.MULTILINE)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    yield from sqlite_lab(
        tmp_path_factory,
        "session-memory",
        auth={"rate_limit_allowlist": ["127.0.0.0/8"]},
        logging={"access_log": False},
    )


def cache_entries(lab: Lab) -> dict[str, int]:
    reply = Client(lab.url).get("/metrics")
    assert reply.status == 200, reply
    return {name: int(float(value)) for name, value in ENTRY.findall(reply.body.decode())}


def cycle(lab: Lab, username: str, count: int, *, replay_after_logout: bool = True) -> None:
    """`count` logins, each used once and logged out, over one keep-alive connection."""
    client = Client(lab.url, keep_alive=True)
    for _ in range(count):
        reply = client.post("/api/v1/auth/login", {"username": username, "password": USER_PASSWORD})
        assert reply.status == 200, reply
        headers = {"Authorization": f"Bearer {reply.json()['token']}"}
        assert client.get("/api/v1/me", headers=headers).status == 200
        assert client.post("/api/v1/auth/logout", headers=headers).status in (200, 204)
        client.cookies.clear()
        if replay_after_logout:
            # Refused from the revocation list, without caching the token again.
            assert client.get("/api/v1/me", headers=headers).status == 401
    client.close()


def test_login_logout_cycles_leave_only_the_revoked_ids_behind(lab: Lab) -> None:
    username = lab.create_user()["username"]
    before = cache_entries(lab)
    cycle(lab, username, CYCLES)
    after = cache_entries(lab)
    assert after["sessions"] == before["sessions"]
    assert after["verified_session_tokens"] == before["verified_session_tokens"]
    assert after["event_log"] == before["event_log"]
    assert after["users"] <= before["users"] + 1  # the member, read once
    assert after["revoked_session_ids"] == before["revoked_session_ids"] + CYCLES


def test_a_live_session_is_held_once_and_forgotten_at_logout(lab: Lab) -> None:
    username = lab.create_user()["username"]
    client = Client(lab.url)
    before = cache_entries(lab)
    reply = client.post("/api/v1/auth/login", {"username": username, "password": USER_PASSWORD})
    headers = {"Authorization": f"Bearer {reply.json()['token']}"}
    for _ in range(5):
        assert client.get("/api/v1/me", headers=headers).status == 200
    during = cache_entries(lab)
    assert during["sessions"] == before["sessions"] + 1
    assert during["verified_session_tokens"] == before["verified_session_tokens"] + 1
    assert client.post("/api/v1/auth/logout", headers=headers).status in (200, 204)
    after = cache_entries(lab)
    assert after["sessions"] == before["sessions"]
    assert after["verified_session_tokens"] == before["verified_session_tokens"]
