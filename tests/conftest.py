"""Shared fixtures: one PostgreSQL cluster per run, a fresh database per module and backend."""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import PostgresCluster

BACKENDS = ("sqlite", "postgresql")


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PostgresCluster]:
    # Outside pytest's private temp tree: the postgres user must be able to reach it.
    root = Path(tempfile.mkdtemp(prefix="synthorg-pg-"))
    cluster = PostgresCluster(root)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


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
