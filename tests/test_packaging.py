"""A wheel carries what the server needs besides Python: the migrations and the browser UI."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from tests.servers import REPO


def test_wheel_contains_migrations_and_static_files(tmp_path: Path) -> None:
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
            str(tmp_path),
            str(REPO),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    wheel = next(tmp_path.glob("synthorg_tornado-*.whl"))
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
