"""Once the setup answer is sent, no command offers the spent setup link again.

The setup request itself withdraws the link from the server's runtime file before it answers, so
`server list` (text and `--json`) run right after the answer shows none, whether the first admin
came through the API or through the setup page's form."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlencode

import pytest

from synthorg_tornado.config import load_config
from synthorg_tornado.process import runtime
from tests.client import Client
from tests.servers import ServerProcess, setup_token, write_config

PASSWORD = "root-pass-1"


def server_list(config_path: Path, env: dict[str, str], *extra: str) -> str:
    listed = subprocess.run(
        [sys.executable, "-m", "synthorg_tornado", "server", "list", *extra, "--config", str(config_path)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **env},
    )
    assert listed.returncode == 0, listed.stderr
    return listed.stdout


def setup_through_api(server: ServerProcess, token: str) -> None:
    created = Client(server.url).post(
        "/api/v1/auth/setup", {"token": token, "username": "root", "password": PASSWORD}
    )
    assert created.status == 201, created


def setup_through_page(server: ServerProcess, token: str) -> None:
    browser = Client(server.url)
    assert b"setup-form" in browser.get(f"/setup?token={token}").body
    form = {"_xsrf": browser.cookies["_xsrf"], "token": token, "username": "root", "password": PASSWORD}
    posted = browser.post(
        "/setup",
        raw=urlencode({**form, "password_repeat": PASSWORD}).encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert posted.status == 302, posted


@pytest.mark.parametrize("complete", [setup_through_api, setup_through_page], ids=["api", "page"])
def test_server_list_never_offers_the_setup_link_once_setup_has_answered(tmp_path: Path, complete) -> None:
    env = {"XDG_RUNTIME_DIR": str(tmp_path / "xdg")}
    config_path = write_config(tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'lab.db'}")
    config = load_config(config_path, environ=env)
    server = ServerProcess(config_path, env=env).start()
    try:
        token = setup_token(server)
        [before] = runtime.scan(config, env).servers
        assert before.setup_url == f"{server.url}setup?token={token}"

        complete(server, token)
        # Read at once: the link was withdrawn before the answer, not by a later check.
        [after] = runtime.scan(config, env).servers
        assert after.pid == server.process.pid and after.setup_url is None
        [entry] = json.loads(server_list(config_path, env, "--json"))
        assert entry["pid"] == server.process.pid and entry["setup_url"] is None
        text = server_list(config_path, env)
        assert str(server.process.pid) in text and "setup" not in text and token not in text
    finally:
        assert server.terminate() == 0
