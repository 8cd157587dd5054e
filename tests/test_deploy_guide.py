"""The deploy guide's commands do what its text promises."""

from __future__ import annotations

import re

from tests.servers import REPO

GUIDE = (REPO / "docs" / "deploy.md").read_text()


def commands(pattern: str) -> list[str]:
    """Shell commands of the guide (continuation lines joined) that match `pattern`."""
    joined = re.sub(r"\\\n\s*", " ", GUIDE)
    return [line.strip() for line in joined.splitlines() if re.search(pattern, line)]


def test_every_server_certificate_made_by_the_guide_names_its_host_in_a_subject_alt_name() -> None:
    made = [command for command in commands(r"openssl req -x509") if "client CA" not in command]
    assert made, "the guide no longer makes a certificate"
    for command in made:
        assert "subjectAltName=DNS:" in command, command


def test_every_database_dump_of_the_guide_is_private() -> None:
    # A command writes a file: `pg_dump ... > FILE` or `db backup FILE`.
    dumps = commands(r"pg_dump [^`]*>|db backup ")
    assert dumps
    for command in dumps:
        assert "umask 077" in command or "db backup" in command, command


def test_the_upgrade_migrates_only_while_the_server_is_stopped() -> None:
    section = GUIDE[GUIDE.index("## 12. Upgrading") : GUIDE.index("## 13. Troubleshooting")]
    stop, upgrade, start = (
        section.index(step) for step in ("systemctl stop", "db upgrade\n", "systemctl start")
    )
    assert stop < upgrade < start
    assert "pip install -e" not in section
