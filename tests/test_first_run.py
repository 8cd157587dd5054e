"""The first run, and finding it again: the setup-needed page, honest setup messages, and
`server list` printing the current setup link from the server's runtime file."""

from __future__ import annotations

import json
import os
import re
import signal
import stat
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlencode

from tests.client import Client
from tests.servers import SETUP_LINE, ServerProcess, setup_token, wait_for, write_config

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def server_list(config_path: Path, env: dict[str, str], *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "synthorg_tornado", "server", "list", *extra, "--config", str(config_path)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **env},
    )


def listed(config_path: Path, env: dict[str, str]) -> list[dict]:
    result = server_list(config_path, env, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_before_setup_pages_send_to_setup_and_server_list_prints_the_link(
    database_url: str, tmp_path: Path
) -> None:
    run_dir = tmp_path / "xdg"
    env = {"XDG_RUNTIME_DIR": str(run_dir)}
    config_path = write_config(tmp_path / "lab", database_url)
    server = ServerProcess(config_path, env=env).start()
    try:
        token = setup_token(server)
        visitor = Client(server.url)
        home = visitor.get("/")
        assert home.status == 302 and home.headers["Location"].startswith("/login")
        login = visitor.get(home.headers["Location"])
        assert login.status == 302 and login.headers["Location"] == "/setup"
        needed = visitor.get("/setup")
        assert needed.status == 200 and b"Setup is needed" in needed.body
        assert b"synthorg-tornado server list" in needed.body and token.encode() not in needed.body
        stale = visitor.get("/setup?token=" + "x" * 43)
        assert stale.status == 403 and b"not current" in stale.body and b"setup-form" not in stale.body
        assert b"printed when the server starts" not in stale.body
        assert b"setup-form" in visitor.get(f"/setup?token={token}").body

        [entry] = listed(config_path, env)
        assert entry["pid"] == server.process.pid and entry["url"] == server.url
        assert entry["setup_url"] == f"{server.url}setup?token={token}"
        runtime_file = run_dir / "synthorg-tornado" / f"synthorg-server-{server.process.pid}.json"
        assert stat.S_IMODE(runtime_file.stat().st_mode) == 0o600
        text = server_list(config_path, env)
        assert str(server.process.pid) in text.stdout and f"setup?token={token}" in text.stdout

        created = visitor.post(
            "/api/v1/auth/setup", {"token": token, "username": "root", "password": "root-pass-1"}
        )
        assert created.status == 201
        # The same link now says setup is done and where to log in, on the page and in the API.
        done = Client(server.url).get(f"/setup?token={token}")
        assert b"Setup is complete" in done.body and b'href="/login"' in done.body
        again = Client(server.url).post(
            "/api/v1/auth/setup", {"token": token, "username": "x2", "password": "root-pass-1"}
        )
        assert again.status == 403 and "Setup is complete" in again.json()["detail"]
        assert Client(server.url).get("/login").status == 200
        wait_for(
            lambda: listed(config_path, env)[0]["setup_url"] is None, 10, "the setup link to be withdrawn"
        )
    finally:
        assert server.terminate() == 0
    assert not runtime_file.exists()
    assert listed(config_path, env) == []

    # After a restart with a user present: an old link says setup is complete, not "see the log".
    server.start()
    try:
        browser = Client(server.url)
        page = browser.get(f"/setup?token={token}")
        assert b"Setup is complete" in page.body and b"setup-form" not in page.body
        form = urlencode(
            {"_xsrf": browser.cookies["_xsrf"], "token": token, "username": "x4", "password": "p" * 12}
        )
        posted = browser.post("/setup", raw=form.encode(), headers=FORM)
        assert (
            posted.status == 403
            and b"Setup is complete" in posted.body
            and b"printed when" not in posted.body
        )
        api = Client(server.url).post(
            "/api/v1/auth/setup", {"token": token, "username": "x3", "password": "root-pass-1"}
        )
        assert api.status == 403 and "Setup is complete" in api.json()["detail"]
        [entry] = listed(config_path, env)
        assert entry["pid"] == server.process.pid and entry["setup_url"] is None
        # A server killed without its clean shutdown leaves its file; the next listing drops it.
        server.process.send_signal(signal.SIGKILL)
        server.process.wait(10)
        assert (run_dir / "synthorg-tornado" / f"synthorg-server-{server.process.pid}.json").exists()
        assert listed(config_path, env) == []
        assert not list((run_dir / "synthorg-tornado").glob("synthorg-server-*"))
    finally:
        server.kill()


def test_without_xdg_runtime_dir_the_file_is_next_to_the_secret(sqlite_url: str, tmp_path: Path) -> None:
    env = {"XDG_RUNTIME_DIR": ""}
    config_path = write_config(tmp_path, sqlite_url)
    server = ServerProcess(config_path, env=env).start()
    try:
        runtime_file = tmp_path / f"synthorg-server-{server.process.pid}.json"
        assert (tmp_path / "synthorg_secret").exists()
        assert stat.S_IMODE(runtime_file.stat().st_mode) == 0o600
        [entry] = listed(config_path, env)
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT[\d:.]+Z", entry["started"])
        assert entry["setup_url"] == SETUP_LINE.search(server.log()).group(0).removeprefix("Open ")
    finally:
        assert server.terminate() == 0
    assert not runtime_file.exists()


def test_with_two_processes_one_server_is_listed_and_every_worker_takes_the_link(
    pg_cluster, tmp_path: Path
) -> None:
    env = {"XDG_RUNTIME_DIR": str(tmp_path / "xdg")}
    config_path = write_config(
        tmp_path, pg_cluster.create_database("firstrun_workers"), server={"processes": 2}
    )
    server = ServerProcess(config_path, env=env).start()
    workers: list[int] = []
    try:
        token = setup_token(server)
        [entry] = wait_for(
            lambda: (found := listed(config_path, env)) and found[0]["processes"] == 2 and found,
            20,
            "two workers",
        )
        workers = entry["worker_pids"]
        assert entry["pid"] == server.process.pid and server.process.pid not in workers
        assert entry["setup_url"] == f"{server.url}setup?token={token}"
        assert server.log().count("No user exists yet") == 1
        # One token for both workers: whichever accepts the connection takes the link.
        for _ in range(8):
            assert b"setup-form" in Client(server.url).get(f"/setup?token={token}").body
        created = Client(server.url).post(
            "/api/v1/auth/setup", {"token": token, "username": "root", "password": "root-pass-1"}
        )
        assert created.status == 201
        wait_for(
            lambda: listed(config_path, env)[0]["setup_url"] is None, 10, "both workers to see the admin"
        )
        flushed = subprocess.run(
            [sys.executable, "-m", "synthorg_tornado", "sessions", "list", "--config", str(config_path)],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, **env},
        )
        assert flushed.returncode == 0 and "warning" not in flushed.stderr, flushed.stderr
        assert "root" in flushed.stdout
    finally:
        # As systemd's KillMode=control-group does: every process gets the SIGTERM.
        for pid in workers:
            os.kill(pid, signal.SIGTERM)
        if workers:  # the main process exits once its workers stopped cleanly
            wait_for(lambda: server.process.poll() is not None, 30, "the main process to exit")
        code = server.terminate()
    assert code == 0
    assert listed(config_path, env) == []
    assert not list((tmp_path / "xdg" / "synthorg-tornado").glob("synthorg-server-*"))
