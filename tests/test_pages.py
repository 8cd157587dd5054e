"""The first pages over plain HTTP: redirects, XSRF on forms, `?token=` exchange, safe `next`."""

from __future__ import annotations

import re

from tests.servers import USER_PASSWORD, Lab


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
    assert reply.status == 302 and reply.headers["Location"] == "/login"
    assert browser.get("/").status == 302
