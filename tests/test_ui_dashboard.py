"""The dashboard in a real headless Chromium against the real server (issue 12): who is online,
live; the message of the day, live; the feed of events and its resume after a reconnect; the
connection indicator.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, Page, Route, expect

from tests.browser import RECORD_WEBSOCKETS, HeadlessChromium, sign_in
from tests.client import Client
from tests.servers import (
    ADMIN_PASSWORD,
    USER_PASSWORD,
    Lab,
    PostgresCluster,
    ServerProcess,
    setup_token,
    write_config,
)

TICK = "test.tick"


@pytest.fixture(scope="module")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """SQLite for the module's lab, like the other page tests. Resuming reads a different event
    log on each backend (memory, or the bus_events table), so the resume tests also run on a
    PostgreSQL server of their own."""
    return f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('db-sqlite') / 'synthorg.db'}"


@pytest.fixture(scope="module")
def pg_lab(pg_cluster: PostgresCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    folder = tmp_path_factory.mktemp("pg-lab")
    lab = Lab(ServerProcess(write_config(folder, pg_cluster.create_database("ui_dashboard"))).start())
    yield lab
    assert lab.server.terminate() == 0


@pytest.fixture(params=["sqlite", "postgresql"])
def either_lab(request: pytest.FixtureRequest) -> Lab:
    return request.getfixturevalue("lab" if request.param == "sqlite" else "pg_lab")


def person(page: Page, username: str):  # type: ignore[no-untyped-def]
    return page.locator(f'#presence li[data-username="{username}"]')


def connection_state(page: Page):  # type: ignore[no-untyped-def]
    return page.locator("#connection")


def log_in(page: Page, username: str, password: str = USER_PASSWORD) -> None:
    page.fill("#username", username)
    page.fill("#password", password)
    page.click("#login")


def mark_no_reload(page: Page) -> None:
    """A value that only this document holds: still there later means the page never reloaded."""
    page.evaluate("window.stillTheSamePage = true")


def assert_not_reloaded(page: Page) -> None:
    assert page.evaluate("window.stillTheSamePage === true")


def publish(lab: Lab, count: int, start: int, channel: str = "lab") -> None:
    for n in range(start, start + count):
        reply = lab.admin.post(
            "/api/v1/events", {"channel": channel, "event_type": TICK, "payload": {"n": n}}
        )
        assert reply.status == 202, reply


def ticks_shown(page: Page) -> list[tuple[int, int]]:
    """(event id, n) of every tick in the feed, top (newest) first."""
    rows = page.locator(f'#feed li[data-event-type="{TICK}"]').evaluate_all(
        "items => items.map(i => [Number(i.dataset.eventId), i.querySelector('.what').textContent])"
    )
    return [(event_id, json.loads(text.split(": ", 1)[1])["n"]) for event_id, text in rows]


def test_setup_and_login_then_the_dashboard_shows_who_is_online_live(
    tmp_path: Path, sqlite_url: str, chromium: HeadlessChromium
) -> None:
    server = ServerProcess(write_config(tmp_path, sqlite_url)).start()
    first, second = chromium.new_context(), chromium.new_context()
    try:
        page = first.new_page()
        page.goto(f"{server.url}setup?token={setup_token(server)}")
        page.fill("#username", "ada")
        page.fill("#password", ADMIN_PASSWORD)
        page.fill("#password-repeat", ADMIN_PASSWORD)
        page.click("#create")
        page.wait_for_url(server.url)
        page.click("#logout")
        page.wait_for_url(f"{server.url}login?reason=signed_out")
        log_in(page, "ada", ADMIN_PASSWORD)
        page.wait_for_url(server.url)

        me = person(page, "ada")
        expect(me).to_contain_text("ada (you)")
        expect(me.locator(".avatar")).to_have_text("AD")
        expect(me).to_contain_text("1 tab")
        expect(connection_state(page)).to_have_attribute("data-state", "connected")
        mark_no_reload(page)

        admin = Client(server.url)
        token = admin.post("/api/v1/auth/login", {"username": "ada", "password": ADMIN_PASSWORD}).json()[
            "token"
        ]
        new_user = {
            "username": "grace",
            "password": USER_PASSWORD,
            "role": "member",
            "display_name": "Grace Hopper",
        }
        assert Client(server.url, token=token).post("/api/v1/users", new_user).status == 201
        # A second tab of the first user: the count is read again with the next presence event.
        first.new_page().goto(server.url)

        other = second.new_page()
        other.goto(server.url)
        log_in(other, "grace")
        other.wait_for_url(server.url)
        grace = person(page, "grace")
        expect(grace).to_contain_text("Grace Hopper")
        expect(grace).to_contain_text("grace · 1 tab")
        expect(grace.locator(".avatar")).to_have_text("GH")
        expect(me).to_contain_text("2 tabs")
        expect(person(other, "ada")).to_be_visible()
        expect(page.locator("#feed")).to_contain_text("Grace Hopper came online")

        second.close()
        expect(grace).to_have_count(0)
        expect(page.locator("#feed")).to_contain_text("Grace Hopper went offline")
        expect(page.locator("#online-count")).to_have_text("(1)")
        assert_not_reloaded(page)
    finally:
        first.close()
        second.close()
        assert server.terminate() == 0


def test_an_admin_changing_the_banner_updates_another_users_open_dashboard(
    lab: Lab, chromium: HeadlessChromium
) -> None:
    member = lab.create_user()
    admin_context, member_context = chromium.new_context(), chromium.new_context()
    try:
        sign_in(admin_context, lab, "admin", ADMIN_PASSWORD)
        sign_in(member_context, lab, member["username"])
        watcher = member_context.new_page()
        watcher.goto(lab.url)
        expect(connection_state(watcher)).to_have_attribute("data-state", "connected")
        expect(watcher.locator("#banner")).to_be_hidden()
        mark_no_reload(watcher)

        editor = admin_context.new_page()
        editor.goto(lab.url)
        # The admin's change goes through the pages' own API module, as a settings editor sends it.
        editor.evaluate(
            """async (value) => {
                const { api } = await import("./static/api.js");
                const headers = { "If-Match": "*" };
                await api("PUT", "api/v1/settings/ui/banner", { body: { value }, headers });
            }""",
            "Cryostat warm-up at 14:00",
        )
        expect(watcher.locator("#banner")).to_have_text("Cryostat warm-up at 14:00")
        expect(watcher.locator("#banner")).to_be_visible()
        expect(watcher.locator("#feed")).to_contain_text("admin set ui.banner to Cryostat warm-up at 14:00")
        assert_not_reloaded(watcher)
    finally:
        lab.admin.delete("/api/v1/settings/ui/banner", headers={"If-Match": "*"})
        admin_context.close()
        member_context.close()


def refuse_tickets(context: BrowserContext) -> list[str]:
    """From now on the page cannot get a WebSocket ticket (503), so it stays disconnected until
    the route is removed; returns the list of refusals."""
    refused: list[str] = []

    def refuse(route: Route) -> None:
        refused.append(route.request.url)
        problem = {"status": 503, "error_code": 8001, "detail": "test outage", "retry_after": 1}
        route.fulfill(status=503, content_type="application/problem+json", body=json.dumps(problem))

    context.route("**/api/v1/auth/ws-ticket", refuse)
    return refused


def test_the_feed_has_no_gap_across_a_forced_reconnect(either_lab: Lab, context: BrowserContext) -> None:
    lab = either_lab
    user = lab.create_user()
    sign_in(context, lab, user["username"])
    context.add_init_script(RECORD_WEBSOCKETS)
    page = context.new_page()
    page.goto(lab.url)
    expect(connection_state(page)).to_have_attribute("data-state", "connected")
    publish(lab, 3, start=0)
    expect(page.locator(f'#feed li[data-event-type="{TICK}"]')).to_have_count(3)

    refused = refuse_tickets(context)
    page.evaluate("window.testSockets.at(-1).close()")
    expect(connection_state(page)).to_have_attribute("data-state", "reconnecting")
    expect(page.locator("#connection")).to_contain_text(re.compile(r"Reconnecting( in \d+ s|…)"))
    publish(lab, 4, start=3)  # while the page has no socket
    context.unroute("**/api/v1/auth/ws-ticket")
    expect(connection_state(page)).to_have_attribute("data-state", "connected", timeout=15_000)
    publish(lab, 2, start=7)

    expect(page.locator(f'#feed li[data-event-type="{TICK}"]')).to_have_count(9)
    shown = ticks_shown(page)
    assert [n for _, n in shown] == list(range(8, -1, -1)), shown  # each once, newest first
    ids = [event_id for event_id, _ in shown]
    assert ids == sorted(ids, reverse=True) and len(set(ids)) == 9, ids
    assert page.evaluate("window.testSockets.length") >= 2
    assert page.locator(".feed-notice").count() == 0, refused


def test_the_indicator_says_offline_and_the_page_resumes_when_the_network_is_back(
    lab: Lab, context: BrowserContext
) -> None:
    user = lab.create_user()
    sign_in(context, lab, user["username"])
    page = context.new_page()
    page.goto(lab.url)
    expect(connection_state(page)).to_have_attribute("data-state", "connected")
    expect(page.locator("#connection")).to_have_text("Connected")

    context.set_offline(True)
    expect(connection_state(page)).to_have_attribute("data-state", "offline")
    expect(page.locator("#connection")).to_contain_text("Offline")
    publish(lab, 2, start=100)
    context.set_offline(False)
    expect(connection_state(page)).to_have_attribute("data-state", "connected")
    expect(page.locator(f'#feed li[data-event-type="{TICK}"]')).to_have_count(2)


def test_the_feed_shows_only_the_channels_the_user_may_see(lab: Lab, chromium: HeadlessChromium) -> None:
    member, manager = lab.create_user("member"), lab.create_user("manager")
    pages = {}
    contexts = [chromium.new_context(), chromium.new_context()]
    try:
        for context, user in zip(contexts, (member, manager), strict=True):
            sign_in(context, lab, user["username"])
            pages[user["role"]] = page = context.new_page()
            page.goto(lab.url)
            expect(connection_state(page)).to_have_attribute("data-state", "connected")
        reply = lab.admin.put(
            "/api/v1/settings/budget/monthly_limit", {"value": 1234.5}, headers={"If-Match": "*"}
        )
        assert reply.status == 200, reply
        publish(lab, 1, start=0, channel=f"user:{member['id']}")
        for page in pages.values():
            expect(page.locator('#feed li[data-event-type="setting.updated"]')).to_contain_text(
                "admin set budget.monthly_limit to 1234.5"
            )
        expect(pages["manager"].locator('#feed li[data-channel="budget"]')).to_contain_text("1234.5")
        expect(pages["member"].locator(f'#feed li[data-channel="user:{member["id"]}"]')).to_contain_text(
            "you"
        )
        # The member's feed got the later event on its own channel, so it would have had the budget one.
        assert pages["member"].locator('#feed li[data-channel="budget"]').count() == 0
        assert pages["manager"].locator(f'#feed li[data-event-type="{TICK}"]').count() == 0
    finally:
        lab.admin.delete("/api/v1/settings/budget/monthly_limit", headers={"If-Match": "*"})
        for context in contexts:
            context.close()


def test_a_resume_that_lost_events_says_so_and_reads_presence_again(
    tmp_path: Path, pg_cluster: PostgresCluster, chromium: HeadlessChromium
) -> None:
    """On PostgreSQL a replay holds at most `outbound_queue_limit` messages: a longer gap is
    answered `recovered: false`, as a pruned one would be."""
    url = pg_cluster.create_database("ui_dashboard_gap")
    lab = Lab(ServerProcess(write_config(tmp_path, url, websocket={"outbound_queue_limit": 5})).start())
    watching, arriving = chromium.new_context(), chromium.new_context()
    try:
        member, newcomer = lab.create_user(), lab.create_user()
        sign_in(watching, lab, member["username"])
        watching.add_init_script(RECORD_WEBSOCKETS)
        page = watching.new_page()
        page.goto(lab.url)
        expect(connection_state(page)).to_have_attribute("data-state", "connected")
        expect(person(page, member["username"])).to_be_visible()

        refuse_tickets(watching)
        page.evaluate("window.testSockets.at(-1).close()")
        expect(connection_state(page)).to_have_attribute("data-state", "reconnecting")
        # More than a replay holds, on a channel this page does not see; and someone arrives,
        # which presence never replays.
        publish(lab, 8, start=0, channel=f"user:{lab.admin.get('/api/v1/me').json()['id']}")
        sign_in(arriving, lab, newcomer["username"])
        arriving.new_page().goto(lab.url)
        watching.unroute("**/api/v1/auth/ws-ticket")

        expect(page.locator(".feed-notice")).to_contain_text("Some events from while the connection was down")
        expect(person(page, newcomer["username"])).to_be_visible()
        expect(connection_state(page)).to_have_attribute("data-state", "connected")
    finally:
        watching.close()
        arriving.close()
        assert lab.server.terminate() == 0
