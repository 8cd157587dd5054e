"""A real headless Chromium for the page tests, driven by Playwright, and what the page tests
measure with it: accessibility (axe-core), the weight of a page and where its requests go.

The browser is Debian's `chromium` package, never one fetched by `playwright install`: the tests
must run where nothing can be downloaded. The flags keep it from phoning home (updates, sync,
QUIC probes) so that every request it makes is one a test caused.

The `chromium`, `context` and `page` fixtures are in conftest.py.
"""

from __future__ import annotations

import contextlib
import functools
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Page, Playwright, sync_playwright

from tests.servers import USER_PASSWORD, Lab

CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Long enough for a bcrypt round trip on a loaded machine, short enough that a broken page fails
# the test in seconds instead of Playwright's default 30.
TIMEOUT_MS = 10_000
LAPTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
VIEWPORTS = {"laptop": LAPTOP, "phone": PHONE}
COLOR_SCHEMES = ("light", "dark")
# Issue 12: the HTML, CSS and JS of one page, uncompressed, vendored files included.
PAGE_BUDGET_BYTES = 150 * 1024
# What a page weighs: the document and what it loads to show itself, not the API data it fetches.
NOT_PAGE_WEIGHT = frozenset({"fetch", "xmlhttprequest", "beacon", "img"})


# Installed before a page's own scripts in every context: each Content-Security-Policy violation
# is kept in `window.cspViolations` and reported to the test through a binding, which outlives the
# page, so a violation just before a navigation is not lost with the document that saw it.
RECORD_CSP_VIOLATIONS = """
(() => {
    window.cspViolations = [];
    window.addEventListener("securitypolicyviolation", (event) => {
        const seen = `${event.effectiveDirective} blocked ${event.blockedURI || "inline"}`
            + ` at ${event.sourceFile || event.documentURI}:${event.lineNumber}`;
        window.cspViolations.push(seen);
        window.reportCspViolation(seen);
    }, true);
})();
"""
# Console errors that are the browser reporting an answer a test asked for (a 401, 404 or 429 to
# a fetch, a WebSocket refused or cut on purpose), not a fault of the page.
EXPECTED_CONSOLE_ERRORS = re.compile(r"^(Failed to load resource: |WebSocket connection to )")


class HeadlessChromium:
    """One browser process; each test opens its own context, so cookies never leak between tests.

    Every context records what its pages report going wrong: Content-Security-Policy violations,
    console errors and uncaught exceptions. `take_problems` hands them over; conftest.py asserts
    after every test that used the browser that there were none."""

    def __init__(self, executable: Path = CHROMIUM) -> None:
        self.executable = executable
        self._playwright: Playwright | None = None
        self._browser: Browser | None = None
        self._problems: list[str] = []

    def start(self) -> HeadlessChromium:
        if not self.executable.exists():
            raise RuntimeError(f"{self.executable} not found; install Debian's chromium package")
        self._playwright = sync_playwright().start()
        try:
            self._browser = self._playwright.chromium.launch(
                executable_path=str(self.executable), headless=True, args=LAUNCH_ARGS
            )
        except BaseException:
            self._playwright.stop()
            raise
        return self

    def new_context(self, viewport: dict[str, int] = LAPTOP, color_scheme: str = "light") -> BrowserContext:
        """A fresh profile (no cookies, no storage, no cache) with the short timeout for every wait."""
        assert self._browser is not None
        context = self._browser.new_context(viewport=viewport, color_scheme=color_scheme)  # type: ignore[arg-type]
        context.set_default_timeout(TIMEOUT_MS)
        self._record_problems(context)
        return context

    def _record_problems(self, context: BrowserContext) -> None:
        problems = self._problems
        context.expose_binding(
            "reportCspViolation",
            lambda source, seen: problems.append(f"CSP violation on {source['page'].url}: {seen}"),
        )
        context.add_init_script(RECORD_CSP_VIOLATIONS)

        def on_console(message: ConsoleMessage) -> None:
            if message.type == "error" and not EXPECTED_CONSOLE_ERRORS.match(message.text):
                problems.append(
                    f"console error on {message.page.url if message.page else '?'}: {message.text}"
                )

        context.on("console", on_console)
        context.on(
            "weberror",
            lambda error: problems.append(
                f"uncaught on {error.page.url if error.page else '?'}: {error.error}"
            ),
        )

    def take_problems(self) -> list[str]:
        """What the pages reported going wrong since the last call."""
        problems, self._problems[:] = list(self._problems), []
        return problems

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            if self._browser is not None:
                self._browser.close()
        if self._playwright is not None:
            self._playwright.stop()
        self._browser = self._playwright = None


def page_resources(page: Page) -> list[dict[str, Any]]:
    """The browser's own account of what the page loaded (Resource Timing): the document and
    every resource, with its uncompressed size."""
    return page.evaluate(
        """() => [...performance.getEntriesByType("navigation"), ...performance.getEntriesByType("resource")]
            .map(e => ({name: e.name, type: e.initiatorType, size: e.decodedBodySize}))"""
    )


def page_weight(page: Page) -> tuple[int, list[dict[str, Any]]]:
    """Bytes of HTML, CSS and JS the page loaded, and the entries counted."""
    page.wait_for_load_state("networkidle")
    counted = [entry for entry in page_resources(page) if entry["type"] not in NOT_PAGE_WEIGHT]
    return sum(entry["size"] for entry in counted), counted


def foreign_resources(page: Page, origin: str) -> list[str]:
    """Every resource of the page whose origin is not `origin` (scheme, host and port)."""
    own = urlsplit(origin)
    return [
        entry["name"]
        for entry in page_resources(page)
        if (urlsplit(entry["name"]).scheme, urlsplit(entry["name"]).netloc) != (own.scheme, own.netloc)
    ]


@functools.cache
def axe() -> Any:
    """axe-core as the package ships it (its script is half a megabyte: read once)."""
    from axe_playwright_python.sync_playwright import Axe

    return Axe()


def serious_accessibility_violations(page: Page) -> list[str]:
    """axe-core's serious and critical findings on the page as it is now, one line each."""
    results = axe().run(page)
    return [
        f"{violation['id']} ({violation['impact']}): "
        + "; ".join(str(node["target"]) for node in violation["nodes"])
        for violation in results.response["violations"]
        if violation["impact"] in ("serious", "critical")
    ]


# Installed before a page's own scripts (`context.add_init_script`): every WebSocket the page
# opens is kept in `window.testSockets`, so a test can see it open or close it as a network
# failure would, without any hook in the page's code.
RECORD_WEBSOCKETS = """
(() => {
    const Native = window.WebSocket;
    window.testSockets = [];
    window.WebSocket = class extends Native {
        constructor(...args) { super(...args); window.testSockets.push(this); }
    };
})();
"""


def wait_for_open_socket(page: Page) -> None:
    """The page's latest WebSocket is open (it needs RECORD_WEBSOCKETS)."""
    page.wait_for_function("() => (window.testSockets || []).some(s => s.readyState === WebSocket.OPEN)")


def assert_page_meets_the_bar(page: Page, origin: str, requested: list[str], scheme: str, shot: Path) -> None:
    """What every page must be (issue 12): at most 150 KB of HTML, CSS and JS with the vendored
    Pico among them, no request to another origin (`requested`: every URL the context asked for),
    shown in the colour scheme asked for, and no serious or critical axe-core violation; on a
    violation the page is saved to `shot` to see it."""
    weight, counted = page_weight(page)
    assert any(entry["name"].endswith("/pico.min.css") for entry in counted), counted
    assert weight <= PAGE_BUDGET_BYTES, (weight, counted)
    assert foreign_resources(page, origin) == []
    assert [r for r in requested if not r.startswith(origin + "/")] == []
    assert page.evaluate("matchMedia('(prefers-color-scheme: dark)').matches") == (scheme == "dark")
    violations = serious_accessibility_violations(page)
    if violations:
        page.screenshot(path=str(shot), full_page=True)
    assert violations == [], violations


def sign_in(context: BrowserContext, lab: Lab, username: str, password: str = USER_PASSWORD) -> None:
    """A session cookie in this browser profile, through the API as the login page does it."""
    reply = context.request.post(
        f"{lab.url}api/v1/auth/login", data={"username": username, "password": password}
    )
    assert reply.status == 200, reply.text()
