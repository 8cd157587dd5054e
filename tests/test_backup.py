"""`db backup` while the server runs, and `db restore`: the drill of docs/deploy.md, on both
backends, with files only their owner can read; a destination someone else could plant or
replace is refused, and a restore under a running server needs `--force`."""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path

import pytest

from tests.conftest import start_lab
from tests.servers import Lab, PostgresCluster, cli

BACKUP_NAME = "lab.backup"
KEPT = re.compile(r"^kept a copy of the database as it was before the restore in (\S+) \(mode 0600\)$", re.M)


def usernames(lab: Lab) -> set[str]:
    listing = cli(lab, "user", "list", "--json")
    assert listing.returncode == 0, listing.stderr
    return {user["username"] for user in json.loads(listing.stdout)}


def kept_copy(output: str) -> Path:
    match = KEPT.search(output)
    assert match, output
    return Path(match.group(1))


def test_backup_while_serving_then_forced_restore_undoes_later_changes(lab: Lab, tmp_path: Path) -> None:
    kept = lab.create_user(username=f"kept{tmp_path.name[-6:]}")
    target = tmp_path / BACKUP_NAME
    made = cli(lab, "db", "backup", str(target))
    assert made.returncode == 0, made.stderr
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    # The server is still serving, and keeps changing data after the backup.
    later = lab.create_user(username=f"later{tmp_path.name[-6:]}")
    assert later["username"] in usernames(lab)

    restored = cli(lab, "db", "restore", "--force", str(target))
    assert restored.returncode == 0, restored.stderr
    names = usernames(lab)
    assert kept["username"] in names and "admin" in names
    assert later["username"] not in names

    # The safety copy is private and holds the data the restore replaced: putting it back
    # brings the later user back.
    safety = kept_copy(restored.stdout)
    assert safety.parent == tmp_path
    assert stat.S_IMODE(safety.stat().st_mode) == 0o600
    undone = cli(lab, "db", "restore", "--force", str(safety))
    assert undone.returncode == 0, undone.stderr
    assert later["username"] in usernames(lab)


def test_restore_under_a_running_server_is_refused_naming_it(lab: Lab, tmp_path: Path) -> None:
    target = tmp_path / BACKUP_NAME
    assert cli(lab, "db", "backup", str(target)).returncode == 0
    later = lab.create_user(username=f"stays{tmp_path.name[-6:]}")
    refused = cli(lab, "db", "restore", str(target))
    assert refused.returncode == 1
    [line] = refused.stderr.strip().splitlines()
    assert f"server pid {lab.server.process.pid} ({lab.url})" in line and "--force" in line, line
    # Nothing changed, and no safety copy was made.
    assert later["username"] in usernames(lab)
    assert sorted(path.name for path in tmp_path.iterdir()) == [BACKUP_NAME]


def test_restore_with_the_server_stopped_needs_no_force(
    request: pytest.FixtureRequest, database_url: str, tmp_path: Path
) -> None:
    if database_url.startswith("sqlite"):
        url = f"sqlite+aiosqlite:///{tmp_path / 'own.db'}"
    else:
        cluster: PostgresCluster = request.getfixturevalue("pg_cluster")
        url = cluster.create_database("stopped_restore")
    lab = start_lab(tmp_path / "lab", url)
    try:
        target = tmp_path / BACKUP_NAME
        assert cli(lab, "db", "backup", str(target)).returncode == 0
        lab.create_user(username="afterwards")
    finally:
        assert lab.server.terminate() == 0
    restored = cli(lab, "db", "restore", str(target))
    assert restored.returncode == 0, restored.stderr
    assert stat.S_IMODE(kept_copy(restored.stdout).stat().st_mode) == 0o600
    assert "afterwards" not in usernames(lab)


def test_backup_refuses_to_overwrite_and_says_why(lab: Lab, tmp_path: Path) -> None:
    target = tmp_path / BACKUP_NAME
    target.write_text("something precious")
    refused = cli(lab, "db", "backup", str(target))
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines() == [f"error: {target} already exists; choose a new file name"]
    assert target.read_text() == "something precious"


@pytest.mark.parametrize("dangling", [False, True], ids=["to-a-file", "dangling"])
def test_backup_to_a_planted_symbolic_link_is_refused_and_its_target_untouched(
    lab: Lab, tmp_path: Path, dangling: bool
) -> None:
    victim = tmp_path / "victim" / "shadow"
    victim.parent.mkdir()
    if not dangling:
        victim.write_text("root:secret\n")
    link = tmp_path / BACKUP_NAME
    link.symlink_to(victim)
    refused = cli(lab, "db", "backup", str(link))
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines() == [f"error: {link} already exists; choose a new file name"]
    assert link.is_symlink()
    if dangling:
        assert not victim.exists()
    else:
        assert victim.read_text() == "root:secret\n"
    assert sorted(path.name for path in victim.parent.iterdir()) == ([] if dangling else ["shadow"])


def test_backup_into_a_folder_others_can_write_is_refused(lab: Lab, tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    refused = cli(lab, "db", "backup", str(shared / BACKUP_NAME))
    assert refused.returncode == 1
    [line] = refused.stderr.strip().splitlines()
    assert line.startswith(f"error: refusing to write into {shared}: group or others may write to it"), line
    assert list(shared.iterdir()) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a folder to another user needs root")
def test_backup_into_a_folder_of_another_user_is_refused(lab: Lab, tmp_path: Path) -> None:
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o755)
    os.chown(theirs, 65534, 65534)
    refused = cli(lab, "db", "backup", str(theirs / BACKUP_NAME))
    assert refused.returncode == 1
    assert "refusing to write into" in refused.stderr and "uid 65534" in refused.stderr
    assert list(theirs.iterdir()) == []


def test_backup_into_a_sticky_shared_folder_like_tmp_works(lab: Lab, tmp_path: Path) -> None:
    sticky = tmp_path / "sticky"
    sticky.mkdir()
    sticky.chmod(0o1777)
    target = sticky / BACKUP_NAME
    made = cli(lab, "db", "backup", str(target))
    assert made.returncode == 0, made.stderr
    assert stat.S_IMODE(target.stat().st_mode) == 0o600 and target.stat().st_size > 0
    # Only the backup is left behind: no work folder, no journal.
    assert list(sticky.iterdir()) == [target]


def test_restore_of_a_missing_file_is_one_clear_line(lab: Lab, tmp_path: Path) -> None:
    refused = cli(lab, "db", "restore", "--force", str(tmp_path / "nothing.backup"))
    assert refused.returncode == 1
    assert "is not a backup file" in refused.stderr and "Traceback" not in refused.stderr
