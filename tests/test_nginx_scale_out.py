"""The shipped nginx config with two lab processes in its upstream, on one PostgreSQL.

nginx spreads requests over A (127.0.0.1) and B (127.0.0.2) with no sticky sessions: a session,
a revocation, a login limit and a published event mean the same whichever backend answers.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from tests.client import Client
from tests.nginx import NginxServer
from tests.realtime import closed_with, connect, receive_until, request
from tests.scale_out import TwoProcesses, two_processes
from tests.servers import USER_PASSWORD, PostgresCluster, make_certificate, wait_for
from tests.test_nginx import CLIENT_IP, trusting

PER_IP = 6
GUESSER = "127.0.0.3"  # an address of its own, so its 429 does not throttle the other tests
SECTIONS = {
    "server": {"trusted_proxies": ["127.0.0.1"]},
    "auth": {"login_rate_limit_per_minute": PER_IP},
}


class Site(NamedTuple):
    two: TwoProcesses
    nginx: NginxServer
    certificate: Path

    def client(self, source_address: str = CLIENT_IP, **kwargs: Any) -> Client:
        return Client(
            self.nginx.https_url, context=trusting(self.certificate), source_address=source_address, **kwargs
        )

    async def socket(self, token: str):  # type: ignore[no-untyped-def]
        return await connect(
            self.nginx.https_url,
            token=token,
            ssl_options=trusting(self.certificate),
            network_interface=CLIENT_IP,
        )

    def served_by(self, marker: str) -> set[str]:
        """Which backends logged a request carrying `marker` in its path."""
        servers = {"A": self.two.a.server, "B": self.two.b}
        return {name for name, server in servers.items() if marker in server.log()}


@pytest.fixture(scope="module")
def site(pg_cluster: PostgresCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("nginx-two")
    certificate = make_certificate(root / "tls", "localhost")
    with two_processes(pg_cluster, root, "nginx_two", **SECTIONS) as two:
        nginx = NginxServer(
            root / "nginx",
            upstream=[f"127.0.0.1:{two.a.server.port}", f"127.0.0.2:{two.b.port}"],
            certificate=certificate[0],
            key=certificate[1],
        ).start()
        try:
            yield Site(two, nginx, certificate[0])
        finally:
            nginx.stop()


def test_one_session_works_on_whichever_backend_answers_and_logout_ends_it_on_both(site: Site) -> None:
    user = site.two.a.create_user()
    browser = site.client()
    login = browser.post("/api/v1/auth/login", {"username": user["username"], "password": USER_PASSWORD})
    assert login.status == 200
    bearer = site.client(token=login.json()["token"])
    marker = uuid.uuid4().hex
    for n in range(10):
        assert bearer.get(f"/api/v1/me?probe={marker}-{n}").status == 200
    assert site.served_by(marker) == {"A", "B"}  # round robin, no stickiness needed
    assert bearer.post("/api/v1/auth/logout").status == 204
    # The other backend learns of the logout a few milliseconds later, through the bus.
    wait_for(
        lambda: all(bearer.get("/api/v1/me").status == 401 for _ in range(2)),
        0.25,
        "both backends to refuse the session",
        interval=0.005,
    )
    after = [bearer.get("/api/v1/me") for _ in range(6)]
    assert [(r.status, r.code) for r in after] == [(401, 1002)] * 6


def test_the_login_limit_holds_across_both_backends(site: Site) -> None:
    statuses = [
        site.client(source_address=GUESSER)
        .post("/api/v1/auth/login", {"username": f"nobody{n}", "password": "wrong-password"})
        .status
        for n in range(PER_IP + 1)
    ]
    assert statuses == [401] * PER_IP + [429]


@pytest.mark.gen_test(timeout=60)
async def test_sockets_on_both_backends_receive_events_and_close_on_revocation(site: Site) -> None:
    user = site.two.a.create_user()
    login = site.client().post(
        "/api/v1/auth/login", {"username": user["username"], "password": USER_PASSWORD}
    )
    token = login.json()["token"]
    marker = uuid.uuid4().hex
    sockets = []
    for _ in range(4):
        socket = await site.socket(token)
        await request(socket, {"action": "subscribe", "channels": ["lab"]})
        sockets.append(socket)
    admin = site.client(token=site.two.a.admin.token)
    for n in range(2):  # one publish lands on each backend
        reply = admin.post(
            "/api/v1/events", {"channel": "lab", "event_type": "spread", "payload": {"m": marker, "n": n}}
        )
        assert reply.status == 202
    for socket in sockets:
        got = [await receive_until(socket, lambda m: m.get("event_type") == "spread") for _ in range(2)]
        assert sorted(m["payload"]["n"] for m in got) == [0, 1]
    presence = {p["user_id"]: p["connections"] for p in admin.get("/api/v1/presence").json()}
    assert presence[user["id"]] == 4
    assert site.client(token=token).post("/api/v1/auth/logout").status == 204
    for socket in sockets:
        assert await closed_with(socket, timeout=2.0) == 4001


def test_a_stopped_backend_leaves_the_lab_served_by_the_other(site: Site) -> None:
    """Runs last in this module: it stops B. nginx passes idempotent requests to the next
    backend when one refuses connections, so no client sees the loss."""
    bearer = site.client(token=site.two.a.admin.token)
    assert site.two.b.terminate() == 0
    replies = [bearer.get("/api/v1/health") for _ in range(8)] + [bearer.get("/api/v1/me") for _ in range(8)]
    assert {r.status for r in replies} == {200}
