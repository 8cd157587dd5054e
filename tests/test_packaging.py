"""A wheel carries what the server needs besides Python, and works installed the way docs/deploy.md
says: `pip install` without `-e`, run from a folder outside the checkout."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.servers import REPO, ServerProcess, http_request, write_config


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(folder),
            str(REPO),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return next(folder.glob("synthorg_tornado-*.whl"))


def test_wheel_contains_migrations_and_static_files(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    data = "synthorg_tornado-0.1.0.data/data/share/synthorg-tornado/"
    for needed in (
        "alembic/env.py",
        "alembic/versions/0001_initial.py",
        "static/login.html",
        "static/live.js",
    ):
        assert data + needed in names, needed
    assert "synthorg_tornado/resources.py" in names


def test_installed_wheel_migrates_and_serves_from_outside_the_checkout(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", str(wheel)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    command = str(venv / "bin" / "synthorg-tornado")
    site = tmp_path / "site"
    config = write_config(site, "sqlite+aiosqlite:///lab.db", database={"auto_upgrade": False})
    # No PYTHONPATH and a working directory outside the checkout: only the installed copy is seen.
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [command, *args, "--config", str(config)],
            cwd=site,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    where = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import synthorg_tornado.db.migrate as m; print(m.ALEMBIC_DIR)"],
        cwd=site,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert where.endswith("share/synthorg-tornado/alembic") and str(REPO) not in where

    before = run("db", "current")
    assert before.returncode == 0, before.stderr
    assert "behind" in before.stdout and "(empty)" in before.stdout

    refused = run("serve")
    assert refused.returncode == 2
    assert "db upgrade" in refused.stderr and "Traceback" not in refused.stderr

    upgraded = run("db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    assert "up to date" in run("db", "current").stdout

    server = ServerProcess(config, env=env, program=[command]).start()
    try:
        assert http_request(server.url + "api/v1/health").status == 200
        # No user exists yet: the login page leads to the page that says setup is needed.
        page = http_request(server.url + "login")
        assert page.status == 200 and b"server list" in page.body
        assert http_request(server.url + "static/style.css").status == 200
    finally:
        assert server.terminate() == 0
