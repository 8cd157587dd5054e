"""A real headless Chromium for the page tests, driven by Playwright.

The browser is Debian's `chromium` package, never one fetched by `playwright install`: the tests
must run where nothing can be downloaded. The flags keep it from phoning home (updates, sync,
QUIC probes) so that every request it makes is one a test caused.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from playwright.sync_api import Browser, BrowserContext, Playwright, sync_playwright

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
VIEWPORT = {"width": 1024, "height": 768}


class HeadlessChromium:
    """One browser process; each test opens its own context, so cookies never leak between tests."""

    def __init__(self, executable: Path = CHROMIUM) -> None:
        self.executable = executable
        self._playwright: Playwright | None = None
        self._browser: Browser | None = None

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

    def new_context(self) -> BrowserContext:
        """A fresh profile: no cookies, no storage, and the short timeout for every wait."""
        assert self._browser is not None
        context = self._browser.new_context(viewport=VIEWPORT)
        context.set_default_timeout(TIMEOUT_MS)
        return context

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            if self._browser is not None:
                self._browser.close()
        if self._playwright is not None:
            self._playwright.stop()
        self._browser = self._playwright = None
