"""First run: the one-time setup URL creates the admin, once."""

from __future__ import annotations

from pathlib import Path

from tests.client import Client
from tests.servers import ServerProcess, setup_token, write_config


def test_first_run_prints_setup_url_and_token_works_exactly_once(database_url: str, tmp_path: Path) -> None:
    server = ServerProcess(write_config(tmp_path, database_url)).start()
    try:
        match = server.wait_for_log(r"Open (http://127\.0\.0\.1:\d+/)setup\?token=(\S+)")
        assert match.group(1) == server.url
        token = setup_token(server)
        client = Client(server.url)
        body = {"username": "root", "password": "root-password-1"}
        assert client.post("/api/v1/auth/setup", body).status == 403
        wrong = client.post("/api/v1/auth/setup", {**body, "token": token[::-1]})
        assert wrong.status == 403 and wrong.code == 1001
        weak = client.post("/api/v1/auth/setup", {**body, "token": token, "password": "short"})
        assert weak.status == 422  # nothing created; the token still works
        created = client.post("/api/v1/auth/setup", {**body, "token": token})
        assert created.status == 201
        login_body = created.json()
        assert login_body["user"]["role"] == "admin" and login_body["token_type"] == "Bearer"
        assert "synthorg_session" in created.cookies() and "_xsrf" in created.cookies()
        assert Client(server.url, token=login_body["token"]).get("/api/v1/me").json()["role"] == "admin"
        again = Client(server.url).post("/api/v1/auth/setup", {**body, "username": "second", "token": token})
        assert again.status == 403
    finally:
        assert server.terminate() == 0
    # A restart with a user present offers no setup link.
    server.start()
    try:
        server.wait_for_log("listening on")
        assert "setup?token=" not in server.log()
    finally:
        assert server.terminate() == 0
