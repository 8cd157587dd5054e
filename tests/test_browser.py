"""The first pages in a real headless Chromium, served by the real server (SPEC section 4).

What a plain HTTP client cannot show: that the forms work as a browser submits them (XSRF field and
cookie together), that the browser follows the redirects to the right place, and that script on
the page cannot read the session cookie.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from playwright.sync_api import BrowserContext, Page, expect

from tests.browser import HeadlessChromium
from tests.servers import USER_PASSWORD, Lab, ServerProcess, setup_token, wait_for, write_config

LAB_CONFIG = {"auth": {"lockout_threshold": 2, "login_rate_limit_per_minute": 50}}
SESSION_COOKIE = "synthorg_session"
INVALID_LOGIN = "Invalid username or password."


@pytest.fixture(scope="module")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """SQLite only: the pages do not depend on the backend, and the API tests cover both."""
    return f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('db-sqlite') / 'synthorg.db'}"


@pytest.fixture(scope="module")
def chromium() -> Iterator[HeadlessChromium]:
    browser = HeadlessChromium().start()
    yield browser
    browser.stop()


@pytest.fixture
def context(chromium: HeadlessChromium) -> Iterator[BrowserContext]:
    context = chromium.new_context()
    yield context
    context.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    return context.new_page()


def log_in(page: Page, username: str, password: str = USER_PASSWORD) -> None:
    """Fill and submit the password form of the login page the browser is on."""
    page.fill("#username", username)
    page.fill("#password", password)
    page.click("#login")


def session_cookie(context: BrowserContext) -> dict | None:
    return next((c for c in context.cookies() if c["name"] == SESSION_COOKIE), None)


def test_setup_link_creates_the_admin_once(tmp_path: Path, sqlite_url: str, page: Page) -> None:
    server = ServerProcess(write_config(tmp_path, sqlite_url)).start()
    try:
        setup_url = f"{server.url}setup?token={setup_token(server)}"
        stale = page.context.new_page()
        stale.goto(setup_url)
        page.goto(setup_url)
        page.fill("#username", "first-admin")
        page.fill("#password", "first-admin-password")
        page.click("#create")
        page.wait_for_url(server.url)
        expect(page.locator("#username")).to_have_text("first-admin")
        expect(page.locator("#role")).to_have_text("admin")

        # The link is spent: it now says setup is complete and leads to the login page.
        page.goto(setup_url)
        expect(page.locator("#setup-complete")).to_be_visible()
        expect(page.locator("#setup-form")).to_have_count(0)
        # A form opened before, submitted after, is refused with the same answer.
        stale.fill("#username", "second-admin")
        stale.fill("#password", "second-admin-password")
        with stale.expect_navigation() as navigation:
            stale.click("#create")
        assert navigation.value is not None and navigation.value.status == 403
        assert stale.url == f"{server.url}setup"
        expect(stale.locator("#setup-complete")).to_be_visible()
        stale.click("#login-link")
        stale.wait_for_url(f"{server.url}login")
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
    # Should the server redirect elsewhere, the request is recorded and refused, never sent.
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
    log_in(page, user["username"])
    page.wait_for_url(f"{lab.url}?tab=2")
    expect(page.locator("#username")).to_have_text(user["username"])
    assert foreign == []


def test_wrong_password_shows_the_generic_error(lab: Lab, page: Page) -> None:
    user = lab.create_user()
    page.goto(f"{lab.url}login")
    with page.expect_navigation() as navigation:
        log_in(page, user["username"], "not-the-password")
    assert navigation.value is not None and navigation.value.status == 401
    expect(page.locator("#error")).to_have_text(INVALID_LOGIN)
    # The same words for an account that does not exist, so the page reveals no usernames.
    with page.expect_navigation():
        log_in(page, "no-such-user", "not-the-password")
    expect(page.locator("#error")).to_have_text(INVALID_LOGIN)


def test_repeated_failures_lock_the_account_and_the_page_says_when_to_retry(lab: Lab, page: Page) -> None:
    user = lab.create_user()
    page.goto(f"{lab.url}login")
    for _ in range(LAB_CONFIG["auth"]["lockout_threshold"]):
        with page.expect_navigation():
            log_in(page, user["username"], "guess-guess")
        expect(page.locator("#error")).to_have_text(INVALID_LOGIN)
    # Locked for this address: even the right password is refused, with the wait on the page.
    with page.expect_navigation() as navigation:
        log_in(page, user["username"])
    assert navigation.value is not None and navigation.value.status == 429
    error = page.locator("#error")
    expect(error).to_contain_text("Too many failed logins for this account")
    expect(error).to_contain_text(re.compile(r"retry in \d+ s"))
    assert page.url == f"{lab.url}login"


def api_token_for(lab: Lab, username: str) -> str:
    client, _ = lab.login(username)
    reply = client.post("/api/v1/tokens", {"name": "b"})
    assert reply.status == 201, reply
    return reply.json()["token"]


def test_token_form_logs_in(lab: Lab, context: BrowserContext, page: Page) -> None:
    user = lab.create_user("observer")
    token = api_token_for(lab, user["username"])
    page.goto(f"{lab.url}login")
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


def test_logout_button_ends_the_session(lab: Lab, chromium: HeadlessChromium, page: Page) -> None:
    user = lab.create_user()
    page.goto(f"{lab.url}login")
    log_in(page, user["username"])
    page.wait_for_url(lab.url)
    ended = session_cookie(page.context)
    assert ended is not None

    page.click("#logout")
    page.wait_for_url(f"{lab.url}login")
    assert session_cookie(page.context) is None
    page.goto(lab.url)
    page.wait_for_url(f"{lab.url}login?next=%2F")

    # Revoked on the server too: a browser that kept a copy of the cookie is not let in.
    replay = chromium.new_context()
    try:
        replay.add_cookies([ended])
        replayed = replay.new_page()
        replayed.goto(lab.url)
        replayed.wait_for_url(f"{lab.url}login?next=%2F")
    finally:
        replay.close()


def test_login_and_home_pages_render(lab: Lab, page: Page, tmp_path: Path) -> None:
    user = lab.create_user()
    page.goto(f"{lab.url}login")
    expect(page.locator("#password-form")).to_be_visible()
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


def test_banner_changes_live_on_the_home_page(lab: Lab, page: Page, tmp_path: Path) -> None:
    user = lab.create_user()
    page.goto(f"{lab.url}login")
    log_in(page, user["username"])
    page.wait_for_url(lab.url)
    expect(page.locator("#banner")).to_be_hidden()

    # The page's own socket is open once the lab's presence lists this user.
    def page_is_connected() -> bool:
        return any(p["username"] == user["username"] for p in lab.admin.get("/api/v1/presence").json())

    wait_for(page_is_connected, 10.0, "the page's WebSocket to connect")
    message = "Maintenance tonight at 22:00"
    reply = lab.admin.put("/api/v1/settings/ui/banner", {"value": message}, headers={"If-Match": "*"})
    assert reply.status == 200
    expect(page.locator("#banner")).to_have_text(message)
    expect(page.locator("#banner")).to_be_visible()
    page.screenshot(path=str(tmp_path / "banner.png"), full_page=True)
    lab.admin.delete("/api/v1/settings/ui/banner", headers={"If-Match": "*"})
