"""Every page, measured in a real headless Chromium at a laptop's and a phone's size, light and dark
(issue 12): axe-core finds no serious or critical violation, the page weighs at most 150 KB of
HTML, CSS and JS (uncompressed, from the browser's resource timing), and it asks no other origin
for anything."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, Page, expect

from tests.browser import COLOR_SCHEMES, VIEWPORTS, HeadlessChromium, assert_page_meets_the_bar
from tests.servers import USER_PASSWORD, Lab, ServerProcess, setup_token, write_config

BANNER = "Maintenance tonight at 22:00"


@dataclass(frozen=True)
class Site:
    lab: Lab
    member: str
    first_run_url: str  # a second server, where no user exists yet
    setup_token: str


@pytest.fixture(scope="module")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """SQLite only: the pages do not depend on the backend, and the API tests cover both."""
    return f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('db-sqlite') / 'synthorg.db'}"


@pytest.fixture(scope="module")
def site(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """The module's lab, with a banner to show, and a server still waiting for its first admin."""
    folder = tmp_path_factory.mktemp("first-run")
    first_run = ServerProcess(write_config(folder, f"sqlite+aiosqlite:///{folder / 'synthorg.db'}")).start()
    reply = lab.admin.put("/api/v1/settings/ui/banner", {"value": BANNER}, headers={"If-Match": "*"})
    assert reply.status == 200
    try:
        yield Site(lab, lab.create_user()["username"], first_run.url, setup_token(first_run))
    finally:
        lab.admin.delete("/api/v1/settings/ui/banner", headers={"If-Match": "*"})
        assert first_run.terminate() == 0


def signed_in(context: BrowserContext, site: Site) -> None:
    reply = context.request.post(
        f"{site.lab.url}api/v1/auth/login", data={"username": site.member, "password": USER_PASSWORD}
    )
    assert reply.status == 200, reply.text()


def wrong_password(page: Page, site: Site) -> None:
    page.fill("#username", site.member)
    page.fill("#password", "not-the-password")
    page.click("#login")
    expect(page.locator("#error")).to_be_visible()


# name -> (URL, signed in?, what to do on the page before measuring)
PAGES: dict[str, tuple[Callable[[Site], str], bool, Callable[[Page, Site], None] | None]] = {
    "login": (lambda s: f"{s.lab.url}login", False, None),
    "login-error": (lambda s: f"{s.lab.url}login", False, wrong_password),
    "login-signed-out": (lambda s: f"{s.lab.url}login?reason=revoked", False, None),
    "login-token-rejected": (lambda s: f"{s.lab.url}login?reason=token_rejected", False, None),
    "setup-form": (lambda s: f"{s.first_run_url}setup?token={s.setup_token}", False, None),
    "setup-needed": (lambda s: f"{s.first_run_url}setup", False, None),
    "setup-complete": (lambda s: f"{s.lab.url}setup", False, None),
    "dashboard": (lambda s: s.lab.url, True, None),
    "not-found": (lambda s: f"{s.lab.url}no/such/page", True, None),
}


@pytest.mark.parametrize("scheme", COLOR_SCHEMES)
@pytest.mark.parametrize("viewport", list(VIEWPORTS))
@pytest.mark.parametrize("name", list(PAGES))
def test_every_page_is_accessible_within_budget_and_asks_no_other_origin(
    site: Site, chromium: HeadlessChromium, name: str, viewport: str, scheme: str, tmp_path: Path
) -> None:
    url, needs_session, before = PAGES[name]
    context = chromium.new_context(viewport=VIEWPORTS[viewport], color_scheme=scheme)
    requested: list[str] = []
    context.on("request", lambda request: requested.append(request.url))
    try:
        if needs_session:
            signed_in(context, site)
        page = context.new_page()
        page.goto(url(site))
        if before is not None:
            before(page, site)
        origin = "/".join(url(site).split("/", 3)[:3])
        shot = tmp_path / f"{name}-{viewport}-{scheme}.png"
        assert_page_meets_the_bar(page, origin, requested, scheme, shot)
    finally:
        context.close()
