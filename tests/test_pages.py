"""The pages over plain HTTP: redirects and what the login page says after them, XSRF on forms,
`?token=` exchange, safe `next`, the layout's favicon and 404 page."""

from __future__ import annotations

import re
from pathlib import Path

from tests.client import Client
from tests.servers import USER_PASSWORD, Lab, ServerProcess, setup_token, write_config


def xsrf_field(html: bytes) -> str:
    match = re.search(rb'name="_xsrf" value="([^"]+)"', html)
    assert match, html
    return match.group(1).decode()


def form(**fields: str) -> bytes:
    from urllib.parse import urlencode

    return urlencode(fields).encode()


FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def test_home_without_session_redirects_to_login_with_next(lab: Lab) -> None:
    reply = lab.client().get("/")
    assert reply.status == 302
    assert reply.headers["Location"] == "/login?next=%2F"


def test_login_page_sets_xsrf_cookie_and_form_needs_it(lab: Lab) -> None:
    user = lab.create_user()
    browser = lab.client()
    page = browser.get("/login")
    assert page.status == 200 and b'name="password"' in page.body and b'name="token"' in page.body
    assert "_xsrf" in browser.cookies
    without = browser.post(
        "/login", raw=form(username=user["username"], password=USER_PASSWORD), headers=FORM
    )
    assert without.status == 403
    token = xsrf_field(page.body)
    ok = browser.post(
        "/login",
        raw=form(_xsrf=token, username=user["username"], password=USER_PASSWORD, next="/?tab=1"),
        headers=FORM,
    )
    assert ok.status == 302 and ok.headers["Location"] == "/?tab=1"
    cookie = ok.cookies()["synthorg_session"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    home = browser.get("/")
    assert home.status == 200 and user["username"].encode() in home.body


def test_unsafe_next_goes_to_base_url(lab: Lab) -> None:
    user = lab.create_user()
    for unsafe in ("https://evil.example/", "//evil.example/x", "/\\evil.example", "javascript:alert(1)"):
        browser = lab.client()
        token = xsrf_field(browser.get("/login").body)
        reply = browser.post(
            "/login",
            raw=form(_xsrf=token, username=user["username"], password=USER_PASSWORD, next=unsafe),
            headers=FORM,
        )
        assert reply.status == 302 and reply.headers["Location"] == "/", unsafe


def test_wrong_password_shows_an_error_on_the_page(lab: Lab) -> None:
    browser = lab.client()
    token = xsrf_field(browser.get("/login").body)
    reply = browser.post(
        "/login", raw=form(_xsrf=token, username="nobody", password="wrong-pass"), headers=FORM
    )
    assert reply.status == 401 and b"Invalid username or password." in reply.body


def test_query_token_is_exchanged_for_a_cookie_and_removed_from_the_url(lab: Lab) -> None:
    user = lab.create_user()
    client, _ = lab.login(user["username"])
    api_token = client.post("/api/v1/tokens", {"name": "browser"}).json()["token"]
    browser = lab.client()
    reply = browser.get(f"/?token={api_token}&tab=2")
    assert reply.status == 302 and reply.headers["Location"] == "/?tab=2"
    assert "synthorg_session" in browser.cookies
    assert browser.get("/?tab=2").status == 200
    me = browser.get("/api/v1/me").json()
    assert me["username"] == user["username"] and me["auth"] == "session"
    log = lab.server.log()
    assert api_token not in log and "token=***" in log


def test_logout_form_ends_the_session(lab: Lab) -> None:
    user = lab.create_user()
    browser, _ = lab.login_cookie(user["username"])
    home = browser.get("/")
    reply = browser.post("/logout", raw=form(_xsrf=xsrf_field(home.body)), headers=FORM)
    assert reply.status == 302 and reply.headers["Location"] == "/login?reason=signed_out"
    assert b"You signed out." in browser.get(reply.headers["Location"]).body
    assert browser.get("/").status == 302


def test_a_signed_in_visitor_to_the_login_page_goes_to_next_or_home(lab: Lab) -> None:
    user = lab.create_user()
    browser, _ = lab.login_cookie(user["username"])
    for asked, lands in (("/login", "/"), ("/login?next=%2F%3Ftab%3D3", "/?tab=3")):
        reply = browser.get(asked)
        assert reply.status == 302 and reply.headers["Location"] == lands, asked
    reply = browser.get("/login?next=https://evil.example/")
    assert reply.status == 302 and reply.headers["Location"] == "/"


def test_a_query_token_on_the_login_page_lands_on_next(lab: Lab) -> None:
    user = lab.create_user()
    client, _ = lab.login(user["username"])
    api_token = client.post("/api/v1/tokens", {"name": "link"}).json()["token"]
    browser = lab.client()
    exchanged = browser.get(f"/login?next=%2F%3Ftab%3D4&token={api_token}")
    assert exchanged.status == 302 and exchanged.headers["Location"] == "/login?next=%2F%3Ftab%3D4"
    onward = browser.get(exchanged.headers["Location"])
    assert onward.status == 302 and onward.headers["Location"] == "/?tab=4"
    assert browser.get("/?tab=4").status == 200


def test_a_rejected_query_token_is_named_on_the_login_page(lab: Lab) -> None:
    browser = lab.client()
    for asked, lands in (
        ("/?token=syt_mistyped&tab=1", "/login?next=%2F%3Ftab%3D1&reason=token_rejected"),
        ("/login?next=%2Fx&token=syt_mistyped", "/login?next=%2Fx&reason=token_rejected"),
    ):
        reply = browser.get(asked)
        assert reply.status == 302 and reply.headers["Location"] == lands, asked
        page = browser.get(lands)
        assert page.status == 200 and b"The access token was not accepted" in page.body
    assert "synthorg_session" not in browser.cookies


def test_a_revoked_session_is_named_on_the_login_page(lab: Lab) -> None:
    user = lab.create_user()
    browser, login = lab.login_cookie(user["username"])
    session_id = login.json()["session"]["session_id"]
    assert lab.admin.delete(f"/api/v1/auth/sessions/{session_id}").status == 204
    reply = browser.get("/?tab=1")
    assert reply.status == 302 and reply.headers["Location"] == "/login?next=%2F%3Ftab%3D1&reason=revoked"
    page = browser.get(reply.headers["Location"])
    assert b"You were signed out from another device." in page.body
    # Only the names the server gives are shown: a reason made up in a link shows nothing.
    made_up = lab.client().get("/login?reason=%3Cb%3Ehello")
    assert made_up.status == 200 and b"hello" not in made_up.body and b'id="notice"' not in made_up.body


def test_a_failed_form_login_keeps_the_username(lab: Lab) -> None:
    user = lab.create_user()
    browser = lab.client()
    token = xsrf_field(browser.get("/login").body)
    reply = browser.post(
        "/login", raw=form(_xsrf=token, username=user["username"], password="wrong-pass"), headers=FORM
    )
    assert reply.status == 401
    assert f'value="{user["username"]}"'.encode() in reply.body
    assert b'name="password" type="password" autocomplete="current-password" required autofocus' in reply.body


def test_page_titles_carry_the_lab_name(lab: Lab) -> None:
    assert b"<title>Log in \xc2\xb7 Synthorg Lab</title>" in lab.client().get("/login").body
    changed = lab.admin.put("/api/v1/settings/ui/lab_name", {"value": "Cryo & Co"}, headers={"If-Match": "*"})
    assert changed.status == 200
    try:
        user = lab.create_user()
        browser, _ = lab.login_cookie(user["username"])
        assert b"<title>Dashboard \xc2\xb7 Cryo &amp; Co</title>" in browser.get("/").body
        assert b"<title>Log in \xc2\xb7 Cryo &amp; Co</title>" in lab.client().get("/login").body
    finally:
        lab.admin.delete("/api/v1/settings/ui/lab_name", headers={"If-Match": "*"})


def test_the_favicon_is_served_and_linked(lab: Lab) -> None:
    icon = lab.client().get("/favicon.ico")
    assert icon.status == 200 and icon.body.startswith(b"\x00\x00\x01\x00")
    assert icon.headers["Content-Type"] in ("image/x-icon", "image/vnd.microsoft.icon")
    assert b'<link rel="icon" href="/favicon.ico"' in lab.client().get("/login").body


def test_an_unknown_page_is_a_404_page_in_the_layout_with_a_link_home(lab: Lab) -> None:
    anonymous = lab.client().get("/no/such/page")
    assert anonymous.status == 404 and anonymous.headers["Content-Type"].startswith("text/html")
    assert b"Page not found" in anonymous.body and b'id="home-link"' in anonymous.body
    assert b'href="/"' in anonymous.body and b"Synthorg Lab</title>" in anonymous.body
    assert b'id="logout"' not in anonymous.body
    user = lab.create_user()
    browser, _ = lab.login_cookie(user["username"])
    signed_in = browser.get("/no/such/page")
    assert signed_in.status == 404 and b'id="logout"' in signed_in.body
    assert user["username"].encode() in signed_in.body
    # The API keeps answering problem JSON.
    api = browser.get("/api/v1/no/such/route")
    assert api.status == 404 and api.headers["Content-Type"].startswith("application/problem+json")
    assert api.code == 3002


def test_the_setup_form_refuses_two_different_passwords_and_keeps_the_username(
    tmp_path: Path, sqlite_url: str
) -> None:
    """The page's script checks the repeat before sending; a browser without it posts the form,
    and the server checks the same."""
    server = ServerProcess(write_config(tmp_path, sqlite_url)).start()
    try:
        token = setup_token(server)
        browser = Client(server.url)
        page = browser.get(f"/setup?token={token}")
        assert b'id="password-repeat"' in page.body and b'minlength="8"' in page.body
        fields = {"_xsrf": xsrf_field(page.body), "token": token, "username": "root", "password": "p" * 12}
        differ = browser.post("/setup", raw=form(**fields, password_repeat="q" * 12), headers=FORM)
        assert differ.status == 422 and b"The two passwords differ" in differ.body
        assert b'value="root"' in differ.body and b"setup-form" in differ.body
        assert Client(server.url).get("/login").status == 302  # still no user: on to setup
        created = browser.post("/setup", raw=form(**fields, password_repeat="p" * 12), headers=FORM)
        assert created.status == 302 and created.headers["Location"] == "/"
    finally:
        assert server.terminate() == 0
