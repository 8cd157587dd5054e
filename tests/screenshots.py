"""Screenshots of every page for the docs (`make screenshots`, issue 12): the real server and the
real headless Chromium of the end-to-end tests, with a lab seeded as if in use (people of each
role, sessions from several devices, tokens, settings written by two people, an audit trail,
someone online), at a laptop's and a phone's size, light and dark, into docs/screenshots/.

Each PNG is then cut to 256 colours (tests/png_palette.py), a third of its size: they are committed.

A script rather than a test module: it writes files into the repository and asserts nothing the
page tests do not already assert, so `make test` (pytest over tests/test_*.py) must never run it.

    .venv/bin/python -m tests.screenshots [output folder]
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from playwright.sync_api import BrowserContext, Page, expect

from tests.browser import COLOR_SCHEMES, VIEWPORTS, HeadlessChromium, sign_in
from tests.conftest import start_lab
from tests.png_palette import to_palette
from tests.servers import ADMIN_PASSWORD, REPO, USER_PASSWORD, Lab, ServerProcess, setup_token, write_config
from tests.test_ui_audit_account import everyones_sessions
from tests.test_ui_audit_admin import audit_ready, settings_ready, users_ready

OUTPUT = REPO / "docs" / "screenshots"
BANNER = "Cluster maintenance on Thursday from 22:00 UTC: save your runs before then."
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"
SAFARI = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1"
)
# The browsers of the shots say they are a desktop Chrome, not "HeadlessChrome", on the Sessions page.
CHROME = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
)
EDGE = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0"
)
# username -> (role, display name)
PEOPLE = {
    "mchen": ("manager", "Mei Chen"),
    "aokafor": ("member", "Ada Okafor"),
    "jlindqvist": ("member", "Jonas Lindqvist"),
    "rsato": ("observer", "Rin Sato"),
}


class Seeded:
    """The lab once seeded: the admin's API client and a manager's, for writes during the shots."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        assert lab.admin.patch("/api/v1/me", {"display_name": "Lab Admin"}).status == 200
        for username, (role, display_name) in PEOPLE.items():
            person = {
                "username": username,
                "password": USER_PASSWORD,
                "role": role,
                "display_name": display_name,
            }
            reply = lab.admin.post("/api/v1/users", person)
            assert reply.status == 201, reply
        self.manager, _ = lab.login("mchen", headers={"User-Agent": SAFARI})
        lab.login("mchen", headers={"User-Agent": FIREFOX})
        lab.login("aokafor", headers={"User-Agent": EDGE})
        lab.login("jlindqvist", headers={"User-Agent": FIREFOX})
        lab.login("admin", ADMIN_PASSWORD, headers={"User-Agent": SAFARI})
        refused = lab.client().post("/api/v1/auth/login", {"username": "rsato", "password": "not-it"})
        assert refused.status == 401, refused
        for name in ("nightly backup", "CI runner", "grafana scrape"):
            assert lab.admin.post("/api/v1/tokens", {"name": name}).status == 201
        self.put(lab.admin, "ui/lab_name", "Tornado Lab")
        self.put(lab.admin, "budget/monthly_limit", 2500.0)
        self.put(lab.admin, "auth/session_ttl_minutes", 720)
        self.put(self.manager, "ui/banner", BANNER)
        self.put(self.manager, "websocket/max_subscriptions", 64)

    @staticmethod
    def put(client, name: str, value: object) -> None:  # type: ignore[no-untyped-def]
        reply = client.put(f"/api/v1/settings/{name}", {"value": value}, headers={"If-Match": "*"})
        assert reply.status == 200, reply


def dashboard_in_use(page: Page, seeded: Seeded) -> None:
    expect(page.locator("#connection")).to_have_attribute("data-state", "connected")
    expect(page.locator("#presence li")).not_to_have_count(0)
    for run, result in ((41, "converged in 212 steps"), (42, "loss 0.031, 18 min on gpu-2")):
        reply = seeded.lab.admin.post(
            "/api/v1/events",
            {"channel": "lab", "event_type": "run.finished", "payload": {"run": run, "result": result}},
        )
        assert reply.status in (200, 201, 202), reply
    expect(page.locator("#feed")).to_contain_text("gpu-2")


def conflict_open(page: Page, seeded: Seeded) -> None:
    """Two people on one setting: the manager saves while the admin is still typing."""
    settings_ready(page, seeded.lab)
    page.fill("#input-ui-banner", "Maintenance moved to Friday 22:00 UTC.")
    seeded.put(seeded.manager, "ui/banner", "Maintenance on Thursday 22:00 UTC: the GPUs go first.")
    page.click("#save-ui-banner")
    expect(page.locator("#conflict")).to_be_visible()


def audit_entries(page: Page, seeded: Seeded) -> None:
    """The entries rather than the filters above them, which fill a screen on their own."""
    audit_ready(page, seeded.lab)
    page.locator("#audit-body").evaluate("body => body.closest('table').scrollIntoView()")


def rendered(selector: str) -> Callable[[Page, Seeded], None]:
    return lambda page, seeded: expect(page.locator(selector).first).to_be_visible()


# name -> (path, what to do before the shot); all signed in as the admin, who sees every link.
PAGES: dict[str, tuple[str, Callable[[Page, Seeded], None]]] = {
    "dashboard": ("", dashboard_in_use),
    "sessions": ("sessions", lambda page, seeded: everyones_sessions(page, seeded)),
    "settings": ("settings", lambda page, seeded: settings_ready(page, seeded.lab)),
    "settings-conflict": ("settings", conflict_open),
    "tokens": ("tokens", rendered("#tokens tbody tr")),
    "me": ("me", rendered("#change-password")),
    "admin-users": ("admin/users", lambda page, seeded: users_ready(page, seeded.lab)),
    "admin-audit": ("admin/audit", audit_entries),
    "not-found": ("no-such-page", rendered("h1")),
}


@contextmanager
def servers(folder: Path) -> Iterator[tuple[Lab, ServerProcess]]:
    """A lab with its admin, and a server still waiting for its first admin (the setup page)."""
    (folder / "lab").mkdir()
    (folder / "first-run").mkdir()
    lab = start_lab(folder / "lab", f"sqlite+aiosqlite:///{folder / 'lab.db'}")
    first_run = ServerProcess(
        write_config(folder / "first-run", f"sqlite+aiosqlite:///{folder / 'first-run.db'}")
    ).start()
    try:
        yield lab, first_run
    finally:
        first_run.terminate()
        lab.server.terminate()


def shoot(page: Page, path: Path) -> None:
    """The viewport, as a person sees it, with the caret and animations stilled."""
    page.evaluate("document.activeElement && document.activeElement.blur && document.activeElement.blur()")
    page.screenshot(path=str(path), animations="disabled", caret="hide")
    to_palette(path)


def main(output: Path = OUTPUT) -> None:
    output.mkdir(parents=True, exist_ok=True)
    chromium = HeadlessChromium().start()
    with tempfile.TemporaryDirectory(prefix="synthorg-shots-") as tmp, servers(Path(tmp)) as (lab, first_run):
        seeded = Seeded(lab)
        # Someone online for the whole run: another person's dashboard, open in its own profile.
        online: BrowserContext = chromium.new_context()
        online.set_extra_http_headers({"User-Agent": FIREFOX})
        sign_in(online, lab, "aokafor")
        online.new_page().goto(lab.url)
        try:
            for viewport, size in VIEWPORTS.items():
                for scheme in COLOR_SCHEMES:
                    suffix = f"{size['width']}-{scheme}.png"
                    context = chromium.new_context(viewport=size, color_scheme=scheme)
                    context.set_extra_http_headers({"User-Agent": SAFARI if viewport == "phone" else CHROME})
                    page = context.new_page()
                    page.goto(f"{lab.url}login")
                    expect(page.locator("#username")).to_be_visible()
                    shoot(page, output / f"login-{suffix}")
                    page.goto(f"{first_run.url}setup?token={setup_token(first_run)}")
                    expect(page.locator("form")).to_be_visible()
                    shoot(page, output / f"setup-{suffix}")
                    sign_in(context, lab, "admin", ADMIN_PASSWORD)
                    for name, (path, before) in PAGES.items():
                        page = context.new_page()
                        page.goto(lab.url + path)
                        before(page, seeded)
                        page.wait_for_load_state("networkidle")
                        shoot(page, output / f"{name}-{suffix}")
                        page.close()
                        if name == "settings-conflict":
                            seeded.put(seeded.manager, "ui/banner", BANNER)
                    context.close()
                    print(f"{viewport} {scheme}: done", flush=True)
        finally:
            online.close()
            chromium.stop()


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else OUTPUT)
