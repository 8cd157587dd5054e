"""Serving under a sub-path (`base_url`) and DNS-rebinding protection (`allowed_hosts`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.client import Client
from tests.realtime import connect, request
from tests.servers import USER_PASSWORD, Lab, ServerProcess, write_config


@pytest.fixture(scope="module")
def sub_path_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    directory = tmp_path_factory.mktemp("sub-path")
    config = write_config(
        directory,
        f"sqlite+aiosqlite:///{directory / 'lab.db'}",
        server={"base_url": "/lab/", "allowed_hosts": ["lab.example.org"], "trusted_proxies": ["127.0.0.2"]},
    )
    server = ServerProcess(config).start()
    try:
        yield Lab(server)
    finally:
        server.terminate()


def test_everything_lives_under_the_base_url(sub_path_lab: Lab) -> None:
    lab = sub_path_lab
    assert lab.url.endswith("/lab/")
    assert "/lab/setup?token=" in lab.server.log()
    assert lab.client().get("/api/v1/health").status == 200  # the client prefixes /lab
    root = Client(lab.url.replace("/lab/", "/"))
    assert root.get("/api/v1/health").status == 404
    assert lab.client().get("/static/style.css").status == 200
    user = lab.create_user()
    browser = lab.client()
    reply = browser.post("/api/v1/auth/login", {"username": user["username"], "password": USER_PASSWORD})
    cookie = reply.cookies()["synthorg_session"]
    assert "Path=/lab/" in cookie
    assert "Path=/lab/" in reply.cookies()["_xsrf"]
    assert browser.get("/").status == 200
    home = lab.client().get("/")
    assert home.status == 302 and home.headers["Location"] == "/lab/login?next=%2Flab%2F"
    bare = root.get("/lab")
    assert bare.status == 301 and bare.headers["Location"] == "/lab/"


@pytest.mark.gen_test(timeout=30)
async def test_websocket_under_the_base_url(sub_path_lab: Lab) -> None:
    socket = await connect(sub_path_lab.url, token=sub_path_lab.admin.token)
    assert await request(socket, {"action": "ping"}) == {"action": "pong"}
    socket.close()


def test_foreign_host_is_refused_on_a_loopback_bind(sub_path_lab: Lab) -> None:
    evil = sub_path_lab.client(headers={"Host": "evil.example"})
    api = evil.get("/api/v1/health")
    assert api.status == 403 and api.code == 1001 and "allowed_hosts" in api.json()["detail"]
    assert evil.get("/login").status == 403
    assert evil.get("/static/style.css").status == 403
    for good in (
        "localhost",
        f"127.0.0.1:{sub_path_lab.server.port}",
        "lab.example.org",
        "LAB.example.org:443",
    ):
        assert sub_path_lab.client(headers={"Host": good}).get("/api/v1/health").status == 200, good


def test_requests_through_a_trusted_proxy_are_exempt(sub_path_lab: Lab) -> None:
    proxied = sub_path_lab.client(headers={"Host": "anything.example"}, source_address="127.0.0.2")
    assert proxied.get("/api/v1/health").status == 200


def test_default_allowed_hosts_include_localhost(tmp_path: Path, sqlite_url: str) -> None:
    server = ServerProcess(write_config(tmp_path, sqlite_url)).start()
    try:
        base = server.url
        assert Client(base, headers={"Host": f"localhost:{server.port}"}).get("/api/v1/health").status == 200
        assert Client(base, headers={"Host": "[::1]"}).get("/api/v1/health").status == 200
        assert Client(base, headers={"Host": "rebind.attacker.example"}).get("/api/v1/health").status == 403
    finally:
        assert server.terminate() == 0
