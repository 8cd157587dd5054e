"""Who the audit log names for a command: `cli:` and the operating-system user, however the
command is started. (That the name reaches the audit rows is checked against a running server
in test_cli_operations.py.)"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

PRINT_ACTOR = "from synthorg_tornado.cli.support import CLI_ACTOR; print(CLI_ACTOR.name)"


def actor_name(env: dict[str, str]) -> str:
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    result = subprocess.run(
        [sys.executable, "-c", PRINT_ACTOR],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_the_login_name_is_recorded() -> None:
    assert actor_name({"LOGNAME": "alice", "USER": "alice"}) == "cli:alice"


@pytest.mark.skipif(os.geteuid() != 0, reason="sudo is seen as root with SUDO_USER set")
def test_under_sudo_the_person_is_recorded_not_root() -> None:
    assert actor_name({"LOGNAME": "root", "USER": "root", "SUDO_USER": "carol"}) == "cli:carol"


def test_a_user_without_a_passwd_entry_is_recorded_by_uid(monkeypatch: pytest.MonkeyPatch) -> None:
    """A container or a systemd DynamicUser: no login name in the environment and no passwd
    entry, where getpass.getuser() raises (KeyError; OSError from Python 3.13). The command must
    still run. (In-process: a child of another uid could not reach this checkout's interpreter.)"""
    import pwd

    from synthorg_tornado.cli.support import operating_system_user

    for name in ("LOGNAME", "USER", "LNAME", "USERNAME", "SUDO_USER"):
        monkeypatch.delenv(name, raising=False)

    def no_entry(uid: int) -> pwd.struct_passwd:
        raise KeyError(f"getpwuid(): uid not found: {uid}")

    monkeypatch.setattr(pwd, "getpwuid", no_entry)
    assert operating_system_user() == f"uid{os.getuid()}"
