"""Shared fixtures: one PostgreSQL cluster per run, a fresh database per module and backend."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from tornado import web

from synthorg_tornado.app import make_app
from synthorg_tornado.config import Config, load_config
from synthorg_tornado.db import migrate
from synthorg_tornado.server import make_http_server
from synthorg_tornado.services import build_services
from tests.servers import Lab, PostgresCluster, ServerProcess, throwaway_cluster, write_config

if TYPE_CHECKING:
    from playwright.sync_api import BrowserContext, Page

    from tests.browser import HeadlessChromium

BACKENDS = ("sqlite", "postgresql")


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PostgresCluster]:
    with throwaway_cluster() as cluster:
        yield cluster


def _database_url(backend: str, request: pytest.FixtureRequest, directory: Path) -> str:
    if backend == "sqlite":
        return f"sqlite+aiosqlite:///{directory / 'synthorg.db'}"
    cluster: PostgresCluster = request.getfixturevalue("pg_cluster")
    module = re.sub(r"\W", "_", request.module.__name__.rsplit(".", 1)[-1])
    return cluster.create_database(module)


@pytest.fixture(scope="module", params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A fresh, empty database for this module, on each backend in turn."""
    return _database_url(request.param, request, tmp_path_factory.mktemp(f"db-{request.param}"))


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'synthorg.db'}"


@pytest.fixture
def app_config(tmp_path: Path, sqlite_url: str) -> Config:
    """Configuration of the in-process application; modules override it to change settings."""
    return load_config(write_config(tmp_path, sqlite_url), environ={})


@pytest.fixture
def app(app_config: Config, io_loop) -> Iterator[web.Application]:
    """The real application, built by `make_app` with real services, served in-process."""
    services = build_services(app_config, secret=b"s" * 48)
    if app_config.database.auto_upgrade:
        io_loop.run_sync(lambda: migrate.upgrade(services.database))
    yield make_app(app_config, services)
    io_loop.run_sync(services.close)


@pytest.fixture
def http_server(request: pytest.FixtureRequest, io_loop, _unused_port, app: web.Application):
    """pytest-tornado's server fixture, but with our HTTPServer (trusted-proxy handling)."""
    server = make_http_server(app.settings["config"], app, None)
    server.add_socket(_unused_port[0])
    yield server
    server.stop()
    io_loop.run_sync(server.close_all_connections, timeout=10)


def start_lab(directory: Path, database_url: str, env: dict[str, str] | None = None, **sections: dict) -> Lab:
    server = ServerProcess(write_config(directory, database_url, **sections), env=env).start()
    try:
        return Lab(server)
    except BaseException:
        server.kill()
        raise


def sqlite_lab(tmp_path_factory: pytest.TempPathFactory, name: str, **sections: dict) -> Iterator[Lab]:
    """The body of a module fixture: one SQLite lab with `sections` in its config, stopped
    cleanly at the end (`yield from sqlite_lab(...)`)."""
    folder = tmp_path_factory.mktemp(name)
    lab = start_lab(folder, f"sqlite+aiosqlite:///{folder / 'lab.db'}", **sections)
    yield lab
    assert lab.server.terminate() == 0


@pytest.fixture(scope="module")
def lab(
    request: pytest.FixtureRequest, database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Lab]:
    """A real server per module and backend, with its admin created through setup.

    A module sets `LAB_CONFIG = {"auth": {...}}` to change its server's configuration, and
    `LAB_ENV = {...}` to add environment variables."""
    sections = getattr(request.module, "LAB_CONFIG", {})
    env = getattr(request.module, "LAB_ENV", None)
    lab = start_lab(tmp_path_factory.mktemp("lab"), database_url, env=env, **sections)
    yield lab
    assert lab.server.terminate() == 0


@pytest.fixture(scope="module")
def chromium() -> Iterator[HeadlessChromium]:
    """One headless Chromium per module (tests/browser.py); Playwright loads only where used."""
    from tests.browser import HeadlessChromium

    browser = HeadlessChromium().start()
    yield browser
    browser.stop()


@pytest.fixture(autouse=True)
def pages_report_no_problem(request: pytest.FixtureRequest) -> Iterator[None]:
    """After every test that drove the browser: no page it (or its module's fixtures) opened
    reported a Content-Security-Policy violation, a console error or an uncaught exception."""
    yield
    if "chromium" in request.fixturenames:
        chromium: HeadlessChromium = request.getfixturevalue("chromium")
        assert chromium.take_problems() == []


@pytest.fixture
def context(chromium: HeadlessChromium) -> Iterator[BrowserContext]:
    """A fresh profile per test: no cookies, storage or cache from another test."""
    context = chromium.new_context()
    yield context
    context.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    return context.new_page()
