"""`GET /api/v1/health` reports the database honestly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from synthorg_tornado.config import Config, load_config
from tests.servers import free_port, write_config


@pytest.mark.gen_test
async def test_health_is_200_with_database_ok(http_client, base_url) -> None:
    response = await http_client.fetch(base_url + "/api/v1/health")
    body = json.loads(response.body)
    assert body["status"] == "ok" and body["database"] == "ok"
    assert body["version"] == "0.1.0"
    assert body["uptime_seconds"] >= 0


@pytest.mark.gen_test
async def test_head_health_answers_like_get_without_a_body(http_client, base_url) -> None:
    for path in ("/api/v1/health", "/api/v1/health/live"):
        response = await http_client.fetch(base_url + path, method="HEAD")
        assert response.code == 200, path
        assert response.body == b""
        assert response.headers["Content-Type"].startswith("application/json")


@pytest.mark.gen_test
async def test_liveness_is_200_and_names_no_database(http_client, base_url) -> None:
    response = await http_client.fetch(base_url + "/api/v1/health/live")
    body = json.loads(response.body)
    assert body["status"] == "ok" and "database" not in body


class TestDatabaseDown:
    @pytest.fixture
    def app_config(self, tmp_path: Path) -> Config:
        # A real PostgreSQL URL on a port where nothing listens: connections are refused.
        url = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/nothing"
        return load_config(write_config(tmp_path, url, database={"auto_upgrade": False}), environ={})

    @pytest.mark.gen_test(timeout=20)
    async def test_health_is_503_with_database_down(self, http_client, base_url) -> None:
        response = await http_client.fetch(base_url + "/api/v1/health", raise_error=False)
        assert response.code == 503
        body = json.loads(response.body)
        assert body["database"] == "down" and body["status"] == "degraded"
        head = await http_client.fetch(base_url + "/api/v1/health", method="HEAD", raise_error=False)
        assert head.code == 503

    @pytest.mark.gen_test(timeout=20)
    async def test_liveness_stays_200_while_the_database_is_down(self, http_client, base_url) -> None:
        for method in ("GET", "HEAD"):
            response = await http_client.fetch(base_url + "/api/v1/health/live", method=method)
            assert response.code == 200
