"""The settings, users and audit pages measured as tests/test_ui_audit.py measures every page:
at a laptop's and a phone's size, light and dark, axe-core finds no serious or critical
violation, the page weighs at most 150 KB of HTML, CSS and JS, and nothing is asked of another
origin. Each page is measured in the states that add to it: a dialog open, a warning shown, an
error next to a field, the 403 page."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.browser import COLOR_SCHEMES, VIEWPORTS, HeadlessChromium, assert_page_meets_the_bar, sign_in
from tests.servers import Lab


@pytest.fixture(scope="module")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """SQLite only: the pages do not depend on the backend, and the API tests cover both."""
    return f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('db-sqlite') / 'synthorg.db'}"


def settings_ready(page: Page, lab: Lab) -> None:
    expect(page.locator("#live-status")).to_have_text("Live updates are on.")
    expect(page.locator('tr[data-setting="server.port"]')).to_be_visible()


def changed_elsewhere(lab: Lab, value: str) -> None:
    reply = lab.admin.put("/api/v1/settings/ui/banner", {"value": value}, headers={"If-Match": "*"})
    assert reply.status == 200, reply


def conflict_open(page: Page, lab: Lab) -> None:
    settings_ready(page, lab)
    page.fill("#input-ui-banner", "Mine, typed on the page")
    changed_elsewhere(lab, "Theirs, saved meanwhile")
    page.click("#save-ui-banner")
    expect(page.locator("#conflict")).to_be_visible()


def warning_shown(page: Page, lab: Lab) -> None:
    settings_ready(page, lab)
    page.fill("#input-ui-banner", "Mine, still being typed")
    changed_elsewhere(lab, "Theirs, arrived live")
    expect(page.locator("#warning-ui-banner")).to_be_visible()
    page.fill("#input-auth-max_sessions_per_user", "0")
    page.click("#save-auth-max_sessions_per_user")
    expect(page.locator("#error-auth-max_sessions_per_user")).to_be_visible()


def users_ready(page: Page, lab: Lab) -> None:
    expect(page.locator("#users-body tr")).not_to_have_count(0)


def create_refused(page: Page, lab: Lab) -> None:
    users_ready(page, lab)
    page.click("#create-toggle")
    page.fill("#new-username", "admin")
    page.fill("#new-password", "user-password-1")
    page.click("#create")
    expect(page.locator("#create-error")).to_be_visible()


def delete_asked(page: Page, lab: Lab) -> None:
    users_ready(page, lab)
    page.locator("#users-body button.delete").first.click()
    expect(page.locator("#delete-dialog")).to_be_visible()


def password_asked(page: Page, lab: Lab) -> None:
    users_ready(page, lab)
    page.locator("#users-body button.reset").first.click()
    expect(page.locator("#password-dialog")).to_be_visible()


def audit_ready(page: Page, lab: Lab) -> None:
    expect(page.locator("#audit-body tr[data-action]")).not_to_have_count(0)


# name -> (path, role of the user signed in, what to do on the page before measuring)
PAGES: dict[str, tuple[str, str, Callable[[Page, Lab], None]]] = {
    "settings": ("settings", "admin", settings_ready),
    "settings-observer": ("settings", "observer", settings_ready),
    "settings-conflict": ("settings", "manager", conflict_open),
    "settings-warning": ("settings", "manager", warning_shown),
    "users": ("admin/users", "admin", users_ready),
    "users-create-refused": ("admin/users", "admin", create_refused),
    "users-delete": ("admin/users", "admin", delete_asked),
    "users-password": ("admin/users", "admin", password_asked),
    "audit": ("admin/audit", "admin", audit_ready),
    "forbidden": ("admin/users", "observer", lambda page, lab: expect(page.locator("h1")).to_be_visible()),
}


@pytest.mark.parametrize("scheme", COLOR_SCHEMES)
@pytest.mark.parametrize("viewport", list(VIEWPORTS))
@pytest.mark.parametrize("name", list(PAGES))
def test_admin_pages_are_accessible_within_budget_and_ask_no_other_origin(
    lab: Lab, chromium: HeadlessChromium, name: str, viewport: str, scheme: str, tmp_path: Path
) -> None:
    path, role, before = PAGES[name]
    context = chromium.new_context(viewport=VIEWPORTS[viewport], color_scheme=scheme)
    requested: list[str] = []
    context.on("request", lambda request: requested.append(request.url))
    try:
        sign_in(context, lab, lab.create_user(role)["username"])
        page = context.new_page()
        page.goto(lab.url + path)
        before(page, lab)
        assert_page_meets_the_bar(page, lab.url.rstrip("/"), requested, scheme, tmp_path / f"{name}.png")
        assert page.evaluate("document.documentElement.scrollWidth") <= VIEWPORTS[viewport]["width"]
    finally:
        context.close()
