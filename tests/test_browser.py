"""Setup, login and logout in a real headless Chromium, served by the real server (SPEC section 4,
issue 12's "found when the current pages were tried").

What a plain HTTP client cannot show: that the forms work as the page's script sends them (JSON
to the API, the XSRF value in its header), that the browser ends up where it should, what the
page then says, and that script on the page cannot read the session cookie.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import quote

import pytest
from playwright.sync_api import BrowserContext, Page, expect

from tests.browser import HeadlessChromium
from tests.servers import USER_PASSWORD, Lab, ServerProcess, setup_token, wait_for, write_config

LAB_CONFIG = {"auth": {"lockout_threshold": 2, "login_rate_limit_per_minute": 50}}
SESSION_COOKIE = "synthorg_session"
INVALID_LOGIN = "Invalid username or password."
COUNTDOWN = re.compile(r"try again in (\d+) s")


@pytest.fixture(scope="module")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """SQLite only: the pages do not depend on the backend, and the API tests cover both."""
    return f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('db-sqlite') / 'synthorg.db'}"


def log_in(page: Page, username: str, password: str = USER_PASSWORD) -> None:
    """Fill and submit the password form of the login page the browser is on."""
    page.fill("#username", username)
    page.fill("#password", password)
    page.click("#login")


def session_cookie(context: BrowserContext) -> dict | None:
    return next((c for c in context.cookies() if c["name"] == SESSION_COOKIE), None)


def api_token_for(lab: Lab, username: str) -> str:
    client, _ = lab.login(username)
    reply = client.post("/api/v1/tokens", {"name": "b"})
    assert reply.status == 201, reply
    return reply.json()["token"]


def sessions_of(lab: Lab, username: str) -> list[dict]:
    return [s for s in lab.admin.get("/api/v1/auth/sessions?scope=all").json() if s["username"] == username]


def wait_until_online(lab: Lab, username: str) -> None:
    """The page's own socket is open once the lab's presence lists this user."""

    def online() -> bool:
        return any(p["username"] == username for p in lab.admin.get("/api/v1/presence").json())

    wait_for(online, 10.0, "the page's WebSocket to connect")


def expect_counting_down(page: Page, selector: str, words: str) -> None:
    """The wait is shown in `words`, then shown again one second or more lower."""
    error = page.locator(selector)
    expect(error).to_contain_text(re.compile(re.escape(words) + r"; try again in \d+ s"))
    first = int(COUNTDOWN.search(error.inner_text()).group(1))
    assert first > 1
    expect(error).not_to_contain_text(f"try again in {first} s", timeout=3000)
    assert int(COUNTDOWN.search(error.inner_text()).group(1)) < first


def test_setup_link_creates_the_admin_once(tmp_path: Path, sqlite_url: str, page: Page) -> None:
    server = ServerProcess(write_config(tmp_path, sqlite_url)).start()
    try:
        setup_url = f"{server.url}setup?token={setup_token(server)}"
        stale = page.context.new_page()
        stale.goto(setup_url)
        page.goto(setup_url)
        sent: list[str] = []
        page.on("request", lambda request: sent.append(request.url) if "/api/" in request.url else None)

        # The repeated password is checked on the page: nothing is sent until both match.
        page.fill("#username", "first-admin")
        page.fill("#password", "first-admin-password")
        page.fill("#password-repeat", "first-admin-passwort")
        page.click("#create")
        expect(page.locator("#error")).to_have_text("The two passwords differ: type the same password twice.")
        expect(page.locator("#password-repeat")).to_have_attribute("aria-invalid", "true")
        assert sent == []
        # A refusal from the server keeps what was typed.
        page.fill("#username", "first admin")
        page.fill("#password-repeat", "first-admin-password")
        page.click("#create")
        expect(page.locator("#error")).to_contain_text("username")
        expect(page.locator("#username")).to_have_value("first admin")
        assert sent == [f"{server.url}api/v1/auth/setup"]

        page.fill("#username", "first-admin")
        page.click("#create")
        page.wait_for_url(server.url)
        expect(page.locator("#username")).to_have_text("first-admin")
        expect(page.locator("#role")).to_have_text("admin")

        # The link is spent: it now says setup is complete and leads to the login page.
        page.goto(setup_url)
        expect(page.locator("#setup-complete")).to_be_visible()
        expect(page.locator("#setup-form")).to_have_count(0)
        # A form opened before, submitted after, is refused and then says the same.
        stale.fill("#username", "second-admin")
        stale.fill("#password", "second-admin-password")
        stale.fill("#password-repeat", "second-admin-password")
        stale.click("#create")
        expect(stale.locator("#setup-complete")).to_be_visible()
        assert stale.url == setup_url
        # Its link to the login page leads home: this browser is signed in as the first admin.
        stale.click("#login-link")
        stale.wait_for_url(server.url)
    finally:
        assert server.terminate() == 0


def test_password_login_returns_to_home_with_an_httponly_session_cookie(
    lab: Lab, context: BrowserContext, page: Page
) -> None:
    user = lab.create_user("manager")
    page.goto(lab.url)
    page.wait_for_url(f"{lab.url}login?next=%2F")
    assert session_cookie(context) is None
    log_in(page, user["username"])
    page.wait_for_url(lab.url)
    expect(page.locator("#who")).to_have_text(user["username"])
    expect(page.locator("#username")).to_have_text(user["username"])
    expect(page.locator("#role")).to_have_text("manager")

    cookie = session_cookie(context)
    assert cookie is not None
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Lax"
    visible_to_script = page.evaluate("document.cookie")
    assert SESSION_COOKIE not in visible_to_script
    assert "_xsrf=" in visible_to_script


def test_login_never_follows_next_to_another_origin(lab: Lab, context: BrowserContext, page: Page) -> None:
    user = lab.create_user()
    foreign: list[str] = []
    # Should the page go elsewhere, the request is recorded and refused, never sent.
    context.route(re.compile(r"^https?://evil\.example/"), lambda route: route.abort())
    context.on(
        "request", lambda request: None if request.url.startswith(lab.url) else foreign.append(request.url)
    )

    page.goto(f"{lab.url}login?next=https://evil.example/")
    log_in(page, user["username"])
    page.wait_for_url(lab.url)
    expect(page.locator("#username")).to_have_text(user["username"])
    assert foreign == []

    page.goto(f"{lab.url}login?next=/?tab=2")
    page.wait_for_url(f"{lab.url}?tab=2")  # already signed in: straight on to `next`
    context.clear_cookies()
    page.goto(f"{lab.url}login?next=/?tab=3")
    log_in(page, user["username"])
    page.wait_for_url(f"{lab.url}?tab=3")
    expect(page.locator("#username")).to_have_text(user["username"])
    assert foreign == []


def test_wrong_password_shows_the_generic_error_and_keeps_the_username(lab: Lab, page: Page) -> None:
    user = lab.create_user()
    page.goto(f"{lab.url}login")
    log_in(page, user["username"], "not-the-password")
    expect(page.locator("#error")).to_have_text(INVALID_LOGIN)
    expect(page.locator("#username")).to_have_value(user["username"])
    expect(page.locator("#password")).to_have_value("")
    expect(page.locator("#password")).to_be_focused()
    assert page.url == f"{lab.url}login"
    # The same words for an account that does not exist, so the page reveals no usernames.
    log_in(page, "no-such-user", "not-the-password")
    expect(page.locator("#error")).to_have_text(INVALID_LOGIN)


def test_repeated_failures_lock_the_account_and_the_wait_counts_down(lab: Lab, page: Page) -> None:
    user = lab.create_user()
    page.goto(f"{lab.url}login")
    for _ in range(LAB_CONFIG["auth"]["lockout_threshold"]):
        with page.expect_response(f"{lab.url}api/v1/auth/login"):
            log_in(page, user["username"], "guess-guess")
        expect(page.locator("#error")).to_have_text(INVALID_LOGIN)
    # Locked for this address: even the right password is refused, with the wait on the page.
    with page.expect_response(f"{lab.url}api/v1/auth/login") as response:
        log_in(page, user["username"])
    assert response.value.status == 429 and response.value.headers["retry-after"]
    expect_counting_down(page, "#error", "Too many failed logins for this account")
    assert page.url == f"{lab.url}login"


def test_the_login_rate_limit_wait_counts_down(tmp_path: Path, sqlite_url: str, page: Page) -> None:
    limits = {"login_rate_limit_per_minute": 2, "lockout_threshold": 50}
    config = write_config(tmp_path, sqlite_url, auth=limits)
    lab = Lab(ServerProcess(config).start())
    try:
        page.goto(f"{lab.url}login")
        for attempt in range(3):
            with page.expect_response(f"{lab.url}api/v1/auth/login") as response:
                log_in(page, f"nobody{attempt}", "guess-guess")
        assert response.value.status == 429
        expect_counting_down(page, "#error", "Too many attempts")
    finally:
        assert lab.server.terminate() == 0


def test_token_form_logs_in_and_a_bad_token_is_named(lab: Lab, context: BrowserContext, page: Page) -> None:
    user = lab.create_user("observer")
    token = api_token_for(lab, user["username"])
    page.goto(f"{lab.url}login")
    page.click("#token-login-section summary")
    page.fill("#token", "syt_not-a-token")
    page.click("#token-login")
    expect(page.locator("#token-error")).to_have_text(re.compile("The access token was not accepted"))
    page.fill("#token", token)
    page.click("#token-login")
    page.wait_for_url(lab.url)
    expect(page.locator("#username")).to_have_text(user["username"])
    expect(page.locator("#role")).to_have_text("observer")
    assert session_cookie(context) is not None


def test_query_token_is_exchanged_and_leaves_the_address_bar(
    lab: Lab, context: BrowserContext, page: Page
) -> None:
    user = lab.create_user()
    token = api_token_for(lab, user["username"])
    page.goto(f"{lab.url}?token={quote(token, safe='')}")
    page.wait_for_url(lab.url)
    assert "token" not in page.url and token not in page.url
    expect(page.locator("#username")).to_have_text(user["username"])
    assert session_cookie(context) is not None


def test_query_token_on_the_login_page_lands_on_next(lab: Lab, page: Page) -> None:
    user = lab.create_user()
    token = api_token_for(lab, user["username"])
    page.goto(f"{lab.url}login?next=%2F%3Ftab%3D5&token={quote(token, safe='')}")
    page.wait_for_url(f"{lab.url}?tab=5")
    expect(page.locator("#username")).to_have_text(user["username"])


def test_a_rejected_query_token_is_named_on_the_login_page(lab: Lab, page: Page) -> None:
    page.goto(f"{lab.url}?token=syt_revoked-or-mistyped")
    page.wait_for_url(f"{lab.url}login?next=%2F&reason=token_rejected")
    expect(page.locator("#token-error")).to_have_text(re.compile("The access token was not accepted"))
    expect(page.locator("#token-login-section")).to_have_attribute("open", "")


def test_logout_button_ends_the_session_and_says_so(lab: Lab, chromium: HeadlessChromium, page: Page) -> None:
    user = lab.create_user()
    page.goto(f"{lab.url}login")
    log_in(page, user["username"])
    page.wait_for_url(lab.url)
    ended = session_cookie(page.context)
    assert ended is not None

    page.click("#logout")
    page.wait_for_url(f"{lab.url}login?reason=signed_out")
    expect(page.locator("#notice")).to_have_text("You signed out.")
    assert session_cookie(page.context) is None
    page.goto(lab.url)
    page.wait_for_url(f"{lab.url}login?next=%2F")
    expect(page.locator("#notice")).to_have_count(0)

    # Revoked on the server too: a browser that kept a copy of the cookie is not let in.
    replay = chromium.new_context()
    try:
        replay.add_cookies([ended])
        replayed = replay.new_page()
        replayed.goto(lab.url)
        replayed.wait_for_url(f"{lab.url}login?next=%2F&reason=revoked")
    finally:
        replay.close()


def test_a_session_revoked_elsewhere_sends_the_open_page_to_login_with_the_reason(
    lab: Lab, page: Page
) -> None:
    user = lab.create_user()
    page.goto(f"{lab.url}login")
    log_in(page, user["username"])
    page.wait_for_url(lab.url)
    wait_until_online(lab, user["username"])
    [session] = sessions_of(lab, user["username"])
    assert lab.admin.delete(f"/api/v1/auth/sessions/{session['session_id']}").status == 204
    # The socket closes with 4001; the page asks who it is, and the 401 (1002) sends it away.
    page.wait_for_url(f"{lab.url}login?next=%2F&reason=revoked", timeout=2000)
    expect(page.locator("#notice")).to_have_text("You were signed out from another device.")


def test_login_and_home_pages_render(lab: Lab, page: Page, tmp_path: Path) -> None:
    user = lab.create_user()
    page.goto(f"{lab.url}login")
    expect(page.locator("#password-form")).to_be_visible()
    page.click("#token-login-section summary")
    expect(page.locator("#token-form")).to_be_visible()
    # The stylesheet applied: an unstyled button would be transparent.
    assert page.eval_on_selector("#login", "b => getComputedStyle(b).backgroundColor") != "rgba(0, 0, 0, 0)"
    login_shot = tmp_path / "login.png"
    page.screenshot(path=str(login_shot), full_page=True)

    log_in(page, user["username"])
    page.wait_for_url(lab.url)
    expect(page.locator("#logout")).to_be_visible()
    home_shot = tmp_path / "home.png"
    page.screenshot(path=str(home_shot), full_page=True)

    for shot in (login_shot, home_shot):
        data = shot.read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 1000, shot
    assert login_shot.read_bytes() != home_shot.read_bytes()


def test_banner_and_lab_name_change_live_on_the_home_page(lab: Lab, page: Page, tmp_path: Path) -> None:
    user = lab.create_user()
    page.goto(f"{lab.url}login")
    log_in(page, user["username"])
    page.wait_for_url(lab.url)
    expect(page.locator("#banner")).to_be_hidden()

    wait_until_online(lab, user["username"])
    message = "Maintenance tonight at 22:00"
    reply = lab.admin.put("/api/v1/settings/ui/banner", {"value": message}, headers={"If-Match": "*"})
    assert reply.status == 200
    expect(page.locator("#banner")).to_have_text(message)
    expect(page.locator("#banner")).to_be_visible()
    reply = lab.admin.put("/api/v1/settings/ui/lab_name", {"value": "Cryo Lab"}, headers={"If-Match": "*"})
    assert reply.status == 200
    try:
        expect(page.locator("#lab-name")).to_have_text("Cryo Lab")
        expect(page).to_have_title("Dashboard · Cryo Lab")
        page.screenshot(path=str(tmp_path / "banner.png"), full_page=True)
    finally:
        lab.admin.delete("/api/v1/settings/ui/banner", headers={"If-Match": "*"})
        lab.admin.delete("/api/v1/settings/ui/lab_name", headers={"If-Match": "*"})


def test_the_pages_work_under_a_base_url(tmp_path: Path, sqlite_url: str, page: Page) -> None:
    """Every link, script, form, API call and socket of the pages carries the base_url."""
    lab = Lab(ServerProcess(write_config(tmp_path, sqlite_url, server={"base_url": "/lab/"})).start())
    try:
        user = lab.create_user()
        outside: list[str] = []
        page.on("request", lambda r: None if r.url.startswith(lab.url) else outside.append(r.url))
        page.goto(lab.url)
        page.wait_for_url(f"{lab.url}login?next=%2Flab%2F")
        log_in(page, user["username"], "not-the-password")
        expect(page.locator("#error")).to_have_text(INVALID_LOGIN)
        log_in(page, user["username"])
        page.wait_for_url(lab.url)
        wait_until_online(lab, user["username"])
        expect(page.locator('link[rel="icon"]')).to_have_attribute("href", "/lab/favicon.ico")
        # Logging out closes the page's socket too (4001): that is not news from elsewhere.
        page.click("#logout")
        page.wait_for_url(f"{lab.url}login?reason=signed_out")
        expect(page.locator("#notice")).to_have_text("You signed out.")
        page.goto(f"{lab.url}no/such/page")
        page.click("#home-link")
        page.wait_for_url(f"{lab.url}login?next=%2Flab%2F")
        assert outside == []
    finally:
        assert lab.server.terminate() == 0
