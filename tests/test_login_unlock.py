"""A lab behind one NAT address: the allowlist, the admin's unlock (API and command line), and
what a disabled user is told.

The server trusts 127.0.0.1 as a proxy, so each test picks its client address with
X-Forwarded-For, as nginx would report it. 198.18.0.0/24 plays the lab's NAT.
"""

from __future__ import annotations

from tests.servers import USER_PASSWORD, Lab, cli, wait_for

NAT = "198.18.0.7"
LAB_CONFIG = {
    "server": {"trusted_proxies": ["127.0.0.1"]},
    "auth": {
        "lockout_threshold": 3,
        "lockout_minutes": 15,
        "login_rate_limit_per_minute": 5,
        "rate_limit_allowlist": ["198.18.0.0/24"],
    },
}


def attempt(lab: Lab, ip: str, username: str, password: str):  # type: ignore[no-untyped-def]
    client = lab.client(headers={"X-Forwarded-For": ip})
    return client.post("/api/v1/auth/login", {"username": username, "password": password})


def lock(lab: Lab, ip: str, username: str) -> None:
    for _ in range(3):
        assert attempt(lab, ip, username, "wrong-password").status == 401
    locked = attempt(lab, ip, username, USER_PASSWORD)
    assert (locked.status, locked.code) == (429, 1004)


def test_behind_an_allowlisted_nat_the_typos_of_some_never_lock_out_the_others(lab: Lab) -> None:
    typist = lab.create_user()
    lock(lab, NAT, typist["username"])
    # Far more failures from the NAT than the per-IP limit (5 a minute) allows elsewhere.
    for n in range(8):
        assert attempt(lab, NAT, f"nat-ghost{n}", "wrong-password").status == 401
    colleague = lab.create_user()
    assert attempt(lab, NAT, colleague["username"], USER_PASSWORD).status == 200
    # The per-(account, IP) lockout still holds behind the NAT.
    assert attempt(lab, NAT, typist["username"], USER_PASSWORD).code == 1004


def test_an_address_outside_the_allowlist_keeps_the_per_ip_limit(lab: Lab) -> None:
    outside = "198.19.0.7"
    for n in range(5):
        assert attempt(lab, outside, f"out-ghost{n}", "wrong-password").status == 401
    user = lab.create_user()
    limited = attempt(lab, outside, user["username"], USER_PASSWORD)
    assert (limited.status, limited.code) == (429, 5000)


def test_admin_unlock_clears_the_lockout_from_every_address_and_is_audited(lab: Lab) -> None:
    user = lab.create_user()
    lock(lab, NAT, user["username"])
    lock(lab, "203.0.113.40", user["username"])
    reply = lab.admin.post(f"/api/v1/users/{user['id']}/unlock")
    assert reply.status == 200, reply
    assert reply.json()["username"] == user["username"]
    assert attempt(lab, NAT, user["username"], USER_PASSWORD).status == 200
    assert attempt(lab, "203.0.113.40", user["username"], USER_PASSWORD).status == 200
    entries = lab.admin.get("/api/v1/audit?action=user.unlock&limit=50").json()["items"]
    assert any(e["target"] == user["username"] and e["actor"] == "admin" for e in entries)
    # The unlock forgives the past only: new failures lock the account again.
    lock(lab, NAT, user["username"])


def test_unlock_is_for_admins_and_answers_unknown_or_malformed_ids(lab: Lab) -> None:
    member = lab.create_user()
    client, _ = lab.login(member["username"])
    denied = client.post(f"/api/v1/users/{member['id']}/unlock")
    assert (denied.status, denied.code) == (403, 1001)
    assert lab.client().post(f"/api/v1/users/{member['id']}/unlock").status == 401
    assert lab.admin.post("/api/v1/users/999999/unlock").code == 3000
    assert lab.admin.post("/api/v1/users/not-an-id/unlock").status in (404, 422)


def test_user_unlock_on_the_command_line_reaches_the_running_server(lab: Lab) -> None:
    user = lab.create_user()
    lock(lab, NAT, user["username"])
    result = cli(lab, "user", "unlock", user["username"])
    assert result.returncode == 0, result.stderr
    assert f"login lockouts of {user['username']} cleared" in result.stdout
    # A locked attempt is refused before its password is checked, so polling counts nothing.
    wait_for(
        lambda: attempt(lab, NAT, user["username"], USER_PASSWORD).status == 200,
        5.0,
        "the running server to apply the unlock",
        interval=0.1,
    )
    unknown = cli(lab, "user", "unlock", "nobody-at-all")
    assert unknown.returncode == 1 and "No user named 'nobody-at-all'" in unknown.stderr


def test_a_disabled_user_with_the_right_password_is_told_the_account_is_disabled(lab: Lab) -> None:
    user = lab.create_user()
    assert lab.admin.patch(f"/api/v1/users/{user['id']}", {"disabled": True}).status == 200
    told = attempt(lab, "192.0.2.60", user["username"], USER_PASSWORD)
    assert (told.status, told.code) == (403, 1001)
    assert "disabled" in told.json()["detail"]
    assert "token" not in told.json() and "Set-Cookie" not in told.headers
    entries = lab.admin.get("/api/v1/audit?action=auth.login&limit=200").json()["items"]
    assert any(
        e["target"] == user["username"]
        and e["outcome"] == "failure"
        and e["detail"] == {"reason": "disabled"}
        for e in entries
    )


def test_a_wrong_password_for_a_disabled_user_gets_the_generic_401(lab: Lab) -> None:
    user = lab.create_user()
    assert lab.admin.patch(f"/api/v1/users/{user['id']}", {"disabled": True}).status == 200
    wrong = attempt(lab, "192.0.2.61", user["username"], "wrong-password")
    unknown = attempt(lab, "192.0.2.61", "never-existed", "wrong-password")
    assert (wrong.status, wrong.code) == (401, 1000)
    strip = ("instance",)
    assert {k: v for k, v in wrong.json().items() if k not in strip} == {
        k: v for k, v in unknown.json().items() if k not in strip
    }
