"""The account pages (dashboard, sessions, tokens, me), measured like every page
(tests/test_ui_audit.py): in a real headless Chromium at a laptop's and a phone's size, light and
dark, with what the page shows once it is in use (a feed, everyone's sessions, a new token, the
revoke dialog, an error): no serious or critical axe-core violation, at most 150 KB, no other
origin, and on a phone nothing wider than the screen."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.browser import COLOR_SCHEMES, VIEWPORTS, HeadlessChromium, assert_page_meets_the_bar, sign_in
from tests.servers import ADMIN_PASSWORD, Lab


@dataclass(frozen=True)
class Site:
    lab: Lab
    member: str


@pytest.fixture(scope="module")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """SQLite only: the pages do not depend on the backend, and the API tests cover both."""
    return f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('db-sqlite') / 'synthorg.db'}"


@pytest.fixture(scope="module")
def site(lab: Lab) -> Iterator[Site]:
    """The module's lab with a banner, a member with a session elsewhere and a token, and a
    moment of activity for the dashboard's feed."""
    member = lab.create_user()["username"]
    client, _ = lab.login(
        member, headers={"User-Agent": "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Firefox/133.0"}
    )
    assert client.post("/api/v1/tokens", {"name": "nightly backup"}).status == 201
    reply = lab.admin.put(
        "/api/v1/settings/ui/banner", {"value": "Maintenance at 22:00"}, headers={"If-Match": "*"}
    )
    assert reply.status == 200
    try:
        yield Site(lab, member)
    finally:
        lab.admin.delete("/api/v1/settings/ui/banner", headers={"If-Match": "*"})


def feed_in_use(page: Page, site: Site) -> None:
    expect(page.locator("#connection")).to_have_attribute("data-state", "connected")
    payload = {"run": 12, "result": "a long result that wraps on a phone " * 4}
    site.lab.admin.post(
        "/api/v1/events", {"channel": "lab", "event_type": "run.finished", "payload": payload}
    )
    expect(page.locator("#feed li")).not_to_have_count(0)


def everyones_sessions(page: Page, site: Site) -> None:
    page.get_by_label("Everyone's sessions").check()
    expect(page.locator("th.user-column")).to_be_visible()
    expect(page.locator("#sessions")).not_to_have_attribute("aria-busy", "true")


def sessions_listed(page: Page, site: Site) -> None:
    expect(page.locator("#sessions tbody tr.current")).to_have_count(1)
    expect(page.locator("#sessions tbody tr:not(.current)")).not_to_have_count(0)


def new_token_shown(page: Page, site: Site) -> None:
    page.fill("#token-name", "ci")
    page.click("#create")
    expect(page.locator("#new-token")).to_be_visible()
    expect(page.locator("#tokens tbody tr")).not_to_have_count(0)


def revoke_dialog_open(page: Page, site: Site) -> None:
    page.locator("#tokens button.revoke").first.click()
    expect(page.locator("#revoke-dialog")).to_be_visible()


def password_refused(page: Page, site: Site) -> None:
    page.fill("#current-password", "not-my-password")
    page.fill("#new-password", "a-new-password")
    page.fill("#repeat-password", "a-new-password")
    page.click("#change-password")
    expect(page.locator("#password-error")).to_be_visible()


# name -> (path, signed in as the admin?, what to do on the page before measuring)
PAGES: dict[str, tuple[str, bool, Callable[[Page, Site], None]]] = {
    "dashboard": ("", False, feed_in_use),
    "dashboard-admin": ("", True, feed_in_use),
    "sessions": ("sessions", False, sessions_listed),
    "sessions-everyone": ("sessions", True, everyones_sessions),
    "tokens-new": ("tokens", False, new_token_shown),
    "tokens-revoke-dialog": ("tokens", False, revoke_dialog_open),
    "me-error": ("me", False, password_refused),
}


@pytest.mark.parametrize("scheme", COLOR_SCHEMES)
@pytest.mark.parametrize("viewport", list(VIEWPORTS))
@pytest.mark.parametrize("name", list(PAGES))
def test_every_account_page_is_accessible_within_budget_and_fits_the_screen(
    site: Site, chromium: HeadlessChromium, name: str, viewport: str, scheme: str, tmp_path: Path
) -> None:
    path, as_admin, before = PAGES[name]
    context = chromium.new_context(viewport=VIEWPORTS[viewport], color_scheme=scheme)
    requested: list[str] = []
    context.on("request", lambda request: requested.append(request.url))
    try:
        if as_admin:
            sign_in(context, site.lab, "admin", ADMIN_PASSWORD)
        else:
            sign_in(context, site.lab, site.member)
        page = context.new_page()
        page.goto(site.lab.url + path)
        before(page, site)
        shot = tmp_path / f"{name}-{viewport}-{scheme}.png"
        assert_page_meets_the_bar(page, site.lab.url.rstrip("/"), requested, scheme, shot)
        assert page.evaluate("document.documentElement.scrollWidth") <= VIEWPORTS[viewport]["width"]
    finally:
        context.close()
