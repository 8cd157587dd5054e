"""The pages of one's own account in a real headless Chromium against the real server (issue 12):
/sessions, /tokens and /me, and the section links of the layout that lead there.
"""

from __future__ import annotations

import re
import time

import pytest
from playwright.sync_api import BrowserContext, Page, expect

from tests.browser import RECORD_WEBSOCKETS, HeadlessChromium, sign_in, wait_for_open_socket
from tests.servers import ADMIN_PASSWORD, USER_PASSWORD, Lab, http_request, wait_for
from tests.test_ui_layout import assert_visible_focus_ring

IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1"
)


@pytest.fixture(scope="module")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """SQLite only: the pages do not depend on the backend, and the API tests cover both."""
    return f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('db-sqlite') / 'synthorg.db'}"


def session_rows(page: Page):  # type: ignore[no-untyped-def]
    return page.locator("#sessions tbody tr")


def used_at(lab: Lab, token: str) -> str | None:
    """When the token was last used, as the API lists it (asking with the token itself)."""
    reply = http_request(f"{lab.url}api/v1/tokens", headers={"Authorization": f"token {token}"})
    return reply.json()["items"][0]["last_used_at"]


def status_with(lab: Lab, token: str, scheme: str = "token") -> int:
    return http_request(f"{lab.url}api/v1/me", headers={"Authorization": f"{scheme} {token}"}).status


# -- /sessions -----------------------------------------------------------------------------


def test_revoking_a_session_on_the_sessions_page_signs_that_browser_out_within_2_s(
    lab: Lab, chromium: HeadlessChromium
) -> None:
    user = lab.create_user()
    here, there = chromium.new_context(), chromium.new_context()
    try:
        sign_in(here, lab, user["username"])
        sign_in(there, lab, user["username"])
        there.add_init_script(RECORD_WEBSOCKETS)
        elsewhere = there.new_page()
        elsewhere.goto(f"{lab.url}tokens")
        wait_for_open_socket(elsewhere)

        page = here.new_page()
        page.goto(f"{lab.url}sessions")
        expect(session_rows(page)).to_have_count(2)
        expect(page.locator("tr.current .this-device")).to_have_text("This device")
        other = page.locator("#sessions tbody tr:not(.current)")
        other.get_by_role("button", name=re.compile("^Revoke")).click()
        revoked_at = time.monotonic()
        elsewhere.wait_for_url(f"{lab.url}login?next=%2Ftokens&reason=revoked", timeout=2000)
        assert time.monotonic() - revoked_at < 2.0
        expect(elsewhere.locator("#notice")).to_have_text("You were signed out from another device.")

        expect(page.locator("#done")).to_contain_text("Session revoked")
        expect(session_rows(page)).to_have_count(1)
        expect(page.locator("#sessions-summary")).to_have_text("1 session.")
    finally:
        here.close()
        there.close()


def test_the_sessions_page_shows_each_device_and_marks_this_one(lab: Lab, context: BrowserContext) -> None:
    user = lab.create_user()
    lab.login(user["username"], headers={"User-Agent": IPHONE})
    sign_in(context, lab, user["username"])
    page = context.new_page()
    page.goto(f"{lab.url}sessions")
    expect(session_rows(page)).to_have_count(2)
    phone = page.locator("#sessions tbody tr:not(.current)")
    expect(phone.locator('td[data-label="Device"]')).to_contain_text("Mobile Safari 17")
    expect(phone.locator('td[data-label="Device"]')).to_contain_text("iOS 17.1 · iPhone · mobile")
    expect(phone.locator('td[data-label="IP address"]')).to_have_text("127.0.0.1")
    expect(phone.locator('td[data-label="Last active"]')).to_have_text("just now")
    expect(phone.locator('td[data-label="Last active"] time')).to_have_attribute(
        "datetime", re.compile(r"Z$")
    )
    mine = page.locator("#sessions tbody tr.current")
    expect(mine.locator('td[data-label="Device"]')).to_contain_text("HeadlessChrome")
    expect(mine.locator(".this-device")).to_be_visible()
    expect(mine.get_by_role("button")).to_have_count(0)
    expect(page.locator("#sessions-summary")).to_have_text("2 sessions, 1 besides this one.")
    # Members get no way to see anyone else's.
    expect(page.locator("#scope-all")).to_have_count(0)


def test_sign_out_everywhere_else_ends_every_other_session_and_keeps_this_one(
    lab: Lab, context: BrowserContext
) -> None:
    user = lab.create_user()
    others = [lab.login(user["username"])[0] for _ in range(2)]
    sign_in(context, lab, user["username"])
    page = context.new_page()
    page.goto(f"{lab.url}sessions")
    expect(session_rows(page)).to_have_count(3)
    page.click("#revoke-others")
    expect(page.locator("#done")).to_have_text("Signed out 2 other sessions.")
    expect(session_rows(page)).to_have_count(1)
    expect(page.locator("#revoke-others")).to_be_disabled()
    assert [client.get("/api/v1/me").code for client in others] == [1002, 1002]
    page.reload()
    expect(session_rows(page)).to_have_count(1)  # this browser is still signed in


def test_an_admin_lists_everyones_sessions_and_filters_them_by_user(
    lab: Lab, context: BrowserContext
) -> None:
    first, second = lab.create_user(), lab.create_user()
    lab.login(first["username"])
    lab.login(second["username"])
    sign_in(context, lab, "admin", ADMIN_PASSWORD)
    page = context.new_page()
    page.goto(f"{lab.url}sessions")
    expect(page.locator("#user-filter")).to_be_disabled()
    page.get_by_label("Everyone's sessions").check()
    expect(page.locator("th.user-column")).to_be_visible()
    users = page.locator('#sessions td[data-label="User"]')
    expect(users.filter(has_text=first["username"])).to_have_count(1)
    expect(users.filter(has_text=second["username"])).to_have_count(1)

    page.select_option("#user-filter", label=first["username"])
    expect(users).to_have_text([first["username"]])
    page.get_by_role("button", name=f"Revoke {first['username']}'s session", exact=False).click()
    expect(session_rows(page)).to_have_count(0)
    assert lab.admin.get(f"/api/v1/auth/sessions?scope=all&user_id={first['id']}").json() == []

    page.get_by_label("Everyone's sessions").uncheck()
    expect(page.locator("th.user-column")).to_be_hidden()
    expect(page.locator("#user-filter")).to_be_disabled()


# -- /tokens -------------------------------------------------------------------------------


def test_a_token_created_on_the_tokens_page_works_until_it_is_revoked_there(
    lab: Lab, chromium: HeadlessChromium
) -> None:
    context = chromium.new_context()
    try:
        context.grant_permissions(["clipboard-read", "clipboard-write"], origin=lab.url.rstrip("/"))
        user = lab.create_user()
        sign_in(context, lab, user["username"])
        page = context.new_page()
        page.goto(f"{lab.url}tokens")
        expect(page.locator("#no-tokens")).to_be_visible()
        page.fill("#token-name", "nightly backup")
        page.fill("#token-days", "7")
        page.click("#create")

        expect(page.locator("#new-token")).to_be_visible()
        expect(page.locator("#new-token-name")).to_have_text("nightly backup")
        token = page.locator("#new-token-value").input_value()
        assert status_with(lab, token) == 200
        page.click("#copy")
        expect(page.locator("#copy-status")).to_have_text("Copied to the clipboard.")
        assert page.evaluate("navigator.clipboard.readText()") == token

        row = page.locator("#tokens tbody tr", has_text="nightly backup")
        expect(row).to_have_count(1)
        prefix = row.locator('td[data-label="Prefix"] code').inner_text().rstrip("…")
        assert len(prefix) >= 4 and token.startswith(prefix)
        expect(row.locator('td[data-label="Last used"]')).to_have_text("never")
        expected = time.strftime("%b %-d, %Y", time.localtime(time.time() + 7 * 86400))
        expect(row.locator('td[data-label="Expires"]')).to_contain_text(expected)

        # Shown once: gone from the page when the user is done, and never sent again.
        page.click("#new-token-done")
        expect(page.locator("#new-token")).to_be_hidden()
        assert page.locator("#new-token-value").input_value() == ""
        # Its use above is stored within the server's activity flush (10 s), then listed.
        wait_for(lambda: used_at(lab, token), 15.0, "the token's last use to be stored")
        page.reload()
        expect(row.locator('td[data-label="Last used"]')).to_have_text("just now")
        assert token not in page.content()

        row.get_by_role("button", name="Revoke the token nightly backup").click()
        dialog = page.locator("#revoke-dialog")
        expect(dialog).to_be_visible()
        expect(dialog).to_contain_text("Revoke “nightly backup”?")
        page.click("#revoke-cancel")
        expect(dialog).to_be_hidden()
        assert status_with(lab, token) == 200

        row.get_by_role("button", name="Revoke the token nightly backup").click()
        page.click("#revoke-confirm")
        expect(page.locator("#list-done")).to_have_text("Revoked “nightly backup”: it no longer works.")
        expect(row).to_have_count(0)
        assert status_with(lab, token) == 401
        assert status_with(lab, token, "Bearer") == 401
    finally:
        context.close()


def test_the_tokens_page_works_with_the_keyboard_alone(lab: Lab, page: Page) -> None:
    user = lab.create_user()
    sign_in(page.context, lab, user["username"])
    page.goto(f"{lab.url}tokens")
    expect(page.locator("#tokens")).not_to_have_attribute("aria-busy", "true")
    page.focus("#token-name")
    page.keyboard.type("ci")
    page.keyboard.press("Tab")
    assert_visible_focus_ring(page, "token-days")
    page.keyboard.press("Control+A")
    page.keyboard.type("30")
    page.keyboard.press("Enter")
    expect(page.locator("#new-token-value")).to_be_focused()
    page.keyboard.press("Tab")
    assert_visible_focus_ring(page, "copy")
    page.keyboard.press("Tab")
    assert_visible_focus_ring(page, "new-token-done")
    page.keyboard.press("Space")
    expect(page.locator("#new-token")).to_be_hidden()

    revoke = page.get_by_role("button", name="Revoke the token ci")
    revoke.focus()
    page.keyboard.press("Enter")
    expect(page.locator("#revoke-cancel")).to_be_focused()  # the safe choice first
    assert_visible_focus_ring(page, "revoke-cancel")
    page.keyboard.press("Escape")
    expect(page.locator("#revoke-dialog")).to_be_hidden()
    expect(revoke).to_be_focused()
    page.keyboard.press("Enter")
    page.keyboard.press("Tab")
    assert_visible_focus_ring(page, "revoke-confirm")
    page.keyboard.press("Space")
    expect(page.locator("#no-tokens")).to_be_visible()
    expect(page.locator("#token-name")).to_be_focused()


def test_a_refused_token_says_why(lab: Lab, page: Page) -> None:
    user = lab.create_user()
    sign_in(page.context, lab, user["username"])
    page.goto(f"{lab.url}tokens")
    page.fill("#token-name", "x" * 5)
    page.evaluate("document.getElementById('token-days').removeAttribute('max')")
    page.fill("#token-days", "100000")
    page.click("#create")
    expect(page.locator("#create-error")).to_contain_text("expires_days must be a whole number from 1 to 365")
    expect(page.locator("#new-token")).to_be_hidden()


# -- /me -----------------------------------------------------------------------------------


def test_the_account_page_changes_the_display_name_everywhere_on_the_page(lab: Lab, page: Page) -> None:
    user = lab.create_user()
    sign_in(page.context, lab, user["username"])
    page.goto(f"{lab.url}me")
    expect(page.locator("#username")).to_have_text(user["username"])
    page.fill("#display-name", "Ada Lovelace")
    page.click("#save-name")
    expect(page.locator("#name-done")).to_have_text("Saved: others now see you as “Ada Lovelace”.")
    expect(page.locator("#nav-user")).to_have_text("Ada Lovelace")
    assert lab.admin.get(f"/api/v1/users/{user['id']}").json()["display_name"] == "Ada Lovelace"
    page.evaluate("document.getElementById('display-name').removeAttribute('maxlength')")
    page.fill("#display-name", "x" * 129)
    page.click("#save-name")
    expect(page.locator("#name-error")).to_contain_text("at most 128 characters")
    page.goto(lab.url)
    expect(page.locator("#who")).to_have_text("Ada Lovelace")


def test_the_account_page_changes_the_password_with_the_rule_shown_first(lab: Lab, page: Page) -> None:
    user = lab.create_user()
    elsewhere, _ = lab.login(user["username"])
    sign_in(page.context, lab, user["username"])
    sent: list[str] = []
    page.on("request", lambda r: sent.append(r.url) if r.url.endswith("/me/password") else None)
    page.goto(f"{lab.url}me")
    # The rule is on the page before anything is typed (config.yaml: password_min_length 8).
    expect(page.locator("#password-rule")).to_have_text("At least 8 characters.")
    expect(page.locator("#new-password")).to_have_attribute("minlength", "8")

    page.fill("#current-password", USER_PASSWORD)
    page.fill("#new-password", "a-new-password")
    page.fill("#repeat-password", "a-new-passwort")
    page.click("#change-password")
    expect(page.locator("#password-error")).to_have_text(
        "The two new passwords differ: type the same password twice."
    )
    expect(page.locator("#repeat-password")).to_have_attribute("aria-invalid", "true")
    assert sent == []

    page.fill("#current-password", "not-my-password")
    page.fill("#repeat-password", "a-new-password")
    page.click("#change-password")
    expect(page.locator("#password-error")).to_have_text("The current password is incorrect.")
    expect(page.locator("#current-password")).to_be_focused()

    page.fill("#current-password", USER_PASSWORD)
    page.click("#change-password")
    expect(page.locator("#password-done")).to_have_text(
        "Password changed. Your other sessions were signed out; this one stays."
    )
    expect(page.locator("#new-password")).to_have_value("")
    assert elsewhere.get("/api/v1/me").code == 1002
    lab.login(user["username"], "a-new-password")
    page.click("#sessions-link")
    page.wait_for_url(f"{lab.url}sessions")
    expect(session_rows(page)).to_have_count(2)  # this one, and the login just made


# -- the layout's links --------------------------------------------------------------------


@pytest.mark.parametrize(("role", "links"), [("member", 4), ("admin", 6)])
def test_the_navigation_links_every_section_and_admins_also_get_users_and_audit(
    lab: Lab, context: BrowserContext, role: str, links: int
) -> None:
    if role == "admin":
        sign_in(context, lab, "admin", ADMIN_PASSWORD)
    else:
        sign_in(context, lab, lab.create_user(role)["username"])
    page = context.new_page()
    page.goto(f"{lab.url}tokens")
    sections = page.get_by_role("navigation", name="Pages").get_by_role("link")
    expect(sections).to_have_text(["Dashboard", "Sessions", "Settings", "Tokens", "Users", "Audit"][:links])
    expected = ["", "sessions", "settings", "tokens", "admin/users", "admin/audit"][:links]
    assert [sections.nth(i).get_attribute("href") for i in range(links)] == ["/" + p for p in expected]
    expect(page.locator('nav [aria-current="page"]')).to_have_text("Tokens")
    page.click("#nav-user")
    page.wait_for_url(f"{lab.url}me")
    expect(page.locator("#nav-user")).to_have_attribute("aria-current", "page")
    page.click("#nav-dashboard")
    page.wait_for_url(lab.url)
    expect(page.locator("#nav-dashboard")).to_have_attribute("aria-current", "page")
