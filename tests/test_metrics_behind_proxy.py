"""`/metrics` with the deploy guide's `trusted_proxies: [127.0.0.1]` (docs/deploy.md, "Metrics for
Prometheus"): a Prometheus on the same host scrapes the backend directly with nothing to configure,
while a request relayed by nginx never counts as local, whatever client address it names.

The relayed requests go through a real nginx running the shipped site (tests/nginx.py) with only
its `location = /metrics { return 404; }` rule taken out, as if a sysadmin had dropped it."""

from __future__ import annotations

import secrets
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest

from tests.client import Client
from tests.conftest import start_lab
from tests.nginx import NginxServer
from tests.servers import Lab, make_certificate, write_config

METRIC = b"synthorg_http_requests_total"
GUIDE_PROXIES = {"trusted_proxies": ["127.0.0.1"]}
NGINX_METRICS_RULE = "    location = /metrics {\n        return 404;\n    }\n"


class Site(NamedTuple):
    lab: Lab
    nginx: NginxServer
    tls: ssl.SSLContext
    token: str

    def through_nginx(self, **kwargs: object) -> Client:
        return Client(self.nginx.https_url, context=self.tls, source_address="127.0.0.1", **kwargs)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    folder = tmp_path_factory.mktemp("guide")
    token = secrets.token_hex(32)
    token_file = folder / "metrics-token"
    token_file.write_text(token + "\n")
    token_file.chmod(0o600)
    lab = start_lab(
        folder / "lab",
        f"sqlite+aiosqlite:///{folder / 'lab.db'}",
        server=GUIDE_PROXIES,
        metrics={"token_file": str(token_file)},
    )
    certificate, key = make_certificate(folder / "tls", "localhost")
    nginx = NginxServer(folder / "nginx", f"127.0.0.1:{lab.server.port}", certificate, key)
    try:
        site_text = nginx.site_path.read_text()
        assert NGINX_METRICS_RULE in site_text, "the shipped site no longer has its /metrics rule"
        nginx.site_path.write_text(site_text.replace(NGINX_METRICS_RULE, ""))
        nginx.start()
        yield Site(lab, nginx, ssl.create_default_context(cafile=str(certificate)), token)
    finally:
        nginx.stop()
        assert lab.server.terminate() == 0


def test_a_prometheus_on_the_same_host_scrapes_the_backend_with_no_credentials(site: Site) -> None:
    reply = Client(site.lab.url).get("/metrics")
    assert reply.status == 200 and METRIC in reply.body


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Forwarded-For": "1.2.3.4"},
        {"X-Forwarded-For": "127.0.0.1"},
        {"X-Forwarded-For": ""},
        {"X-Real-IP": "127.0.0.1"},
        {"X-Forwarded-For": "127.0.0.1", "X-Real-IP": "127.0.0.1", "X-Forwarded-Proto": "https"},
        {"Forwarded": "for=127.0.0.1"},
        {"X-Forwarded-Proto": "https"},
    ],
    ids=["xff-remote", "xff-loopback", "xff-empty", "real-ip", "as-nginx-sends", "forwarded", "proto"],
)
def test_a_request_relayed_by_the_trusted_proxy_is_never_a_local_scraper(
    site: Site, headers: dict[str, str]
) -> None:
    assert site.lab.client(headers=headers).get("/metrics").status == 401
    # The scrape token still works for a relayed request.
    assert site.lab.client(headers=headers, token=site.token).get("/metrics").status == 200


def test_a_scrape_through_the_real_nginx_from_loopback_needs_the_token(site: Site) -> None:
    # nginx on this host names the client 127.0.0.1, an allowed network: it still does not count.
    relayed = site.through_nginx().get("/metrics")
    assert relayed.status == 401 and METRIC not in relayed.body
    assert site.through_nginx(token="not-the-token-at-all").get("/metrics").status == 401
    scraped = site.through_nginx(token=site.token).get("/metrics")
    assert scraped.status == 200 and METRIC in scraped.body
    assert site.lab.admin.get("/metrics").status == 200


def config_check(tmp_path: Path, **sections: dict) -> subprocess.CompletedProcess:
    path = write_config(tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'lab.db'}", **sections)
    return subprocess.run(
        [sys.executable, "-m", "synthorg_tornado", "config", "check", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def scrape_warnings(checked: subprocess.CompletedProcess) -> list[str]:
    assert checked.returncode == 0, checked.stderr
    return [line for line in checked.stderr.splitlines() if "metrics.allow_networks" in line]


@pytest.mark.parametrize(
    ("sections", "address"),
    [
        ({"metrics": {"allow_networks": []}}, "127.0.0.1"),
        ({"metrics": {"allow_networks": ["10.0.0.0/8"]}, "server": GUIDE_PROXIES}, "127.0.0.1"),
        ({"metrics": {"allow_networks": ["127.0.0.0/8"]}, "server": {"host": "::1"}}, "::1"),
    ],
    ids=["none", "elsewhere", "ipv6-bind"],
)
def test_config_check_warns_when_a_local_prometheus_would_get_401(
    tmp_path: Path, sections: dict, address: str
) -> None:
    [warning] = scrape_warnings(config_check(tmp_path, **sections))
    assert warning.startswith("warning: metrics.allow_networks (")
    assert f"does not contain {address}, the address a Prometheus on this host scrapes from" in warning
    assert "metrics.token_file" in warning


def test_config_check_is_quiet_about_the_guides_own_setup(tmp_path: Path) -> None:
    assert scrape_warnings(config_check(tmp_path, server=GUIDE_PROXIES)) == []
    token_file = tmp_path / "metrics-token"
    token_file.write_text(secrets.token_hex(32))
    token_file.chmod(0o600)
    locked = {"allow_networks": [], "token_file": str(token_file)}
    assert scrape_warnings(config_check(tmp_path, server=GUIDE_PROXIES, metrics=locked)) == []
