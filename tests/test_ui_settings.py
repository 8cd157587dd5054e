"""The settings page in a real headless Chromium, against the real server (issue 12, `/settings`):
two people editing one setting, the conflict dialog and its three ways out, the live warning,
422s next to the field, who sees editors, and the keyboard alone from login to a saved change."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from playwright.sync_api import BrowserContext, Locator, Page, expect

from tests.browser import HeadlessChromium, sign_in
from tests.servers import USER_PASSWORD, Lab
from tests.test_ui_layout import assert_visible_focus_ring

LIVE = "Live updates are on."


@pytest.fixture(scope="module")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """SQLite only: the pages do not depend on the backend, and the API tests cover both."""
    return f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('db-sqlite') / 'synthorg.db'}"


@pytest.fixture
def second_context(chromium: HeadlessChromium) -> Iterator[BrowserContext]:
    """Another person's browser: its own profile, so its own session."""
    context = chromium.new_context()
    yield context
    context.close()


def open_settings(context: BrowserContext, lab: Lab, role: str) -> tuple[Page, dict]:
    """A user of `role` on /settings, with every setting shown and the page's socket subscribed
    (so a change made from now on reaches it)."""
    user = lab.create_user(role)
    sign_in(context, lab, user["username"])
    page = context.new_page()
    page.goto(f"{lab.url}settings")
    expect(page.locator("#live-status")).to_have_text(LIVE)
    expect(page.locator('tr[data-setting="server.port"]')).to_be_visible()
    return page, user


def row(page: Page, name: str) -> Locator:
    return page.locator(f'tr[data-setting="{name}"]')


def editor(page: Page, name: str) -> Locator:
    return row(page, name).locator("input, textarea, select").first


def stored(lab: Lab, name: str) -> dict:
    namespace, key = name.split(".")
    reply = lab.admin.get(f"/api/v1/settings/{namespace}/{key}")
    assert reply.status == 200, reply
    return reply.json()


def unique(word: str) -> str:
    return f"{word} {uuid.uuid4().hex[:8]}"


def both_edit_the_banner(lab: Lab, first: Page, second: Page) -> tuple[str, str]:
    """The second person starts editing; the first saves their own value before the second does."""
    theirs, mine = unique("Theirs"), unique("Mine")
    editor(second, "ui.banner").fill(mine)
    editor(first, "ui.banner").fill(theirs)
    row(first, "ui.banner").locator("button.save").click()
    expect(row(first, "ui.banner").locator(".saved")).to_have_text("Saved.")
    assert stored(lab, "ui.banner")["value"] == theirs
    return theirs, mine


def test_the_second_save_shows_both_values_and_who_saved_first_and_overwrite_with_mine_stores_it(
    lab: Lab, context: BrowserContext, second_context: BrowserContext
) -> None:
    first, first_user = open_settings(context, lab, "admin")
    second, _ = open_settings(second_context, lab, "manager")
    theirs, mine = both_edit_the_banner(lab, first, second)

    row(second, "ui.banner").locator("button.save").click()
    dialog = second.locator("#conflict")
    expect(dialog).to_be_visible()
    expect(dialog.locator("#conflict-theirs")).to_have_text(theirs)
    expect(dialog.locator("#conflict-mine")).to_have_text(mine)
    expect(dialog.locator("#conflict-who")).to_contain_text(first_user["username"])
    expect(dialog.locator("#conflict-who")).to_contain_text("ui.banner")

    dialog.locator("#overwrite").click()
    expect(dialog).to_be_hidden()
    expect(row(second, "ui.banner").locator(".saved")).to_have_text("Saved over the other change.")
    after = stored(lab, "ui.banner")
    assert after["value"] == mine
    assert after["updated_by"] != first_user["username"]
    # The first person's page follows without a reload.
    expect(editor(first, "ui.banner")).to_have_value(mine)


def test_keep_theirs_leaves_the_first_value_stored_and_shows_it_in_my_editor(
    lab: Lab, context: BrowserContext, second_context: BrowserContext
) -> None:
    first, first_user = open_settings(context, lab, "admin")
    second, _ = open_settings(second_context, lab, "manager")
    theirs, _mine = both_edit_the_banner(lab, first, second)
    version = stored(lab, "ui.banner")["version"]

    row(second, "ui.banner").locator("button.save").click()
    dialog = second.locator("#conflict")
    expect(dialog.locator("#conflict-theirs")).to_have_text(theirs)
    dialog.locator("#keep-theirs").click()
    expect(dialog).to_be_hidden()
    expect(editor(second, "ui.banner")).to_have_value(theirs)
    expect(row(second, "ui.banner").locator(".saved")).to_have_text(
        f"Kept the value saved by {first_user['username']}."
    )
    after = stored(lab, "ui.banner")
    assert (after["value"], after["version"]) == (theirs, version)


def test_edit_mine_keeps_my_value_and_the_next_save_replaces_theirs_knowingly(
    lab: Lab, context: BrowserContext, second_context: BrowserContext
) -> None:
    first, _ = open_settings(context, lab, "admin")
    second, _ = open_settings(second_context, lab, "manager")
    _theirs, mine = both_edit_the_banner(lab, first, second)

    row(second, "ui.banner").locator("button.save").click()
    second.locator("#edit-mine").click()
    expect(second.locator("#conflict")).to_be_hidden()
    expect(editor(second, "ui.banner")).to_be_focused()
    expect(editor(second, "ui.banner")).to_have_value(mine)
    edited = mine + " (edited)"
    editor(second, "ui.banner").fill(edited)
    row(second, "ui.banner").locator("button.save").click()
    expect(row(second, "ui.banner").locator(".saved")).to_have_text("Saved.")
    assert stored(lab, "ui.banner")["value"] == edited


def test_a_change_to_the_setting_i_am_editing_warns_me_at_once_before_i_save(
    lab: Lab, context: BrowserContext, second_context: BrowserContext
) -> None:
    first, first_user = open_settings(context, lab, "admin")
    second, _ = open_settings(second_context, lab, "manager")
    writes: list[str] = []
    second.on("request", lambda r: writes.append(r.url) if r.method == "PUT" else None)
    mine = unique("Mine")
    editor(second, "ui.banner").fill(mine)
    warning = row(second, "ui.banner").locator(".warning")
    expect(warning).to_be_hidden()

    theirs = unique("Theirs")
    editor(first, "ui.banner").fill(theirs)
    row(first, "ui.banner").locator("button.save").click()

    expect(warning).to_be_visible()
    expect(warning).to_contain_text(first_user["username"])
    expect(warning).to_contain_text(theirs)
    expect(editor(second, "ui.banner")).to_have_value(mine)
    assert writes == []


def test_a_change_elsewhere_updates_an_editor_without_unsaved_changes_live(
    lab: Lab, context: BrowserContext
) -> None:
    page, _ = open_settings(context, lab, "manager")
    writer = lab.create_user("admin")
    client, _ = lab.login(writer["username"])
    current = stored(lab, "budget.monthly_limit")
    value = current["value"] + 125.5
    reply = client.put(
        "/api/v1/settings/budget/monthly_limit", {"value": value}, headers={"If-Match": current["etag"]}
    )
    assert reply.status == 200, reply
    expect(editor(page, "budget.monthly_limit")).to_have_value(str(value))
    target = row(page, "budget.monthly_limit")
    expect(target.locator(".badge.source")).to_have_text("database")
    expect(target.locator(".who")).to_have_text(writer["username"])
    expect(target.locator(".saved")).to_contain_text(f"Changed by {writer['username']}")
    expect(target.locator(".warning")).to_be_hidden()


def test_a_value_the_server_refuses_shows_its_reason_next_to_the_field(
    lab: Lab, context: BrowserContext
) -> None:
    page, _ = open_settings(context, lab, "manager")
    before = stored(lab, "auth.max_sessions_per_user")
    editor(page, "auth.max_sessions_per_user").fill("0")
    row(page, "auth.max_sessions_per_user").locator("button.save").click()
    error = page.locator("#error-auth-max_sessions_per_user")
    expect(error).to_have_text("auth.max_sessions_per_user must be at least 1.")
    expect(editor(page, "auth.max_sessions_per_user")).to_have_attribute("aria-invalid", "true")
    assert stored(lab, "auth.max_sessions_per_user")["version"] == before["version"]


def test_each_setting_shows_its_source_bounds_restart_marker_and_masked_value(
    lab: Lab, context: BrowserContext
) -> None:
    page, _ = open_settings(context, lab, "admin")
    entries = lab.admin.get("/api/v1/settings").json()
    expect(page.locator("tr[data-setting]")).to_have_count(len(entries))
    groups = page.locator("#settings-groups section h2 code")
    expect(groups).to_have_text(list(dict.fromkeys(entry["namespace"] for entry in entries)))
    expect(row(page, "server.port").locator(".badge.source")).to_have_text("config")
    expect(row(page, "server.port")).to_contain_text("restart required")
    expect(row(page, "server.port").locator("input, textarea, select, button")).to_have_count(0)
    limit = editor(page, "auth.session_ttl_minutes")
    expect(limit).to_have_attribute("type", "number")
    expect(limit).to_have_attribute("min", "1")
    expect(limit).to_have_attribute("max", "525600")
    expect(row(page, "auth.session_ttl_minutes")).to_contain_text("A whole number from 1 to 525600.")
    expect(editor(page, "budget.monthly_limit")).to_have_attribute("step", "any")

    secret = stored(lab, "notifications.webhook_secret")
    reply = lab.admin.put(
        "/api/v1/settings/notifications/webhook_secret",
        {"value": "s3cret-value"},
        headers={"If-Match": secret["etag"]},
    )
    assert reply.status == 200, reply
    field = editor(page, "notifications.webhook_secret")
    expect(field).to_have_attribute("type", "password")
    expect(row(page, "notifications.webhook_secret").locator(".who")).to_have_text("admin")
    expect(field).to_have_value("")
    assert "s3cret-value" not in page.content()


def test_editors_follow_the_type_and_constraints(lab: Lab, context: BrowserContext) -> None:
    """The registry has no writable toggle, choice or JSON setting today, so these editors are
    built by the page's own SettingRow for entries shaped as the API gives them."""
    page, _ = open_settings(context, lab, "admin")
    page.evaluate(
        """async () => {
            const {SettingRow} = await import("./static/settings.js");
            const base = {source: "default", updated_at: null, updated_by: null, version: 0, etag: '"e"',
                          restart_required: false, sensitive: false, description: "A test entry.",
                          write_roles: ["admin", "manager"], constraints: {}};
            const body = document.createElement("tbody");
            body.id = "made";
            for (const entry of [
                {...base, namespace: "test", key: "flag", type: "bool", value: true},
                {...base, namespace: "test", key: "mode", type: "enum", value: "b",
                 constraints: {choices: ["a", "b", "c"]}},
                {...base, namespace: "test", key: "doc", type: "json", value: {"x": [1, 2]}},
            ]) body.append(new SettingRow(entry).element);
            const table = document.createElement("table");
            table.append(body);
            document.getElementById("settings-groups").append(table);
        }"""
    )
    made = page.locator("#made")
    flag = made.locator("#input-test-flag")
    expect(flag).to_have_attribute("role", "switch")
    expect(flag).to_be_checked()
    flag.focus()
    page.keyboard.press("Space")
    expect(flag).not_to_be_checked()

    mode = made.locator("#input-test-mode")
    expect(mode.locator("option")).to_have_text(["a", "b", "c"])
    expect(mode).to_have_value("b")

    doc = made.locator("#input-test-doc")
    expect(doc).to_have_value('{\n  "x": [\n    1,\n    2\n  ]\n}')
    sent: list[str] = []
    page.on("request", lambda r: sent.append(r.url) if r.method == "PUT" else None)
    doc.fill('{"x": [1, 2')
    expect(made.locator("#error-test-doc")).to_contain_text("This is not valid JSON")
    expect(doc).to_have_attribute("aria-invalid", "true")
    made.locator("#save-test-doc").click()
    expect(doc).to_be_focused()
    doc.fill('{"x": [1, 2]}')
    expect(made.locator("#error-test-doc")).to_be_hidden()
    expect(doc).not_to_have_attribute("aria-invalid", "true")
    assert sent == []


@pytest.mark.parametrize("role", ["observer", "member"])
def test_readers_see_every_value_and_no_editor(lab: Lab, context: BrowserContext, role: str) -> None:
    page, _ = open_settings(context, lab, role)
    entries = lab.admin.get("/api/v1/settings").json()
    expect(page.locator("tr[data-setting]")).to_have_count(len(entries))
    expect(page.locator("#settings-groups").locator("input, textarea, select, button")).to_have_count(0)
    expect(page.locator("#read-only-note")).to_be_visible()
    expect(row(page, "ui.lab_name").locator(".value")).to_have_text(stored(lab, "ui.lab_name")["value"])
    expect(page.locator("#main a[href*='admin']")).to_have_count(0)


def test_a_manager_gets_no_editor_for_admin_only_or_config_settings(
    lab: Lab, context: BrowserContext
) -> None:
    page, _ = open_settings(context, lab, "manager")
    expect(row(page, "ui.banner").locator("textarea")).to_have_count(1)
    expect(row(page, "notifications.webhook_secret").locator("input, button")).to_have_count(0)
    expect(row(page, "server.host").locator("input, button")).to_have_count(0)
    expect(page.locator("#read-only-note")).to_be_hidden()


def tab_to(page: Page, element_id: str, most: int = 40) -> None:
    """Tab (and nothing else) until `element_id` has the focus, which must then show."""
    for _ in range(most):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == element_id:
            break
    assert_visible_focus_ring(page, element_id)


def test_keyboard_only_from_the_login_page_to_a_saved_setting(lab: Lab, page: Page) -> None:
    manager = lab.create_user("manager")
    page.goto(f"{lab.url}login")
    expect(page.locator("#username")).to_be_focused()
    page.keyboard.type(manager["username"])
    page.keyboard.press("Tab")
    page.keyboard.type(USER_PASSWORD)
    page.keyboard.press("Tab")
    assert_visible_focus_ring(page, "login")
    page.keyboard.press("Enter")
    page.wait_for_url(lab.url)

    # From the dashboard to the settings through the layout's section links.
    tab_to(page, "nav-settings")
    page.keyboard.press("Enter")
    page.wait_for_url(f"{lab.url}settings")
    expect(page.locator("#input-ui-banner")).to_be_visible()
    tab_to(page, "input-ui-banner")
    # The caret lands at the end of what the banner says now: the typed words are added to it.
    typed = unique(" Typed")
    banner = stored(lab, "ui.banner")["value"] + typed
    page.keyboard.type(typed)
    page.keyboard.press("Tab")
    assert_visible_focus_ring(page, "save-ui-banner")
    page.keyboard.press("Space")
    expect(row(page, "ui.banner").locator(".saved")).to_have_text("Saved.")
    assert stored(lab, "ui.banner")["value"] == banner

    # A number, sent with Enter from its field.
    tab_to(page, "input-auth-session_ttl_minutes")
    # Reaching a field with Tab selects what it holds, so typing replaces it.
    page.keyboard.type("1441")
    page.keyboard.press("Enter")
    expect(row(page, "auth.session_ttl_minutes").locator(".saved")).to_have_text("Saved.")
    assert stored(lab, "auth.session_ttl_minutes")["value"] == 1441
