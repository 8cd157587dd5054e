"""`config check` warns about settings that work but defeat themselves (docs/deploy.md).

Each warning matches a failure in the deployment guide's troubleshooting section, so a sysadmin
learns of it before the users do. Warnings never stop the server: `config check` still exits 0.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from synthorg_tornado.cli.main import main
from synthorg_tornado.config import load_config
from tests.servers import REPO, make_certificate

DEPLOY_GUIDE = REPO / "docs" / "deploy.md"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith("SYNTHORG_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_certificate(tmp_path_factory.mktemp("tls"), "lab")


def warnings_for(directory: Path, **server: Any) -> tuple[str, ...]:
    path = directory / "config.yaml"
    path.write_text(yaml.safe_dump({"server": server, "database": {"url": "sqlite+aiosqlite:///lab.db"}}))
    return load_config(path, environ={}).warnings


def native_tls(certificate: tuple[Path, Path]) -> dict[str, str]:
    return {"ssl_certfile": str(certificate[0]), "ssl_keyfile": str(certificate[1])}


# --- Plain-HTTP origins on an HTTPS lab -------------------------------------------------------


def test_http_origin_with_native_tls_warns(tmp_path: Path, certificate: tuple[Path, Path]) -> None:
    warnings = warnings_for(tmp_path, allowed_origins=["http://lab.example.org"], **native_tls(certificate))
    assert len(warnings) == 1
    assert "http://lab.example.org is a plain-HTTP origin" in warnings[0]
    assert "https:// origins only" in warnings[0]


def test_http_origin_listed_beside_https_origins_warns(tmp_path: Path) -> None:
    warnings = warnings_for(
        tmp_path,
        trusted_proxies=["127.0.0.1"],
        allowed_origins=["https://lab.example.org", "http://lab.example.org", "http://lab:8080"],
    )
    assert warnings == (
        "server.allowed_origins: http://lab.example.org, http://lab:8080 are plain-HTTP origins although "
        "the lab is served over HTTPS; a page from such an origin can be altered on the network and would "
        "then open WebSockets with the user's cookie; list https:// origins only",
    )


def test_http_origin_on_a_plain_http_lab_does_not_warn(tmp_path: Path) -> None:
    assert warnings_for(tmp_path, allowed_origins=["http://localhost:3000"]) == ()


def test_https_origins_with_native_tls_do_not_warn(tmp_path: Path, certificate: tuple[Path, Path]) -> None:
    assert (
        warnings_for(tmp_path, allowed_origins=["https://lab.example.org"], **native_tls(certificate)) == ()
    )


# --- HTTPS origins but no way to know a request was HTTPS -------------------------------------


def test_https_origins_without_tls_or_trusted_proxies_warn_about_cookies_and_ips(tmp_path: Path) -> None:
    (warning,) = warnings_for(tmp_path, allowed_origins=["https://lab.example.org"])
    assert "server.trusted_proxies" in warning
    assert "lack Secure" in warning and "IP address is the proxy's" in warning


def test_https_origins_behind_a_trusted_proxy_do_not_warn(tmp_path: Path) -> None:
    warnings = warnings_for(
        tmp_path, trusted_proxies=["127.0.0.1"], allowed_origins=["https://lab.example.org"]
    )
    assert warnings == ()


# --- allowed_hosts where it is never checked --------------------------------------------------


def test_allowed_hosts_on_a_network_bind_warn_that_they_have_no_effect(
    tmp_path: Path, certificate: tuple[Path, Path]
) -> None:
    (warning,) = warnings_for(
        tmp_path, host="0.0.0.0", allowed_hosts=["lab.example.org"], **native_tls(certificate)
    )
    assert warning.startswith("server.allowed_hosts has no effect on server.host 0.0.0.0")


def test_allowed_hosts_on_a_loopback_bind_do_not_warn(tmp_path: Path) -> None:
    assert warnings_for(tmp_path, allowed_hosts=["lab.example.org"]) == ()


# --- Trusted proxies that can never be the peer -----------------------------------------------


@pytest.mark.parametrize(
    ("host", "proxies", "unreachable"),
    [
        pytest.param("127.0.0.1", ["10.0.0.5"], "10.0.0.5", id="remote-proxy-on-loopback"),
        pytest.param("127.0.0.1", ["::1"], "::1", id="ipv6-proxy-on-ipv4-bind"),
        pytest.param("::1", ["127.0.0.1"], "127.0.0.1", id="ipv4-proxy-on-ipv6-bind"),
        pytest.param("127.0.0.1", ["127.0.0.1", "192.168.1.0/24"], "192.168.1.0/24", id="one-of-two"),
    ],
)
def test_trusted_proxy_that_cannot_reach_a_loopback_bind_warns(
    tmp_path: Path, host: str, proxies: list[str], unreachable: str
) -> None:
    (warning,) = warnings_for(tmp_path, host=host, trusted_proxies=proxies)
    assert warning.startswith(
        f"server.trusted_proxies: {unreachable} can never connect to server.host {host}"
    )


@pytest.mark.parametrize(
    ("host", "proxies"),
    [
        pytest.param("127.0.0.1", ["127.0.0.1"], id="same-address"),
        pytest.param("127.0.0.1", ["127.0.0.2"], id="other-loopback-address"),
        pytest.param("127.0.0.1", ["127.0.0.0/8"], id="loopback-network"),
        pytest.param("::1", ["::1"], id="ipv6"),
        pytest.param("localhost", ["::1", "127.0.0.1"], id="localhost-either-family"),
    ],
)
def test_loopback_proxies_on_a_loopback_bind_do_not_warn(
    tmp_path: Path, host: str, proxies: list[str]
) -> None:
    assert warnings_for(tmp_path, host=host, trusted_proxies=proxies) == ()


# --- As the sysadmin sees it -------------------------------------------------------------------


def test_config_check_prints_every_warning_and_still_exits_0(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "server": {
                    "host": "127.0.0.1",
                    "trusted_proxies": ["10.0.0.5"],
                    "allowed_origins": ["https://lab.example.org", "http://lab.example.org"],
                }
            }
        )
    )
    assert main(["config", "check", "--config", str(path)]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines()[0] == f"config OK: {path}"
    lines = err.splitlines()
    assert len(lines) == 2 and all(line.startswith("warning: ") for line in lines)
    assert "plain-HTTP origin" in lines[0] and "10.0.0.5 can never connect" in lines[1]


def test_the_deploy_guide_config_checks_clean(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The config.yaml of docs/deploy.md passes `config check` without errors or warnings."""
    blocks = re.findall(r"```yaml\n(.*?)```", DEPLOY_GUIDE.read_text(), flags=re.DOTALL)
    guide = next(block for block in blocks if "trusted_proxies" in block)
    data = yaml.safe_load(guide)
    data["auth"]["secret_file"] = str(tmp_path / "synthorg_secret")  # not /var/lib on a test machine
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    assert main(["config", "check", "--config", str(path)]) == 0
    out, err = capsys.readouterr()
    assert err == "" and out.startswith("config OK")
