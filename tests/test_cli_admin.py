"""The `user`, `token` and `sessions` commands, against a running server's database.

Changes made by the command line reach the running server's caches through its change feed
(within about a second), so the tests poll with a deadline for the effect.
"""

from __future__ import annotations

import re

from tests.servers import USER_PASSWORD, Lab, cli, wait_for


def table(stdout: str) -> list[dict[str, str]]:
    """Rows of an aligned listing, read by the header's column offsets: a cell that is not
    aligned under its header comes out cut or merged, and the assertion on it fails."""
    header, *lines = stdout.rstrip("\n").split("\n")
    names = re.split(r"\s{2,}", header.strip())
    starts = [header.index(name) for name in names]
    ends = [*starts[1:], None]
    rows = []
    for line in lines:
        for start in starts[1:]:
            assert line[start - 1 : start] in (" ", ""), f"not aligned: {line!r}"
        rows.append(
            {name: line[start:end].strip() for name, start, end in zip(names, starts, ends, strict=True)}
        )
    return rows


def eventually_status(client, path: str, status: int, code: int | None = None) -> None:  # type: ignore[no-untyped-def]
    def check() -> bool:
        reply = client.get(path)
        return reply.status == status and (code is None or reply.code == code)

    wait_for(check, 5.0, f"{path} to answer {status}/{code}", interval=0.05)


def test_user_add_then_login(lab: Lab) -> None:
    result = cli(
        lab, "user", "add", "carol", "--role", "manager", "--password-stdin", stdin=USER_PASSWORD + "\n"
    )
    assert result.returncode == 0, result.stderr
    assert "created manager carol" in result.stdout
    _, body = lab.login("carol")
    assert body["user"]["role"] == "manager"
    listed = cli(lab, "user", "list")
    assert any(row["USERNAME"] == "carol" and row["ROLE"] == "manager" for row in table(listed.stdout))


def test_user_add_duplicate_and_bad_input_fail_with_one_line(lab: Lab) -> None:
    lab.create_user(username="dave")
    duplicate = cli(lab, "user", "add", "DAVE", "--password-stdin", stdin=USER_PASSWORD + "\n")
    assert duplicate.returncode == 1
    assert duplicate.stderr.strip().splitlines() == ["error: A user named 'DAVE' already exists."]
    short = cli(lab, "user", "add", "erin", "--password-stdin", stdin="short\n")
    assert short.returncode == 1 and len(short.stderr.strip().splitlines()) == 1
    assert "at least 8 characters" in short.stderr
    no_tty = cli(lab, "user", "add", "frank", stdin="")
    assert no_tty.returncode == 1 and "--password-stdin" in no_tty.stderr
    unknown = cli(lab, "user", "disable", "nobody-at-all")
    assert unknown.returncode == 1 and "No user named 'nobody-at-all'" in unknown.stderr
    assert "Traceback" not in duplicate.stderr + short.stderr + no_tty.stderr + unknown.stderr


def test_sessions_revoke_by_user_reaches_the_running_server(lab: Lab) -> None:
    user = lab.create_user()
    first, _ = lab.login(user["username"])
    second, _ = lab.login(user["username"])
    listed = cli(lab, "sessions", "list", "--user", user["username"])
    assert len(table(listed.stdout)) == 2
    result = cli(lab, "sessions", "revoke", "--user", user["username"])
    assert result.returncode == 0 and "2 session(s) revoked" in result.stdout
    eventually_status(first, "/api/v1/me", 401, 1002)
    eventually_status(second, "/api/v1/me", 401, 1002)
    assert cli(lab, "sessions", "revoke").returncode == 1


def test_disable_and_set_role_reach_the_running_server(lab: Lab) -> None:
    user = lab.create_user()
    client, _ = lab.login(user["username"])
    assert cli(lab, "user", "set-role", user["username"], "observer").returncode == 0
    wait_for(lambda: client.get("/api/v1/me").json().get("role") == "observer", 5.0, "role change")
    assert cli(lab, "user", "disable", user["username"]).returncode == 0
    eventually_status(client, "/api/v1/me", 401, 1002)
    assert cli(lab, "user", "enable", user["username"]).returncode == 0
    lab.login(user["username"])


def test_passwd_changes_password_and_revokes_sessions(lab: Lab) -> None:
    user = lab.create_user()
    client, _ = lab.login(user["username"])
    result = cli(lab, "user", "passwd", user["username"], "--password-stdin", stdin="brand-new-password\n")
    assert result.returncode == 0, result.stderr
    eventually_status(client, "/api/v1/me", 401, 1002)
    lab.login(user["username"], password="brand-new-password")


def test_token_create_list_revoke(lab: Lab) -> None:
    user = lab.create_user()
    created = cli(lab, "token", "create", "backup-script", "--user", user["username"], "--expires-days", "3")
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    assert token.startswith("syt_")
    client = lab.client(token=token, scheme="token")
    assert client.get("/api/v1/me").json()["username"] == user["username"]
    listed = cli(lab, "token", "list", "--user", user["username"]).stdout
    (row,) = table(listed)
    token_id = row["ID"]
    assert row["NAME"] == "backup-script" and token not in listed
    assert cli(lab, "token", "revoke", token_id).returncode == 0
    eventually_status(client, "/api/v1/me", 401, 1000)
