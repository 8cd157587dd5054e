"""The layout every page shares, in a real headless Chromium (issue 12): the navigation bar on
every signed-in page, a phone-sized screen, the keyboard, and how the page's script talks to
the API. The messages table of static/messages.js is checked here too, in the browser that runs
it, against the error codes of errors.py."""

from __future__ import annotations

import pytest
from playwright.sync_api import BrowserContext, Page, Request, expect

from synthorg_tornado.errors import HTTP_STATUS_CODES, PROBLEM_TABLE
from tests.browser import PHONE, HeadlessChromium, sign_in
from tests.servers import USER_PASSWORD, Lab

# Every page a signed-in user can open; later pages join this list.
SIGNED_IN_PAGES = ("", "no/such/page", "sessions", "tokens", "me", "settings", "admin/users", "admin/audit")


@pytest.fixture(scope="module")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """SQLite only: the pages do not depend on the backend, and the API tests cover both."""
    return f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('db-sqlite') / 'synthorg.db'}"


def focus_ring(page: Page) -> dict:
    return page.evaluate(
        """() => {
            const focused = document.activeElement, style = getComputedStyle(focused);
            const id = focused.id || focused.className;
            return {id, style: style.outlineStyle, width: parseFloat(style.outlineWidth)};
        }"""
    )


def assert_visible_focus_ring(page: Page, element_id: str) -> None:
    ring = focus_ring(page)
    assert ring["id"] == element_id, ring
    assert ring["style"] != "none" and ring["width"] >= 2, ring


@pytest.mark.parametrize("path", SIGNED_IN_PAGES)
def test_every_signed_in_page_has_the_navigation_bar(lab: Lab, context: BrowserContext, path: str) -> None:
    user = lab.create_user("manager")
    sign_in(context, lab, user["username"])
    page = context.new_page()
    page.goto(lab.url + path)
    nav = page.get_by_role("navigation", name="Lab")
    expect(nav.locator("#lab-name")).to_have_text("Synthorg Lab")
    expect(nav.locator("#nav-user")).to_have_text(user["username"])
    expect(nav.locator("#logout")).to_be_visible()
    assert page.title().endswith(" · Synthorg Lab")
    nav.locator("#logout").click()
    page.wait_for_url(f"{lab.url}login?reason=signed_out")


def test_the_404_page_links_home(lab: Lab, page: Page) -> None:
    page.goto(f"{lab.url}no/such/page")
    expect(page.locator("h1")).to_have_text("Page not found")
    expect(page).to_have_title("Page not found · Synthorg Lab")
    page.click("#home-link")
    page.wait_for_url(f"{lab.url}login?next=%2F")


@pytest.mark.parametrize("path", ["login", "login?reason=signed_out", "no/such/page"])
def test_on_a_phone_the_card_keeps_off_the_screen_edges(
    lab: Lab, chromium: HeadlessChromium, path: str
) -> None:
    context = chromium.new_context(viewport=PHONE)
    try:
        page = context.new_page()
        page.goto(lab.url + path)
        box = page.locator("article.card").bounding_box()
        assert box is not None
        assert box["x"] >= 8 and box["x"] + box["width"] <= PHONE["width"] - 8, box
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    finally:
        context.close()


def test_the_dashboard_fits_a_phone(lab: Lab, chromium: HeadlessChromium) -> None:
    context = chromium.new_context(viewport=PHONE)
    try:
        user = lab.create_user()
        sign_in(context, lab, user["username"])
        page = context.new_page()
        page.goto(lab.url)
        expect(page.locator("#logout")).to_be_in_viewport()
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    finally:
        context.close()


def test_the_login_form_works_with_the_keyboard_alone_and_shows_where_the_focus_is(
    lab: Lab, page: Page
) -> None:
    user = lab.create_user()
    page.goto(f"{lab.url}login")
    expect(page.locator("#username")).to_be_focused()
    assert_visible_focus_ring(page, "username")
    page.keyboard.type(user["username"])
    page.keyboard.press("Tab")
    assert_visible_focus_ring(page, "password")
    page.keyboard.type("not-the-password")
    page.keyboard.press("Tab")
    assert_visible_focus_ring(page, "login")
    page.keyboard.press("Enter")
    expect(page.locator("#error")).to_have_text("Invalid username or password.")
    # After the error the focus is back in the (emptied) password field, ready for Enter.
    assert_visible_focus_ring(page, "password")
    page.keyboard.type(USER_PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_url(lab.url)

    # On the dashboard the first Tab offers the skip link, and the logout button is reachable.
    page.keyboard.press("Tab")
    assert_visible_focus_ring(page, "skip")
    expect(page.locator(".skip")).to_be_in_viewport()
    for _ in range(5):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "logout":
            break
    assert_visible_focus_ring(page, "logout")
    page.keyboard.press("Enter")
    page.wait_for_url(f"{lab.url}login?reason=signed_out")


def test_the_access_token_form_opens_from_the_keyboard(lab: Lab, page: Page) -> None:
    page.goto(f"{lab.url}login")
    page.focus("#token-login-section summary")
    page.keyboard.press("Enter")
    expect(page.locator("#token")).to_be_visible()
    page.keyboard.press("Tab")
    assert_visible_focus_ring(page, "token")


def test_every_write_from_the_pages_sends_json_and_the_xsrf_header_only(lab: Lab, page: Page) -> None:
    user = lab.create_user()
    writes: list[Request] = []
    page.on(
        "request", lambda r: writes.append(r) if r.resource_type == "fetch" and r.method != "GET" else None
    )
    page.goto(f"{lab.url}login")
    page.fill("#username", user["username"])
    page.fill("#password", "not-the-password")
    page.click("#login")
    expect(page.locator("#error")).to_be_visible()
    page.fill("#password", USER_PASSWORD)
    page.click("#login")
    page.wait_for_url(lab.url)
    page.wait_for_load_state("networkidle")
    sent = {(r.method, r.url.removeprefix(lab.url)) for r in writes}
    assert {("POST", "api/v1/auth/login"), ("POST", "api/v1/auth/ws-ticket")} <= sent, sent
    xsrf = next(c["value"] for c in page.context.cookies() if c["name"] == "_xsrf")
    for request in writes:
        headers = request.headers
        assert headers.get("x-xsrftoken") == xsrf, (request.url, headers)
        assert "_xsrf" not in request.url
        if request.post_data:
            assert headers.get("content-type") == "application/json", (request.url, headers)
            assert "_xsrf" not in request.post_data


def expected_failures() -> list[tuple[int, int]]:
    """Every (status, error_code) the server can answer with, from errors.py's own tables."""
    pairs = {(status, int(code)) for status, code in PROBLEM_TABLE.values()}
    pairs |= {(status, int(code)) for status, code in HTTP_STATUS_CODES.items()}
    return sorted(pairs)


def test_every_api_error_has_a_human_message(lab: Lab, page: Page) -> None:
    page.goto(f"{lab.url}login")
    describe = """async ([failures]) => {
        const {describe} = await import("./static/messages.js");
        return failures.map(f => describe(f));
    }"""
    failures = [
        {"status": status, "code": code, "method": "PUT", "problem": {"detail": ""}, "retryAfter": 42}
        for status, code in expected_failures()
    ]
    sentences = dict(zip(expected_failures(), page.evaluate(describe, [failures]), strict=True))
    for (status, code), sentence in sentences.items():
        assert sentence and not sentence.startswith("The request failed"), (status, code, sentence)
    assert sentences[(429, 5000)] == "Too many attempts; try again in 42 s."
    assert sentences[(429, 1004)] == "Too many failed logins for this account; try again in 42 s."
    assert sentences[(503, 8001)] == "The lab's database is unavailable; your change was not saved."
    assert sentences[(412, 4002)] == "Someone else changed this since you opened it."

    others = page.evaluate(
        describe,
        [
            [
                {"status": 0, "method": "GET"},
                {"status": 422, "code": 2000, "method": "PUT", "problem": {"detail": "Must be at most 100."}},
                {"status": 500, "code": 8000, "method": "PUT", "problem": {"detail": "KeyError: 'x'"}},
                {"status": 503, "code": 8001, "method": "GET"},
            ]
        ],
    )
    assert others == [
        "The lab's server could not be reached; check the connection and try again.",
        "Must be at most 100.",
        "The server hit an unexpected error (it has been logged); your change was not saved.",
        "The lab's database is unavailable; try again in a moment.",
    ]
