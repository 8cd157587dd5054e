"""`make test` on a fresh machine: the system packages are installed as root, or named at once."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.servers import REPO

SCRIPT = REPO / "tests" / "system_packages.sh"


def bare_path(folder: Path) -> str:
    """A PATH with bash and coreutils but none of the packages the script looks for."""
    folder.mkdir()
    for tool in ("bash", "id", "cat", "env"):
        os.symlink(shutil.which(tool), folder / tool)
    return str(folder)


def run(env: dict[str, str], user: str | None = None) -> subprocess.CompletedProcess:
    command = ["bash", str(SCRIPT)]
    if user is not None:
        runuser = shutil.which("runuser")
        assert runuser is not None
        command = [runuser, "-u", user, "--", "/usr/bin/env", f"PATH={env['PATH']}", *command]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=30)


def test_all_present_passes_silently() -> None:
    done = run({"PATH": os.environ["PATH"]})
    assert done.returncode == 0 and done.stdout == "" and done.stderr == ""


@pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("runuser"), reason="needs root to become another user"
)
def test_without_root_it_stops_with_one_line_naming_what_is_missing() -> None:
    # pytest's own temporary folders are private to root; this one must be readable by nobody.
    folder = Path(tempfile.mkdtemp(prefix="synthorg-packages-"))
    try:
        folder.chmod(0o755)
        env = {"PATH": bare_path(folder / "bin"), "SYNTHORG_SYSTEM_ROOT": str(folder / "empty")}
        done = run(env, user="nobody")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "nginx postgresql openssl chromium fonts-dejavu-core" in lines[0]
    assert "apt-get install -y nginx postgresql openssl chromium fonts-dejavu-core" in lines[0]


@pytest.mark.skipif(os.geteuid() != 0, reason="the install path runs as root")
def test_as_root_it_installs_the_missing_packages_with_apt(tmp_path: Path) -> None:
    path = bare_path(tmp_path / "bin")
    calls = tmp_path / "apt-calls"
    fake_apt = tmp_path / "bin" / "apt-get"
    # apt itself cannot run here without changing the machine: a stand-in records what it was asked.
    fake_apt.write_text(f'#!/bin/bash\necho "$*" >> {calls}\n')
    fake_apt.chmod(0o755)
    env = {"PATH": path, "SYNTHORG_SYSTEM_ROOT": str(tmp_path / "empty")}
    done = run(env)
    assert done.returncode == 0, done.stderr
    asked = calls.read_text().splitlines()
    assert asked[0] == "update -qq"
    assert asked[1].endswith("nginx postgresql openssl chromium fonts-dejavu-core")
