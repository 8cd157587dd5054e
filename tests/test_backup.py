"""`db backup` while the server runs, and `db restore`: the drill of docs/deploy.md, on both
backends, with files only their owner can read."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from tests.servers import Lab, cli

BACKUP_NAME = "lab.backup"


def usernames(lab: Lab) -> set[str]:
    listing = cli(lab, "user", "list", "--json")
    assert listing.returncode == 0, listing.stderr
    return {user["username"] for user in json.loads(listing.stdout)}


def test_backup_while_serving_then_restore_undoes_later_changes(lab: Lab, tmp_path: Path) -> None:
    kept = lab.create_user(username=f"kept{tmp_path.name[-6:]}")
    target = tmp_path / BACKUP_NAME
    made = cli(lab, "db", "backup", str(target))
    assert made.returncode == 0, made.stderr
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    # The server is still serving, and keeps changing data after the backup.
    later = lab.create_user(username=f"later{tmp_path.name[-6:]}")
    assert later["username"] in usernames(lab)

    restored = cli(lab, "db", "restore", str(target))
    assert restored.returncode == 0, restored.stderr
    names = usernames(lab)
    assert kept["username"] in names and "admin" in names
    assert later["username"] not in names


def test_backup_refuses_to_overwrite_and_says_why(lab: Lab, tmp_path: Path) -> None:
    target = tmp_path / BACKUP_NAME
    target.write_text("something precious")
    refused = cli(lab, "db", "backup", str(target))
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines() == [f"error: {target} already exists; choose a new file name"]
    assert target.read_text() == "something precious"


def test_restore_of_a_missing_file_is_one_clear_line(lab: Lab, tmp_path: Path) -> None:
    refused = cli(lab, "db", "restore", str(tmp_path / "nothing.backup"))
    assert refused.returncode == 1
    assert "is not a backup file" in refused.stderr and "Traceback" not in refused.stderr
