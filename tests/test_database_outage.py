"""When the database goes away: cached sessions keep working, writes get 503, recovery is automatic."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import Lab, PostgresCluster, ServerProcess, throwaway_cluster, wait_for, write_config


@pytest.fixture(scope="module")
def own_cluster() -> Iterator[PostgresCluster]:
    """A cluster of its own: this module stops and restarts it."""
    with throwaway_cluster("synthorg-pg-outage-") as cluster:
        yield cluster


def test_outage_keeps_cached_sessions_refuses_writes_with_503_and_recovers(
    own_cluster: PostgresCluster, tmp_path: Path
) -> None:
    server = ServerProcess(write_config(tmp_path, own_cluster.create_database("outage"))).start()
    try:
        lab = Lab(server)
        user = lab.create_user()
        client, _ = lab.login(user["username"])
        assert client.get("/api/v1/me").status == 200

        own_cluster.stop(mode="fast")
        assert client.get("/api/v1/me").status == 200  # served from the session cache
        write = client.patch("/api/v1/me", {"display_name": "During outage"})
        assert write.status == 503 and write.code == 8001
        assert write.json()["retryable"] is True and int(write.headers["Retry-After"]) > 0
        assert "Traceback" not in write.body.decode()
        health = lab.client().get("/api/v1/health")
        assert health.status == 503 and health.json()["database"] == "down"
        login = lab.client().post("/api/v1/auth/login", {"username": user["username"], "password": "x" * 12})
        assert login.status == 503

        own_cluster.start_server()
        wait_for(
            lambda: lab.client().get("/api/v1/health").status == 200, 20.0, "the health check to recover"
        )
        assert client.patch("/api/v1/me", {"display_name": "After"}).status == 200
        assert client.get("/api/v1/me").json()["display_name"] == "After"
        assert server.log().count("Traceback") <= 3  # a background job logs its failure once, not every tick
    finally:
        assert server.terminate() == 0
