"""The admin pages in a real headless Chromium, against the real server (issue 12,
`/admin/users` and `/admin/audit`): an admin creates, changes, disables and deletes users from
the page, what that does to the user's own open page, and the audit log read back with its
filters and cursor paging. Non-admins get the 403 page."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator

import pytest
from playwright.sync_api import BrowserContext, Locator, Page, expect

from tests.browser import HeadlessChromium, sign_in
from tests.servers import USER_PASSWORD, Lab

LIVE = "Live updates are on."


@pytest.fixture(scope="module")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """SQLite only: the pages do not depend on the backend, and the API tests cover both."""
    return f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('db-sqlite') / 'synthorg.db'}"


@pytest.fixture
def second_context(chromium: HeadlessChromium) -> Iterator[BrowserContext]:
    context = chromium.new_context()
    yield context
    context.close()


def fresh_name(word: str) -> str:
    return f"{word}-{uuid.uuid4().hex[:8]}"


def as_admin(context: BrowserContext, lab: Lab, path: str) -> tuple[Page, dict]:
    admin = lab.create_user("admin")
    sign_in(context, lab, admin["username"])
    page = context.new_page()
    page.goto(lab.url + path)
    return page, admin


def users_page(context: BrowserContext, lab: Lab) -> tuple[Page, dict]:
    page, admin = as_admin(context, lab, "admin/users")
    expect(page.locator("#live-status")).to_have_text(LIVE)
    expect(user_row(page, admin["username"])).to_be_visible()
    return page, admin


def user_row(page: Page, username: str) -> Locator:
    return page.locator(f'#users-body tr[data-user="{username}"]')


def user_named(lab: Lab, username: str) -> dict | None:
    return next((u for u in lab.admin.get("/api/v1/users").json() if u["username"] == username), None)


def create_from_the_page(page: Page, username: str, role: str = "member", display_name: str = "") -> None:
    if page.locator("#create-section").get_attribute("open") is None:
        page.click("#create-toggle")
    page.fill("#new-username", username)
    page.fill("#new-display-name", display_name)
    page.fill("#new-password", USER_PASSWORD)
    page.select_option("#new-role", role)
    page.click("#create")


def test_an_admin_creates_a_user_with_role_and_display_name(lab: Lab, context: BrowserContext) -> None:
    page, _ = users_page(context, lab)
    name = fresh_name("newcomer")
    create_from_the_page(page, name, "manager", "New Comer")
    expect(page.locator("#users-status")).to_have_text(f"{name} was created as a manager.")
    expect(user_row(page, name).locator(".display-name")).to_have_text("New Comer")
    expect(user_row(page, name).locator("select.role")).to_have_value("manager")
    expect(user_row(page, name)).to_contain_text("never")
    created = user_named(lab, name)
    assert created is not None and (created["role"], created["display_name"]) == ("manager", "New Comer")
    # The form is ready for the next one.
    expect(page.locator("#new-username")).to_have_value("")
    expect(page.locator("#new-username")).to_be_focused()


def test_a_refused_create_says_why_and_keeps_what_was_typed(lab: Lab, context: BrowserContext) -> None:
    page, admin = users_page(context, lab)
    create_from_the_page(page, admin["username"].upper())
    expect(page.locator("#create-error")).to_have_text(
        f"A user named {admin['username'].upper()!r} already exists."
    )
    expect(page.locator("#new-username")).to_have_value(admin["username"].upper())
    page.fill("#new-username", fresh_name("short"))
    page.fill("#new-password", "short")
    page.click("#create")
    expect(page.locator("#create-error")).to_have_text("The password must be at least 8 characters long.")


def test_search_filters_the_list_by_username_or_display_name(lab: Lab, context: BrowserContext) -> None:
    token = uuid.uuid4().hex[:6]
    for name, display in (
        (f"alpha{token}", ""),
        (f"beta{token}", f"Alpha {token} Two"),
        (f"gamma{token}", ""),
    ):
        reply = lab.admin.post(
            "/api/v1/users",
            {"username": name, "password": USER_PASSWORD, "role": "member", "display_name": display},
        )
        assert reply.status == 201, reply
    page, _ = users_page(context, lab)
    page.fill("#user-search", f"ALPHA{token}")
    expect(page.locator("#users-body tr:visible")).to_have_count(1)
    page.fill("#user-search", f"alpha {token}")
    expect(page.locator("#users-body tr:visible")).to_have_count(1)
    expect(page.locator("#users-body tr:visible")).to_have_attribute("data-user", f"beta{token}")
    page.fill("#user-search", token)
    expect(page.locator("#users-body tr:visible")).to_have_count(3)
    expect(page.locator("#user-count")).to_contain_text("3 of ")
    page.fill("#user-search", "")
    expect(page.locator("#users-body tr:visible")).to_have_count(len(lab.admin.get("/api/v1/users").json()))


def test_change_role_disable_and_enable_from_the_list(lab: Lab, context: BrowserContext) -> None:
    page, _ = users_page(context, lab)
    member = lab.create_user()
    page.reload()
    target = user_row(page, member["username"])
    target.locator("select.role").select_option("manager")
    target.locator("button.change-role").click()
    expect(page.locator("#users-status")).to_have_text(f"{member['username']} is now a manager.")
    assert user_named(lab, member["username"])["role"] == "manager"

    target.locator("button.toggle").click()
    expect(page.locator("#users-status")).to_have_text(
        f"{member['username']} is disabled; their sessions have ended."
    )
    expect(target.locator(".badge.off")).to_have_text("disabled")
    assert user_named(lab, member["username"])["disabled"] is True
    target.locator("button.toggle").click()
    expect(page.locator("#users-status")).to_have_text(f"{member['username']} is enabled again.")
    expect(target.locator("button.toggle")).to_have_text(re.compile(r"^Disable"))
    assert user_named(lab, member["username"])["disabled"] is False


def test_reset_password_sets_a_new_password_that_works(lab: Lab, context: BrowserContext) -> None:
    page, _ = users_page(context, lab)
    member = lab.create_user()
    page.reload()
    user_row(page, member["username"]).locator("button.reset").click()
    dialog = page.locator("#password-dialog")
    expect(dialog).to_be_visible()
    expect(page.locator("#reset-password")).to_be_focused()
    new_password = "brand-new-password-9"
    page.fill("#reset-password", new_password)
    page.fill("#reset-repeat", new_password + "x")
    page.click("#password-save")
    expect(page.locator("#password-error")).to_have_text(
        "The two passwords differ: type the same password twice."
    )
    page.fill("#reset-repeat", new_password)
    page.click("#password-save")
    expect(dialog).to_be_hidden()
    expect(page.locator("#users-status")).to_contain_text(f"The password of {member['username']} was reset")
    anonymous = lab.client()
    old = anonymous.post("/api/v1/auth/login", {"username": member["username"], "password": USER_PASSWORD})
    assert old.status == 401
    lab.login(member["username"], new_password)


def test_delete_asks_first_and_cancel_keeps_the_user(lab: Lab, context: BrowserContext) -> None:
    page, _ = users_page(context, lab)
    member = lab.create_user()
    page.reload()
    user_row(page, member["username"]).locator("button.delete").click()
    dialog = page.locator("#delete-dialog")
    expect(dialog).to_be_visible()
    expect(page.locator("#delete-user")).to_have_text(member["username"])
    expect(page.locator("#delete-cancel")).to_be_focused()
    page.click("#delete-cancel")
    expect(dialog).to_be_hidden()
    assert user_named(lab, member["username"]) is not None

    user_row(page, member["username"]).locator("button.delete").click()
    page.click("#delete-confirm")
    expect(dialog).to_be_hidden()
    expect(user_row(page, member["username"])).to_have_count(0)
    expect(page.locator("#users-status")).to_have_text(f"{member['username']} was deleted.")
    assert user_named(lab, member["username"]) is None


def test_my_own_row_offers_no_disable_demote_or_delete(lab: Lab, context: BrowserContext) -> None:
    page, admin = users_page(context, lab)
    mine = user_row(page, admin["username"])
    expect(mine).to_contain_text("(you)")
    expect(mine.locator("select.role, button.toggle, button.delete")).to_have_count(0)
    expect(mine.locator("button.reset")).to_have_count(1)


def test_online_now_follows_presence_live(
    lab: Lab, context: BrowserContext, second_context: BrowserContext
) -> None:
    page, _ = users_page(context, lab)
    member = lab.create_user()
    page.reload()
    expect(page.locator("#live-status")).to_have_text(LIVE)
    presence = user_row(page, member["username"]).locator(".status")
    expect(presence).to_contain_text("offline")
    sign_in(second_context, lab, member["username"])
    other = second_context.new_page()
    other.goto(lab.url)
    expect(presence).to_contain_text("online now · 1 tab")
    other.close()
    expect(presence).to_contain_text("offline")


def audit_rows(page: Page) -> Locator:
    return page.locator("#audit-body tr[data-action]")


def cells(row: Locator) -> dict[str, str]:
    """One audit row, by the column each cell belongs to."""
    texts = row.locator("td").all_inner_texts()
    labels = [cell.get_attribute("data-label") for cell in row.locator("td").all()]
    return dict(zip(labels, texts, strict=True))


def test_a_user_created_then_disabled_from_the_page_is_sent_to_login_within_2_s_and_the_audit_lists_it_all(
    lab: Lab, context: BrowserContext, second_context: BrowserContext
) -> None:
    admin_page, admin = users_page(context, lab)
    name = fresh_name("visitor")
    create_from_the_page(admin_page, name)
    expect(admin_page.locator("#users-status")).to_have_text(f"{name} was created as a member.")

    # The new user logs in on the login page and keeps a page open.
    user_page = second_context.new_page()
    user_page.goto(f"{lab.url}login?next=%2Fsettings")
    user_page.fill("#username", name)
    user_page.fill("#password", USER_PASSWORD)
    user_page.click("#login")
    user_page.wait_for_url(f"{lab.url}settings")
    expect(user_page.locator("#live-status")).to_have_text(LIVE)
    target = user_row(admin_page, name)
    expect(target.locator(".status")).to_contain_text("online now")

    target.locator("button.toggle").click()
    disabled_at = time.monotonic()
    expect(user_page).to_have_url(
        re.compile(re.escape(f"{lab.url}login?") + ".*reason=revoked"), timeout=2000
    )
    assert time.monotonic() - disabled_at < 2.0
    expect(user_page.locator("#notice")).to_have_text("You were signed out from another device.")
    expect(admin_page.locator("#users-status")).to_have_text(
        f"{name} is disabled; their sessions have ended."
    )

    admin_page.goto(f"{lab.url}admin/audit")
    about_them = admin_page.locator(f'#audit-body tr[data-target="{name}"]')
    expect(about_them).to_have_count(3)
    listed = [cells(row) for row in about_them.all()]
    assert [(entry["Action"], entry["Actor"], entry["Outcome"]) for entry in listed] == [
        ("user.update", admin["username"], "success"),
        ("auth.login", name, "success"),
        ("user.create", admin["username"], "success"),
    ]
    assert listed[0]["Detail"] == "disabled: true"
    assert listed[2]["Detail"] == "role: member"
    assert {entry["IP address"] for entry in listed} == {"127.0.0.1"}


def test_audit_filters_and_cursor_paging_forward_and_back(lab: Lab, context: BrowserContext) -> None:
    writer = lab.create_user("manager")
    client, _ = lab.login(writer["username"])
    for step in range(23):
        reply = client.put(
            "/api/v1/settings/budget/monthly_limit", {"value": 1000 + step}, headers={"If-Match": "*"}
        )
        assert reply.status == 200, reply
    page, _ = as_admin(context, lab, "admin/audit")
    page.fill("#filter-actor", writer["username"])
    page.fill("#filter-action", "setting.update")
    page.select_option("#filter-limit", "10")
    page.click("#apply-filters")
    expect(page).to_have_url(re.compile(r"actor=" + writer["username"] + r"&action=setting.update&limit=10$"))

    def values_shown() -> list[str]:
        expect(page.locator("#audit-body")).not_to_have_attribute("aria-busy", "true")
        return [re.search(r"value: (\d+)", cells(row)["Detail"]).group(1) for row in audit_rows(page).all()]

    newest_first = [str(1000 + step) for step in reversed(range(23))]
    expect(audit_rows(page)).to_have_count(10)
    assert values_shown() == newest_first[:10]
    expect(page.locator("#previous-page")).to_be_disabled()
    page.click("#next-page")
    expect(page.locator("#page-number")).to_have_text("Page 2")
    assert values_shown() == newest_first[10:20]
    page.click("#next-page")
    expect(page.locator("#page-number")).to_have_text("Page 3")
    assert values_shown() == newest_first[20:]
    expect(page.locator("#next-page")).to_be_disabled()
    expect(page.locator("#previous-page")).to_be_focused()
    page.click("#previous-page")
    expect(page.locator("#page-number")).to_have_text("Page 2")
    assert values_shown() == newest_first[10:20]
    page.click("#previous-page")
    expect(page.locator("#page-number")).to_have_text("Page 1")
    assert values_shown() == newest_first[:10]

    row = cells(audit_rows(page).first)
    assert (row["Target"], row["IP address"], row["Outcome"]) == (
        "budget.monthly_limit",
        "127.0.0.1",
        "success",
    )

    # A time range after every entry, then one that holds them all.
    page.fill("#filter-since", "2099-01-01T00:00:00")
    page.click("#apply-filters")
    expect(page.locator("#audit-body")).to_have_text("No entries match these filters.")
    page.fill("#filter-since", "2000-01-01T00:00:00")
    page.fill("#filter-until", "2099-01-01T00:00:00")
    page.click("#apply-filters")
    expect(audit_rows(page)).to_have_count(10)
    page.fill("#filter-until", "2000-01-02T00:00:00")
    page.click("#apply-filters")
    expect(page.locator("#audit-body")).to_have_text("No entries match these filters.")

    # The filters are in the address: a reload shows the same view.
    page.click("#clear-filters")
    expect(page).to_have_url(f"{lab.url}admin/audit")
    page.goto(f"{lab.url}admin/audit?actor={writer['username']}&limit=10")
    expect(page.locator("#filter-actor")).to_have_value(writer["username"])
    expect(audit_rows(page)).to_have_count(10)


def test_a_refused_login_is_listed_with_its_outcome(lab: Lab, context: BrowserContext) -> None:
    member = lab.create_user()
    reply = lab.client().post(
        "/api/v1/auth/login", {"username": member["username"], "password": "wrong-password"}
    )
    assert reply.status == 401
    page, _ = as_admin(context, lab, f"admin/audit?action=auth.login&actor={member['username']}")
    expect(audit_rows(page)).to_have_count(1)
    row = cells(audit_rows(page).first)
    assert (row["Target"], row["IP address"], row["Outcome"]) == (member["username"], "127.0.0.1", "failure")


@pytest.mark.parametrize("role", ["observer", "member", "manager"])
@pytest.mark.parametrize("path", ["admin/users", "admin/audit"])
def test_non_admins_get_the_403_page_for_admin_pages(lab: Lab, page: Page, path: str, role: str) -> None:
    user = lab.create_user(role)
    sign_in(page.context, lab, user["username"])
    reply = page.goto(lab.url + path)
    assert reply is not None and reply.status == 403
    expect(page.locator("h1")).to_have_text("Not allowed")
    expect(page.locator("#logout")).to_be_visible()
    expect(page.locator("#main").locator("input, select, textarea, table, dialog")).to_have_count(0)


def test_the_users_page_works_from_the_keyboard_and_keeps_the_focus_in_place(
    lab: Lab, context: BrowserContext
) -> None:
    page, _ = users_page(context, lab)
    member = lab.create_user()
    page.reload()
    target = user_row(page, member["username"])
    toggle = target.locator("button.toggle")
    toggle.focus()
    page.keyboard.press("Enter")
    expect(target.locator(".badge.off")).to_have_text("disabled")
    # The row is drawn again from the API's answer; the focus is on its new button.
    expect(target.locator("button.toggle")).to_be_focused()
    expect(target.locator("button.toggle")).to_have_text(re.compile(r"^Enable"))
    page.keyboard.press("Space")
    expect(target.locator("button.toggle")).to_have_text(re.compile(r"^Disable"))
    expect(target.locator("button.toggle")).to_be_focused()

    page.keyboard.press("Tab")
    expect(target.locator("button.reset")).to_be_focused()
    page.keyboard.press("Tab")
    expect(target.locator("button.delete")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator("#delete-cancel")).to_be_focused()
    page.keyboard.press("Escape")
    expect(page.locator("#delete-dialog")).to_be_hidden()
    expect(target.locator("button.delete")).to_be_focused()
    assert user_named(lab, member["username"]) is not None
