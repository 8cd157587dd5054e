"""A session that ended by itself (idle past the timeout: 401/1003) is named on the login page,
both when a page is loaded and when the page's script meets the 401."""

from __future__ import annotations

import time

import pytest
from playwright.sync_api import Page, expect

from tests.servers import ADMIN_PASSWORD, USER_PASSWORD, Lab

IDLE_SECONDS = 1.5
LAB_CONFIG = {"auth": {"idle_timeout_minutes": IDLE_SECONDS / 60}}
EXPIRED = "Your session expired. Log in again to continue."


@pytest.fixture(scope="module")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('db-sqlite') / 'synthorg.db'}"


def new_user(lab: Lab) -> dict:
    """A user made by a fresh admin session: the lab's own admin session idles out here too."""
    lab.admin, _ = lab.login("admin", ADMIN_PASSWORD)
    return lab.create_user()


def test_a_page_load_after_the_idle_timeout_says_the_session_expired(lab: Lab) -> None:
    user = new_user(lab)
    browser, _ = lab.login_cookie(user["username"])
    assert browser.get("/").status == 200
    # The behaviour under test is the passage of idle time itself.
    time.sleep(IDLE_SECONDS + 0.5)
    reply = browser.get("/")
    assert reply.status == 302 and reply.headers["Location"] == "/login?next=%2F&reason=expired"
    assert EXPIRED.encode() in browser.get(reply.headers["Location"]).body


def test_an_api_401_on_an_open_page_sends_it_to_login_with_the_reason(lab: Lab, page: Page) -> None:
    user = new_user(lab)
    page.goto(f"{lab.url}login?next=%2F%3Ftab%3D2")
    page.fill("#username", user["username"])
    page.fill("#password", USER_PASSWORD)
    page.click("#login")
    page.wait_for_url(f"{lab.url}?tab=2")
    time.sleep(IDLE_SECONDS + 0.5)
    # Any call of the page's shared API helper meets the 401 (1003) and goes to the login page.
    # The call is started, not awaited: the navigation it causes ends the document the promise
    # lives in, so awaiting it would race that navigation. The test waits for the navigation.
    with page.expect_navigation(url=f"{lab.url}login?next=%2F%3Ftab%3D2&reason=expired"):
        page.evaluate(
            "() => { import('/static/api.js').then(m => m.api('GET', 'api/v1/me')).catch(() => null); }"
        )
    expect(page.locator("#notice")).to_have_text(EXPIRED)
