"""Who may scrape `/metrics`: the allowed networks, the scrape token, admins and API tokens."""

from __future__ import annotations

import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import start_lab
from tests.servers import Lab, write_config

METRIC = b"synthorg_http_requests_total"


@pytest.fixture(scope="module")
def scrape_token(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    path = tmp_path_factory.mktemp("metrics") / "scrape-token"
    token = secrets.token_hex(32)
    path.write_text(token + "\n")
    path.chmod(0o600)
    return path, token


@pytest.fixture(scope="module")
def default_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    folder = tmp_path_factory.mktemp("default")
    lab = start_lab(folder, f"sqlite+aiosqlite:///{folder / 'lab.db'}")
    yield lab
    assert lab.server.terminate() == 0


@pytest.fixture(scope="module")
def locked_lab(tmp_path_factory: pytest.TempPathFactory, scrape_token: tuple[Path, str]) -> Iterator[Lab]:
    folder = tmp_path_factory.mktemp("locked")
    lab = start_lab(
        folder,
        f"sqlite+aiosqlite:///{folder / 'lab.db'}",
        metrics={"allow_networks": [], "token_file": str(scrape_token[0])},
    )
    yield lab
    assert lab.server.terminate() == 0


def test_loopback_scraper_needs_no_credentials_by_default(default_lab: Lab) -> None:
    reply = default_lab.client().get("/metrics")
    assert reply.status == 200 and METRIC in reply.body


def test_a_request_relayed_by_a_proxy_is_not_a_local_scraper(default_lab: Lab) -> None:
    for header in ("X-Forwarded-For", "X-Real-IP", "Forwarded"):
        relayed = default_lab.client(headers={header: "for=198.51.100.7"}).get("/metrics")
        assert relayed.status == 401, header


def test_outside_the_networks_the_scrape_token_is_needed(
    locked_lab: Lab, scrape_token: tuple[Path, str]
) -> None:
    assert locked_lab.client().get("/metrics").status == 401
    assert locked_lab.client(token="not-the-token-at-all").get("/metrics").status == 401
    reply = locked_lab.client(token=scrape_token[1]).get("/metrics")
    assert reply.status == 200 and METRIC in reply.body
    # Admins and API tokens keep their access; other members do not have it.
    assert locked_lab.admin.get("/metrics").status == 200
    member = locked_lab.create_user()
    client, _ = locked_lab.login(member["username"])
    assert client.get("/metrics").status == 403
    api_token = client.post("/api/v1/tokens", {"name": "prometheus"}).json()["token"]
    assert locked_lab.client(token=api_token, scheme="token").get("/metrics").status == 200


def test_counters_only_grow_between_scrapes(default_lab: Lab) -> None:
    def total() -> float:
        text = default_lab.client().get("/metrics").body.decode()
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("synthorg_http_requests_total{")
        )

    first = total()
    default_lab.client().get("/api/v1/health")
    assert total() > first


@pytest.mark.parametrize(
    ("content", "mode", "problem"),
    [
        ("x" * 40, 0o644, "is readable by group or others"),
        ("short", 0o600, "holds fewer than 16 characters"),
    ],
)
def test_config_check_refuses_an_unsafe_token_file(
    tmp_path: Path, content: str, mode: int, problem: str
) -> None:
    token_file = tmp_path / "scrape-token"
    token_file.write_text(content)
    token_file.chmod(mode)
    config = write_config(tmp_path, "sqlite+aiosqlite:///lab.db", metrics={"token_file": str(token_file)})
    checked = subprocess.run(
        [sys.executable, "-m", "synthorg_tornado", "config", "check", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert checked.returncode == 2
    assert problem in checked.stderr and "Traceback" not in checked.stderr
