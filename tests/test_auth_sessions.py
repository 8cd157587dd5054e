"""Login, sessions, revocation and logout, over HTTP against the real server (SQLite and PostgreSQL)."""

from __future__ import annotations

from tests.servers import USER_PASSWORD, Lab


def test_login_returns_token_cookie_and_me(lab: Lab) -> None:
    user = lab.create_user("member")
    browser, reply = lab.login_cookie(user["username"])
    body = reply.json()
    assert body["token_type"] == "Bearer"
    assert body["user"]["username"] == user["username"] and body["user"]["role"] == "member"
    assert body["session"]["is_current"] is True
    assert body["expires_at"].endswith("Z")
    cookie = reply.cookies()["synthorg_session"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie  # plain HTTP here; HTTPS is covered by the proxy tests
    assert "_xsrf" in reply.cookies()

    bearer = lab.client(token=body["token"])
    me = bearer.get("/api/v1/me").json()
    assert me == {
        "id": user["id"],
        "username": user["username"],
        "display_name": "",
        "role": "member",
        "session_id": body["session"]["session_id"],
        "auth": "session",
    }
    assert browser.get("/api/v1/me").json()["session_id"] == body["session"]["session_id"]


def test_no_credentials_and_bad_signature_are_401_code_1000(lab: Lab) -> None:
    assert lab.client().get("/api/v1/me").code == 1000
    user = lab.create_user()
    _, body = lab.login(user["username"])
    forged = body["token"][:-4] + ("AAAA" if not body["token"].endswith("AAAA") else "BBBB")
    reply = lab.client(token=forged).get("/api/v1/me")
    assert reply.status == 401 and reply.code == 1000
    assert lab.client(token="garbage.token.here").get("/api/v1/me").code == 1000
    assert lab.client(token="x", scheme="Basic").get("/api/v1/me").code == 1000


def test_unknown_user_and_wrong_password_get_identical_401(lab: Lab) -> None:
    user = lab.create_user()
    anonymous = lab.client(headers={"X-Forwarded-For": "198.51.100.1"})
    wrong = anonymous.post(
        "/api/v1/auth/login", {"username": user["username"], "password": "not-the-password"}
    )
    unknown = anonymous.post(
        "/api/v1/auth/login", {"username": "nobody-here", "password": "not-the-password"}
    )
    assert wrong.status == unknown.status == 401
    strip = lambda reply: {k: v for k, v in reply.json().items() if k != "instance"}  # noqa: E731
    assert strip(wrong) == strip(unknown)
    assert wrong.code == 1000


def test_two_logins_list_two_sessions_exactly_one_current(lab: Lab) -> None:
    user = lab.create_user()
    first, first_body = lab.login(user["username"], headers={"User-Agent": "first-agent"})
    _, second_body = lab.login(user["username"])
    sessions = first.get("/api/v1/auth/sessions").json()
    assert [s["session_id"] for s in sessions] == [
        second_body["session"]["session_id"],
        first_body["session"]["session_id"],
    ]  # newest first
    assert [s["is_current"] for s in sessions] == [False, True]
    assert sessions[1]["user_agent"] == "first-agent"
    assert sessions[0]["ip_address"] == "127.0.0.1"
    assert {s["username"] for s in sessions} == {user["username"]}


MAC_CHROME = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
IPHONE_SAFARI = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.5 Mobile/15E148 Safari/604.1"
)


def test_sessions_carry_the_device_their_user_agent_describes(lab: Lab) -> None:
    user = lab.create_user()
    laptop, _ = lab.login(user["username"], headers={"User-Agent": MAC_CHROME})
    lab.login(user["username"], headers={"User-Agent": IPHONE_SAFARI})
    lab.login(user["username"], headers={"User-Agent": "\xff(" + "x" * 600})  # junk, cut to 512
    devices = [s["device"] for s in laptop.get("/api/v1/auth/sessions").json()]
    assert devices[2] == {
        "browser": "Chrome",
        "browser_version": "131.0.0",
        "os": "Mac OS X",
        "os_version": "10.15.7",
        "device": "Mac",
        "mobile": False,
    }
    assert devices[1]["browser"] == "Mobile Safari" and devices[1]["os"] == "iOS"
    assert devices[1]["device"] == "iPhone" and devices[1]["mobile"] is True
    assert devices[0]["browser"] is None and devices[0]["os"] is None and devices[0]["mobile"] is False


def test_admins_filter_everyones_sessions_by_user(lab: Lab) -> None:
    alice, bob = lab.create_user(), lab.create_user()
    alice_client, _ = lab.login(alice["username"])
    lab.login(bob["username"])
    lab.login(bob["username"])
    listed = lab.admin.get(f"/api/v1/auth/sessions?scope=all&user_id={bob['id']}").json()
    assert len(listed) == 2 and {s["username"] for s in listed} == {bob["username"]}
    for bad in ("0", "x", "-1", "99999999999"):
        reply = lab.admin.get(f"/api/v1/auth/sessions?scope=all&user_id={bad}")
        assert (reply.status, reply.code) == (422, 2000), bad
    assert alice_client.get(f"/api/v1/auth/sessions?scope=all&user_id={bob['id']}").status == 403


def test_other_users_sessions_never_appear_and_scope_all_is_admin_only(lab: Lab) -> None:
    alice, bob = lab.create_user(), lab.create_user()
    alice_client, alice_body = lab.login(alice["username"])
    _, bob_body = lab.login(bob["username"])
    own = {s["session_id"] for s in alice_client.get("/api/v1/auth/sessions?scope=own").json()}
    assert bob_body["session"]["session_id"] not in own
    assert alice_body["session"]["session_id"] in own
    denied = alice_client.get("/api/v1/auth/sessions?scope=all")
    assert denied.status == 403 and denied.code == 1001
    every = {s["session_id"] for s in lab.admin.get("/api/v1/auth/sessions?scope=all").json()}
    assert {alice_body["session"]["session_id"], bob_body["session"]["session_id"]} <= every
    bad = alice_client.get("/api/v1/auth/sessions?scope=everyone")
    assert bad.status == 422 and bad.code == 2000


def test_logout_revokes_the_token_with_1002_and_clears_the_cookie(lab: Lab) -> None:
    user = lab.create_user()
    client, _ = lab.login(user["username"])
    reply = client.post("/api/v1/auth/logout")
    assert reply.status == 204
    assert reply.headers["Clear-Site-Data"] == '"cookies"'
    assert "synthorg_session=" in reply.cookies()["synthorg_session"]
    again = client.get("/api/v1/me")
    assert again.status == 401 and again.code == 1002


def test_cookie_logout_needs_xsrf_then_clears_cookie(lab: Lab) -> None:
    user = lab.create_user()
    browser, _ = lab.login_cookie(user["username"])
    refused = browser.post("/api/v1/auth/logout")
    assert refused.status == 403 and refused.code == 1001
    assert browser.get("/api/v1/me").status == 200  # nothing happened
    done = browser.post("/api/v1/auth/logout", xsrf=True)
    assert done.status == 204
    assert "synthorg_session" not in browser.cookies


def test_delete_another_session_revokes_it(lab: Lab) -> None:
    user = lab.create_user()
    first, _ = lab.login(user["username"])
    second, second_body = lab.login(user["username"])
    reply = first.delete(f"/api/v1/auth/sessions/{second_body['session']['session_id']}")
    assert reply.status == 204
    assert second.get("/api/v1/me").code == 1002
    assert first.get("/api/v1/me").status == 200
    # Already revoked: still 204.
    assert first.delete(f"/api/v1/auth/sessions/{second_body['session']['session_id']}").status == 204


def test_unknown_and_foreign_session_ids_give_identical_404(lab: Lab) -> None:
    alice, bob = lab.create_user(), lab.create_user()
    alice_client, _ = lab.login(alice["username"])
    bob_client, bob_body = lab.login(bob["username"])
    foreign = alice_client.delete(f"/api/v1/auth/sessions/{bob_body['session']['session_id']}")
    unknown = alice_client.delete("/api/v1/auth/sessions/doesnotexist0000000000000000000000000000000")
    assert foreign.status == unknown.status == 404
    assert foreign.json()["detail"] == unknown.json()["detail"]
    assert foreign.code == unknown.code == 3000
    assert bob_client.get("/api/v1/me").status == 200
    # An admin may revoke anyone's session.
    assert lab.admin.delete(f"/api/v1/auth/sessions/{bob_body['session']['session_id']}").status == 204
    assert bob_client.get("/api/v1/me").code == 1002


def test_revoke_others_keeps_the_current_session(lab: Lab) -> None:
    user = lab.create_user()
    keeper, _ = lab.login(user["username"])
    others = [lab.login(user["username"])[0] for _ in range(2)]
    reply = keeper.post("/api/v1/auth/sessions/revoke-others")
    assert reply.status == 200 and reply.json() == {"revoked": 2}
    assert keeper.get("/api/v1/me").status == 200
    assert all(other.get("/api/v1/me").code == 1002 for other in others)
    assert len(keeper.get("/api/v1/auth/sessions").json()) == 1


def test_password_change_revokes_other_sessions_and_keeps_this_one(lab: Lab) -> None:
    user = lab.create_user()
    changer, _ = lab.login(user["username"])
    other, _ = lab.login(user["username"])
    wrong = changer.post(
        "/api/v1/me/password", {"current_password": "nope-nope", "new_password": "a-new-password"}
    )
    assert wrong.status == 403
    assert other.get("/api/v1/me").status == 200
    too_long = changer.post(
        "/api/v1/me/password", {"current_password": USER_PASSWORD, "new_password": "x" * 73}
    )
    assert too_long.status == 422 and "72 bytes" in too_long.json()["detail"]
    reply = changer.post(
        "/api/v1/me/password", {"current_password": USER_PASSWORD, "new_password": "a-new-password"}
    )
    assert reply.status == 204
    assert changer.get("/api/v1/me").status == 200
    assert other.get("/api/v1/me").code == 1002
    lab.login(user["username"], password="a-new-password")


def test_disabling_a_user_revokes_every_session(lab: Lab) -> None:
    user = lab.create_user()
    sessions = [lab.login(user["username"])[0] for _ in range(2)]
    reply = lab.admin.patch(f"/api/v1/users/{user['id']}", {"disabled": True})
    assert reply.status == 200 and reply.json()["disabled"] is True
    assert all(s.get("/api/v1/me").code == 1002 for s in sessions)
    refused = lab.client().post(
        "/api/v1/auth/login", {"username": user["username"], "password": USER_PASSWORD}
    )
    # The right password is told the account is disabled, and gets no session.
    assert (refused.status, refused.code) == (403, 1001) and "token" not in refused.json()


def test_oldest_session_is_revoked_past_the_limit(lab: Lab) -> None:
    user = lab.create_user()
    oldest, _ = lab.login(user["username"])
    for _ in range(10):  # max_sessions_per_user defaults to 10
        lab.login(user["username"])
    assert oldest.get("/api/v1/me").code == 1002


def test_bearer_write_needs_no_xsrf(lab: Lab) -> None:
    user = lab.create_user()
    client, _ = lab.login(user["username"])
    reply = client.patch("/api/v1/me", {"display_name": "Ada"})
    assert reply.status == 200 and reply.json()["display_name"] == "Ada"


def test_cookie_write_without_xsrf_is_403_and_with_it_succeeds(lab: Lab) -> None:
    user = lab.create_user()
    browser, _ = lab.login_cookie(user["username"])
    refused = browser.patch("/api/v1/me", {"display_name": "Mallory"})
    assert refused.status == 403 and refused.code == 1001
    assert browser.get("/api/v1/me").json()["display_name"] == ""
    accepted = browser.patch("/api/v1/me", {"display_name": "Grace"}, xsrf=True)
    assert accepted.status == 200 and accepted.json()["display_name"] == "Grace"


def test_api_tokens_work_jupyter_style_and_stop_when_revoked(lab: Lab) -> None:
    user = lab.create_user()
    client, _ = lab.login(user["username"])
    created = client.post("/api/v1/tokens", {"name": "script", "expires_days": 7})
    assert created.status == 201
    token = created.json()
    assert token["token"].startswith("syt_") and len(token["token"]) > 40
    for scheme in ("token", "Bearer"):
        me = lab.client(token=token["token"], scheme=scheme).get("/api/v1/me")
        assert me.status == 200 and me.json()["auth"] == "token" and me.json()["session_id"] is None
    listed = client.get("/api/v1/tokens").json()
    assert listed["next_cursor"] is None
    assert [t["id"] for t in listed["items"]] == [token["id"]] and "token" not in listed["items"][0]
    logout = lab.client(token=token["token"], scheme="token").post("/api/v1/auth/logout")
    assert logout.status == 400 and logout.code == 2000 and "DELETE /api/v1/tokens" in logout.json()["detail"]
    assert client.delete(f"/api/v1/tokens/{token['id']}").status == 204
    revoked = lab.client(token=token["token"], scheme="token").get("/api/v1/me")
    assert revoked.status == 401 and revoked.code == 1000
    assert client.get("/api/v1/tokens").json() == {"items": [], "next_cursor": None}


def test_users_api_is_admin_only_and_rejects_duplicates(lab: Lab) -> None:
    member = lab.create_user()
    client, _ = lab.login(member["username"])
    assert client.get("/api/v1/users").status == 403
    duplicate = lab.admin.post(
        "/api/v1/users", {"username": member["username"].upper(), "password": USER_PASSWORD, "role": "member"}
    )
    assert duplicate.status == 409 and duplicate.code == 4001
    bad = lab.admin.post(
        "/api/v1/users", {"username": "bad name!", "password": USER_PASSWORD, "role": "member"}
    )
    assert bad.status == 422
    bad_role = lab.admin.post(
        "/api/v1/users", {"username": "okname", "password": USER_PASSWORD, "role": "king"}
    )
    assert bad_role.status == 422
    assert lab.admin.get("/api/v1/users/999999").status == 404
    names = [u["username"] for u in lab.admin.get("/api/v1/users").json()]
    assert member["username"] in names and "admin" in names


def test_audit_log_records_logins_logout_and_revocations_without_secrets(lab: Lab) -> None:
    user = lab.create_user()
    lab.client().post("/api/v1/auth/login", {"username": user["username"], "password": "wrong-password-x"})
    client, body = lab.login(user["username"])
    client.post("/api/v1/auth/logout")
    entries = lab.admin.get(f"/api/v1/audit?actor={user['username']}&limit=50").json()["items"]
    seen = {(e["action"], e["outcome"]) for e in entries}
    assert {("auth.login", "failure"), ("auth.login", "success"), ("auth.logout", "success")} <= seen
    assert ("session.revoke", "success") in seen
    text = str(entries)
    assert "wrong-password-x" not in text and USER_PASSWORD not in text and body["token"] not in text
    first_page = lab.admin.get("/api/v1/audit?limit=2").json()
    assert len(first_page["items"]) == 2 and first_page["next_cursor"]
    second_page = lab.admin.get(f"/api/v1/audit?limit=2&cursor={first_page['next_cursor']}").json()
    assert {e["id"] for e in second_page["items"]}.isdisjoint({e["id"] for e in first_page["items"]})
    assert client.get("/api/v1/audit").status == 401
    assert lab.login(user["username"])[0].get("/api/v1/audit").status == 403


def test_metrics_need_admin_or_token(lab: Lab) -> None:
    # From loopback with no credentials is metrics.allow_networks (tests/test_metrics_access.py);
    # a relayed request is not.
    relayed = {"X-Forwarded-For": "198.51.100.7"}
    assert lab.client(headers=relayed).get("/metrics").status == 401
    member = lab.create_user()
    client, _ = lab.login(member["username"], headers=relayed)
    assert client.get("/metrics").status == 403
    reply = lab.admin.get("/metrics")
    assert reply.status == 200
    text = reply.body.decode()
    for name in (
        "synthorg_http_requests_total",
        "synthorg_http_request_duration_seconds_bucket",
        "synthorg_active_sessions",
        "synthorg_failed_logins_total",
        "synthorg_open_websockets",
    ):
        assert name in text
    token = client.post("/api/v1/tokens", {"name": "prometheus"}).json()["token"]
    assert lab.client(token=token, scheme="token").get("/metrics").status == 200


def test_restart_keeps_revoked_sessions_revoked_and_valid_ones_valid(lab: Lab) -> None:
    user = lab.create_user()
    alive, _ = lab.login(user["username"])
    dead, _ = lab.login(user["username"])
    dead.post("/api/v1/auth/logout")
    server = lab.server
    assert server.terminate() == 0
    server.start()
    lab.url = server.url
    for client in (alive, dead, lab.admin):
        client.port = server.port
    assert alive.get("/api/v1/me").status == 200
    assert dead.get("/api/v1/me").code == 1002


def test_logging_in_again_ends_the_session_the_browser_held(lab: Lab) -> None:
    user = lab.create_user()
    browser, first = lab.login_cookie(user["username"])
    old_token = first.json()["token"]
    again = browser.post(
        "/api/v1/auth/login", {"username": user["username"], "password": USER_PASSWORD}, xsrf=True
    )
    assert again.status == 200
    assert lab.client(token=old_token).get("/api/v1/me").code == 1002
    assert browser.get("/api/v1/me").json()["session_id"] == again.json()["session"]["session_id"]
