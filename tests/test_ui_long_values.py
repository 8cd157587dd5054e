"""No page gets a horizontal scroll bar, whatever fonts the machine has and however long the
values it shows (issue 16): the longest user name and display name the API accepts, a long token
name, banner and failed-login name, every one without a place to break, shown in a monospaced
font (wider than any proportional one) at a laptop's width, just above the width where tables
stack, and on a phone."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from tests.browser import LAPTOP, PHONE, HeadlessChromium, sign_in
from tests.servers import USER_PASSWORD, Lab

LONGEST_USERNAME = "a" * 30 + "." + "b" * 33  # 64 characters, the most USERNAME_PATTERN allows
LONG_TEXT = "W" * 120
# Pico takes every font from this property: set on the root element (through the CSSOM, which the
# Content-Security-Policy allows), it outranks Pico's own :root rule.
WIDE_FONT = (
    "document.documentElement.style.setProperty('--pico-font-family', '\"DejaVu Sans Mono\", monospace')"
)
WIDTHS = {"laptop": LAPTOP, "tablet": {"width": 768, "height": 1024}, "phone": PHONE}
# path -> the element that shows the page is drawn with its data
PAGES = {
    "": "#presence li",
    "me": "#display-name",
    "sessions": "#sessions tbody tr",
    "tokens": "#tokens tbody tr",
    "settings": 'tr[data-setting="ui.banner"]',
    "admin/users": "#users-body tr",
    "admin/audit": "#audit-body tr[data-action]",
}


@pytest.fixture(scope="module")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """SQLite only: the pages do not depend on the backend."""
    return f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('db-sqlite') / 'synthorg.db'}"


@pytest.fixture(scope="module")
def long_lab(lab: Lab) -> Iterator[Lab]:
    """An admin with the longest name, a long display name, token and banner, and audit rows
    that name them (actor, target and detail)."""
    lab.create_user("admin", username=LONGEST_USERNAME)
    client, _ = lab.login(LONGEST_USERNAME)
    assert client.patch("/api/v1/me", {"display_name": LONG_TEXT}).status == 200
    assert client.post("/api/v1/tokens", {"name": LONG_TEXT}).status == 201
    reply = client.put("/api/v1/settings/ui/banner", {"value": LONG_TEXT}, headers={"If-Match": "*"})
    assert reply.status == 200, reply
    refused = lab.client().post("/api/v1/auth/login", {"username": "x" * 64, "password": USER_PASSWORD})
    assert refused.status == 401
    yield lab
    lab.admin.delete("/api/v1/settings/ui/banner", headers={"If-Match": "*"})


@pytest.mark.parametrize("width", list(WIDTHS))
@pytest.mark.parametrize("path", list(PAGES))
def test_no_page_is_wider_than_the_screen_with_long_values_in_a_wide_font(
    long_lab: Lab, chromium: HeadlessChromium, path: str, width: str
) -> None:
    viewport = WIDTHS[width]
    context = chromium.new_context(viewport=viewport)
    try:
        sign_in(context, long_lab, LONGEST_USERNAME)
        page: Page = context.new_page()
        page.goto(long_lab.url + path)
        expect(page.locator(PAGES[path]).first).to_be_attached()
        page.evaluate(WIDE_FONT)
        overflowing = page.evaluate(
            """(width) => [...document.querySelectorAll("body *")]
                .filter(e => e.getBoundingClientRect().right > width + 0.5)
                .map(e => `${e.tagName.toLowerCase()}#${e.id}.${e.className}`)""",
            viewport["width"],
        )
        assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"], overflowing
    finally:
        context.close()
