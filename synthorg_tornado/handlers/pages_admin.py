"""The pages that run the lab: its settings (read by everyone, written by the roles each setting
names) and, for admins, the users and the audit log.

Each page is a shell inside the layout; its script (static/settings.js, users.js, audit.js)
reads and writes through the public API, so the page shows exactly what a script would see and
every refusal comes back as the API's own problem+json. A non-admin asking for an admin page
gets the 403 page inside the layout, before any of it is rendered.
"""

from __future__ import annotations

from synthorg_tornado.accounts import roles
from synthorg_tornado.handlers.decorators import authenticated, require_role
from synthorg_tornado.handlers.page_base import PageHandler


class SettingsPage(PageHandler):
    """Every setting, grouped by namespace. Who may edit what is the API's `write_roles`; the
    page only hides editors a role could not use (the API refuses them anyway)."""

    @authenticated
    def get(self) -> None:
        self.render("settings.html")


class UsersPage(PageHandler):
    @require_role(roles.ADMIN)
    def get(self) -> None:
        self.render(
            "admin_users.html",
            roles=roles.ROLES,
            min_length=self.config.auth.password_min_length,
        )


# Offered as suggestions in the action filter; any other action can still be typed.
AUDIT_ACTIONS = (
    "auth.login",
    "auth.logout",
    "auth.setup",
    "auth.token_login",
    "session.revoke",
    "setting.reset",
    "setting.update",
    "token.create",
    "token.revoke",
    "user.create",
    "user.delete",
    "user.password",
    "user.unlock",
    "user.update",
)


class AuditPage(PageHandler):
    @require_role(roles.ADMIN)
    def get(self) -> None:
        self.render("admin_audit.html", actions=AUDIT_ACTIONS)


default_handlers = [
    (r"settings", SettingsPage),
    (r"admin/users", UsersPage),
    (r"admin/audit", AuditPage),
]
