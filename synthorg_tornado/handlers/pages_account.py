"""The pages of one's own account: the dashboard, sessions, API tokens and the profile (`/me`).

Each handler renders a page shell inside the layout; the page's script (static/<page>.js) reads
and changes everything through the public API, so the pages and scripts see the same rules. What
a handler puts into the page is what the API has no call for: limits from config.yaml, shown
before the user types, and the dashboard's starting position in the lab's event log.
"""

from __future__ import annotations

from synthorg_tornado.handlers.decorators import authenticated
from synthorg_tornado.handlers.page_base import PageHandler


class DashboardPage(PageHandler):
    """Who is online, the live feed and the connection's state (static/dashboard.js).

    The page carries the position of the last event this process had applied when it rendered
    the page: the page's first subscription resumes from there (`since`), so nothing that
    happens between rendering and the socket's opening is missed, and nothing older is shown.
    Read from memory, like everything else the layout shows.
    """

    @authenticated
    def get(self) -> None:
        self.render("home.html", event_position=self.services.bus.last_applied)


class SessionsPage(PageHandler):
    """My sessions, revoke one or all but this one; admins may list everyone's (sessions.js)."""

    @authenticated
    def get(self) -> None:
        self.render("sessions.html")


class TokensPage(PageHandler):
    """Create (the secret shown once), list and revoke API tokens (tokens.js). The longest
    lifetime the server accepts bounds the expiry field."""

    @authenticated
    def get(self) -> None:
        self.render("tokens.html", max_days=self.config.auth.api_token_max_days)


class MePage(PageHandler):
    """Display name and password (me.js). The password rule is shown before anything is typed:
    the minimum length comes from config.yaml, the maximum from bcrypt (72 bytes)."""

    @authenticated
    def get(self) -> None:
        self.render("me.html", min_length=self.config.auth.password_min_length)


default_handlers = [
    (r"sessions", SessionsPage),
    (r"tokens", TokensPage),
    (r"me", MePage),
    (r"", DashboardPage),
]
