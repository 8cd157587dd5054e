"""The server starts from a config file, migrates its database, answers and stops cleanly."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

from synthorg_tornado.db import migrate
from tests.servers import REPO, ServerProcess, free_port, http_request, write_config


def test_shipped_config_serves_health_on_sqlite_and_stops_on_sigterm(tmp_path: Path) -> None:
    shutil.copy(REPO / "config.yaml", tmp_path / "config.yaml")
    # The shipped file binds 8888; a free port keeps parallel runs apart. Nothing else changes.
    server = ServerProcess(tmp_path / "config.yaml", env={"SYNTHORG_SERVER_PORT": "0"})
    server.start()
    try:
        reply = http_request(server.url + "api/v1/health")
        assert reply.status == 200
        body = reply.json()
        assert body["status"] == "ok" and body["database"] == "ok"
        assert isinstance(body["uptime_seconds"], float)
        assert (tmp_path / "synthorg.db").exists()
        secret = tmp_path / "synthorg_secret"
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    finally:
        exit_code = server.terminate()
    assert exit_code == 0
    assert "stopped" in server.log()
    current = subprocess.run(
        [
            sys.executable,
            "-m",
            "synthorg_tornado",
            "db",
            "current",
            "--config",
            str(tmp_path / "config.yaml"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert current.returncode == 0, current.stderr
    assert f"{migrate.head_revision()} (up to date)" in current.stdout


def test_serve_migrates_and_answers_on_each_backend(database_url: str, tmp_path: Path) -> None:
    config = write_config(tmp_path, database_url)
    server = ServerProcess(config).start()
    try:
        reply = http_request(server.url + "api/v1/health")
        assert reply.status == 200
        assert reply.json()["database"] == "ok"
        assert "Running upgrade" in server.log() or migrate.head_revision() in server.log()
    finally:
        assert server.terminate() == 0


def test_sigint_also_stops_cleanly(sqlite_url: str, tmp_path: Path) -> None:
    import signal

    server = ServerProcess(write_config(tmp_path, sqlite_url)).start()
    assert server.terminate(signal.SIGINT) == 0


def test_db_upgrade_then_current_reports_head(sqlite_url: str, tmp_path: Path) -> None:
    config = write_config(tmp_path, sqlite_url)
    run = [sys.executable, "-m", "synthorg_tornado"]
    upgraded = subprocess.run(
        [*run, "db", "upgrade", "--config", str(config)], capture_output=True, text=True
    )
    assert upgraded.returncode == 0, upgraded.stderr
    assert f"revision {migrate.head_revision()}" in upgraded.stdout
    current = subprocess.run([*run, "db", "current", "--config", str(config)], capture_output=True, text=True)
    assert current.stdout.strip() == f"{migrate.head_revision()} (up to date)"


def test_auto_upgrade_off_refuses_an_unmigrated_database(sqlite_url: str, tmp_path: Path) -> None:
    config = write_config(tmp_path, sqlite_url, database={"auto_upgrade": False})
    result = subprocess.run(
        [sys.executable, "-m", "synthorg_tornado", "serve", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ},
    )
    assert result.returncode == 2
    assert "run: synthorg-tornado db upgrade" in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_on_a_busy_port_fails_with_one_line(sqlite_url: str, tmp_path: Path) -> None:
    first = ServerProcess(write_config(tmp_path / "a", sqlite_url)).start()
    try:
        config = write_config(
            tmp_path / "b", f"sqlite+aiosqlite:///{tmp_path / 'b.db'}", server={"port": first.port}
        )
        result = subprocess.run(
            [sys.executable, "-m", "synthorg_tornado", "serve", "--config", str(config)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 1
        assert f"cannot listen on 127.0.0.1:{first.port}" in result.stderr
        assert "Traceback" not in result.stderr
    finally:
        assert first.terminate() == 0


def test_json_log_format_has_one_object_per_line_without_secrets(sqlite_url: str, tmp_path: Path) -> None:
    import json

    config = write_config(tmp_path, sqlite_url, logging={"format": "json"})
    server = ServerProcess(config).start()
    try:
        reply = http_request(
            server.url + "api/v1/health?token=hunter2-secret", headers={"X-Request-ID": "json-log-1"}
        )
        assert reply.status == 200
        line = server.wait_for_log(r'.*"request_id": "json-log-1".*').group(0)
    finally:
        assert server.terminate() == 0
    entry = json.loads(line)
    assert entry["logger"] == "synthorg.access" and entry["status"] == 200
    assert entry["client_ip"] == "127.0.0.1" and entry["scheme"] == "http" and entry["method"] == "GET"
    assert entry["path"] == "/api/v1/health?token=***"
    log = server.log()
    assert "hunter2-secret" not in log
    # Migrations ran in this process before serving, and the app's loggers still speak afterwards.
    assert all(json.loads(text) for text in log.splitlines() if text.strip())
    assert "database schema migrated from nothing" in log and "listening on" in log


def test_fatal_start_up_errors_follow_the_json_log_format(tmp_path: Path) -> None:
    config = write_config(
        tmp_path,
        "sqlite+aiosqlite:///lab.db",
        database={"auto_upgrade": False},
        logging={"format": "json", "level": "INFO"},
    )
    done = subprocess.run(
        [sys.executable, "-m", "synthorg_tornado", "serve", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    lines = [json.loads(line) for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    assert len(lines) == 1
    assert lines[0]["level"] == "ERROR" and "run: synthorg-tornado db upgrade" in lines[0]["message"]


def test_a_start_logs_one_migration_line_and_no_alembic_chatter(tmp_path: Path) -> None:
    config = write_config(tmp_path, "sqlite+aiosqlite:///lab.db")
    first = ServerProcess(config).start()
    assert first.terminate() == 0
    assert "alembic" not in first.log()
    assert len(re.findall(r"database schema migrated from nothing to \w+", first.log())) == 1
    second = ServerProcess(config).start()
    assert second.terminate() == 0
    assert "alembic" not in second.log() and "migrated" not in second.log()


def test_serve_host_and_port_override_the_file(tmp_path: Path) -> None:
    port = free_port()
    config = write_config(tmp_path, "sqlite+aiosqlite:///lab.db")
    server = ServerProcess(config, serve_arguments=["--host", "127.0.0.1", "--port", str(port)]).start()
    try:
        assert server.port == port
        assert http_request(server.url + "api/v1/health/live").status == 200
    finally:
        assert server.terminate() == 0


def test_serve_overrides_are_validated_like_the_file(tmp_path: Path) -> None:
    config = write_config(tmp_path, "sqlite+aiosqlite:///lab.db")
    done = subprocess.run(
        [sys.executable, "-m", "synthorg_tornado", "serve", "--port", "70000", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "server.port: must be at most 65535, got 70000" in done.stderr
