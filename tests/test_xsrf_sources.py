"""Where the XSRF value may come from, login CSRF, and the session a `?token=` page load replaces.

The `_xsrf` value counts only in the `X-XSRFToken` / `X-CSRFToken` header or the form body: in
the query string it would end up in logs and the browser's history.
"""

from __future__ import annotations

from tests.client import Client
from tests.servers import USER_PASSWORD, Lab
from tests.test_pages import FORM, form, xsrf_field

COOKIE = "synthorg_session"


def sessions_of(lab: Lab, username: str) -> list[dict]:
    everyone = lab.admin.get("/api/v1/auth/sessions?scope=all").json()
    return [session for session in everyone if session.get("username") == username]


def test_a_cross_site_login_form_logs_nobody_in(lab: Lab) -> None:
    planted = lab.create_user()
    # The attacker fetches a genuine _xsrf value for the form on their own site...
    attacker_value = xsrf_field(lab.client().get("/login").body)
    # ...but the victim's browser sends no _xsrf cookie of ours cross-site (SameSite=Strict),
    # or a different one of its own.
    for cookies in ({}, {"_xsrf": xsrf_field(lab.client().get("/login").body)}):
        victim = lab.client(headers={"Origin": "https://evil.example"})
        victim.cookies.update(cookies)
        reply = victim.post(
            "/login",
            raw=form(_xsrf=attacker_value, username=planted["username"], password=USER_PASSWORD),
            headers=FORM,
        )
        assert reply.status == 403
        assert COOKIE not in reply.cookies() and COOKIE not in victim.cookies
    assert sessions_of(lab, planted["username"]) == []
    lab.login(planted["username"])
    assert len(sessions_of(lab, planted["username"])) == 1


def test_xsrf_in_the_query_string_does_not_count_for_a_form(lab: Lab) -> None:
    user = lab.create_user()
    browser = lab.client()
    value = xsrf_field(browser.get("/login").body)
    credentials = form(username=user["username"], password=USER_PASSWORD)
    refused = browser.post(f"/login?_xsrf={value}", raw=credentials, headers=FORM)
    assert refused.status == 403 and COOKIE not in browser.cookies
    accepted = browser.post(
        "/login", raw=form(_xsrf=value, username=user["username"], password=USER_PASSWORD), headers=FORM
    )
    assert accepted.status == 302 and COOKIE in browser.cookies


def test_xsrf_in_the_query_string_does_not_count_for_a_cookie_authenticated_api_write(lab: Lab) -> None:
    user = lab.create_user()
    browser, _ = lab.login_cookie(user["username"])
    value = browser.cookies["_xsrf"]
    refused = browser.patch(f"/api/v1/me?_xsrf={value}", {"display_name": "From the query"})
    assert refused.status == 403 and refused.code == 1001
    assert browser.get("/api/v1/me").json()["display_name"] == ""
    for header in ("X-XSRFToken", "X-CSRFToken"):
        accepted = browser.patch("/api/v1/me", {"display_name": header}, headers={header: value})
        assert accepted.status == 200 and accepted.json()["display_name"] == header


def test_a_query_token_page_load_ends_the_session_the_browser_held(lab: Lab) -> None:
    user = lab.create_user()
    browser, _ = lab.login_cookie(user["username"])
    held = browser.cookies[COOKIE]
    bearer, _ = lab.login(user["username"])
    api_token = bearer.post("/api/v1/tokens", {"name": "page-load"}).json()["token"]
    # A token that is not valid changes nothing.
    assert browser.get("/?token=not-a-token").status == 302
    assert browser.cookies[COOKIE] == held and browser.get("/").status == 200

    assert browser.get(f"/?token={api_token}").status == 302
    assert browser.cookies[COOKIE] != held
    assert browser.get("/api/v1/me").json()["auth"] == "session"
    old = Client(lab.url)
    old.cookies[COOKIE] = held
    reply = old.get("/api/v1/me")
    assert reply.status == 401 and reply.code == 1002
