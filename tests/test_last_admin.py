"""The lab keeps at least one enabled admin, on every path and under races (issue 16, defect 3).

Two admins who demote, disable or delete each other at the same moment: one change goes
through, the other is refused (403 when its own actor has just lost the admin role, 409/4004
when it would remove the last admin, 401 when its session ended first), and one enabled admin
remains. Each round starts from a lab whose only enabled admin is the survivor of the round
before, adds a second admin and fires both requests together (threads released by a barrier,
one connection each). The command line, which acts with no account, gets 4004 and exits 1.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.client import Client, Reply
from tests.servers import USER_PASSWORD, Lab, cli
from tests.test_login_concurrency import burst

ROUNDS = 5
ACTIONS = ("demote", "disable", "delete")
# Every pair of the three actions that remove an admin, each side with each action.
PAIRS = list(itertools.combinations_with_replacement(ACTIONS, 2))


@dataclass
class Admin:
    client: Client
    user: dict[str, Any]


def remove(actor: Admin, target: Admin, action: str) -> Callable[[], Reply]:
    path = f"/api/v1/users/{target.user['id']}"
    if action == "delete":
        return lambda: actor.client.delete(path)
    body = {"role": "member"} if action == "demote" else {"disabled": True}
    return lambda: actor.client.patch(path, body)


def new_admin(lab_url: str, survivor: Admin, name: str, on: str | None = None) -> Admin:
    """A second admin, created by `survivor` and logged in (on the server at `on`, if given)."""
    created = survivor.client.post(
        "/api/v1/users", {"username": name, "password": USER_PASSWORD, "role": "admin"}
    )
    assert created.status == 201, created
    return Admin(signed_in(lab_url, name, on), created.json())


def signed_in(lab_url: str, name: str, on: str | None = None) -> Client:
    login = Client(lab_url).post("/api/v1/auth/login", {"username": name, "password": USER_PASSWORD})
    assert login.status == 200, login
    return Client(on or lab_url, token=login.json()["token"])


def enabled_admins(client: Client) -> list[str]:
    users = client.get("/api/v1/users")
    assert users.status == 200, users
    return [u["username"] for u in users.json() if u["role"] == "admin" and not u["disabled"]]


def assert_refused(reply: Reply) -> None:
    """The loser of a race: its actor lost the role or the account (403, or 401 once its session
    ended), or the change would have left no admin (409/4004)."""
    assert (reply.status, reply.code) in {(403, 1001), (409, 4004), (401, 1002), (401, 1000)}, reply


def race(lab_url: str, survivor: Admin, first: str, second: str, label: str, on: str | None = None) -> Admin:
    """One round; returns the admin left standing."""
    other = new_admin(lab_url, survivor, label, on)
    pair = (survivor, other)
    replies = burst([remove(survivor, other, first), remove(other, survivor, second)])
    won = [n for n, reply in enumerate(replies) if reply.status in (200, 204)]
    assert len(won) == 1, f"{first} vs {second}: {replies}"
    assert_refused(replies[1 - won[0]])
    winner = pair[won[0]]
    assert enabled_admins(winner.client) == [winner.user["username"]]
    return winner


@pytest.fixture(scope="module")
def admins(lab: Lab) -> Iterator[list[Admin]]:
    """The lab's one enabled admin, replaced by the survivor of each round."""
    yield [Admin(lab.admin, lab.admin.get("/api/v1/me").json())]


@pytest.mark.parametrize(("first", "second"), PAIRS)
def test_two_admins_removing_each_other_at_once_leave_exactly_one(
    lab: Lab, admins: list[Admin], first: str, second: str
) -> None:
    for round_number in range(ROUNDS):
        label = f"{first[:3]}-{second[:3]}-{round_number}"
        admins[0] = race(lab.url, admins[0], first, second, label)


def test_an_admin_cannot_disable_demote_or_delete_themselves(lab: Lab, admins: list[Admin]) -> None:
    me = admins[0]
    path = f"/api/v1/users/{me.user['id']}"
    for reply in (
        me.client.patch(path, {"role": "manager"}),
        me.client.patch(path, {"disabled": True}),
        me.client.delete(path),
    ):
        assert (reply.status, reply.code) == (409, 4000), reply
    assert enabled_admins(me.client) == [me.user["username"]]


@pytest.mark.parametrize(
    "command", [("set-role", "{name}", "member"), ("disable", "{name}"), ("delete", "{name}")]
)
def test_the_command_line_refuses_to_remove_the_last_enabled_admin(
    lab: Lab, admins: list[Admin], command: tuple[str, ...]
) -> None:
    name = admins[0].user["username"]
    before = admins[0].client.get("/api/v1/users").json()
    result = cli(lab, "user", *(part.format(name=name) for part in command))
    assert result.returncode == 1, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "last enabled admin" in lines[0], result.stderr
    assert admins[0].client.get("/api/v1/users").json() == before
    assert admins[0].client.get("/api/v1/me").status == 200  # no session ended either
    action = "user.delete" if command[0] == "delete" else "user.update"
    entries = admins[0].client.get(f"/api/v1/audit?action={action}&limit=50").json()["items"]
    assert any(
        (row["target"], row["outcome"], row["detail"]) == (name, "conflict", {"reason": "last_admin"})
        for row in entries
    ), entries


def test_a_disabled_admin_does_not_count_as_the_admin_that_remains(lab: Lab, admins: list[Admin]) -> None:
    me = admins[0]
    dormant = new_admin(lab.url, me, "dormant-admin")
    assert me.client.patch(f"/api/v1/users/{dormant.user['id']}", {"disabled": True}).status == 200
    refused = cli(lab, "user", "set-role", me.user["username"], "manager")
    assert refused.returncode == 1 and "last enabled admin" in refused.stderr
    # Once the other admin is enabled again, the command line may demote this one.
    assert me.client.patch(f"/api/v1/users/{dormant.user['id']}", {"disabled": False}).status == 200
    assert cli(lab, "user", "set-role", me.user["username"], "manager").returncode == 0
    back = signed_in(lab.url, "dormant-admin").patch(f"/api/v1/users/{me.user['id']}", {"role": "admin"})
    assert back.status == 200, back
