"""Files that hold password and token hashes are private to the server's user from the start."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

from tests.servers import ServerProcess, write_config


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def config_check(config: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "synthorg_tornado", "config", "check", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_first_run_creates_the_sqlite_files_and_secret_0600_despite_a_lax_umask(tmp_path: Path) -> None:
    config = write_config(tmp_path, "sqlite+aiosqlite:///synthorg.db")
    database = tmp_path / "synthorg.db"
    assert "will be created with mode 600" in config_check(config).stdout
    previous = os.umask(0o022)  # the usual default: new files would be 0644
    try:
        server = ServerProcess(config).start()
    finally:
        os.umask(previous)
    try:
        # The server has written (WAL mode), so all three files exist while it runs.
        private = (database, Path(f"{database}-wal"), Path(f"{database}-shm"), tmp_path / "synthorg_secret")
        for path in private:
            assert path.exists(), path
            assert mode(path) == 0o600, (path, oct(mode(path)))
    finally:
        assert server.terminate() == 0
    checked = config_check(config)
    assert f"database file {database}: mode 600" in checked.stdout
    assert "readable by group or others" not in checked.stderr


def test_config_check_warns_about_a_database_file_others_can_read(tmp_path: Path) -> None:
    config = write_config(tmp_path, "sqlite+aiosqlite:///synthorg.db")
    database = tmp_path / "synthorg.db"
    database.touch()
    database.chmod(0o644)
    checked = config_check(config)
    assert checked.returncode == 0
    assert (
        f"warning: database file {database} is readable by group or others (mode 644) and holds "
        f"password and token hashes; run: chmod 600 {database}"
    ) in checked.stderr
