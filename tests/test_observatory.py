"""Mozilla's HTTP Observatory grades the shipped site A+ (issue 16).

Its own scanner (`httpobs-local-scan`, installed by `make test`: see the Makefile) is run against
the shipped nginx site in front of a lab configured as the deploy guide says (tests/test_nginx.py
`deploy`), over real TLS with the test certificate trusted, exactly as it scans a public site."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import make_certificate
from tests.test_nginx import Deployment, deploy

SCANNER = Path(sys.executable).with_name("httpobs-local-scan")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    certificate = make_certificate(tmp_path_factory.mktemp("observatory-tls"), "localhost")
    yield from deploy(tmp_path_factory.mktemp("observatory-site"), certificate)


@pytest.fixture(scope="module")
def scan(site: Deployment) -> dict:
    assert SCANNER.exists() or shutil.which("httpobs-local-scan"), "run `make test`: it installs httpobs"
    done = subprocess.run(
        [
            str(SCANNER),
            "localhost",
            "--http-port",
            str(site.nginx.http_port),
            "--https-port",
            str(site.nginx.https_port),
        ],
        env={**os.environ, "REQUESTS_CA_BUNDLE": str(site.certificate)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def report(scan: dict) -> str:
    tests = sorted(scan["tests"].items())
    return "\n".join(f"{name}: {test['score_modifier']:+d} {test['result']}" for name, test in tests)


def test_the_shipped_site_grades_a_plus_with_every_check_passed(scan: dict) -> None:
    assert "error" not in scan, scan
    assert scan["scan"]["grade"] == "A+" and scan["scan"]["score"] >= 100, report(scan)
    assert scan["scan"]["tests_failed"] == 0, report(scan)


def test_the_policy_blocks_inline_code_and_framing_so_no_xss_filter_is_asked_for(scan: dict) -> None:
    tests = scan["tests"]
    assert tests["content-security-policy"]["result"] == "csp-implemented-with-no-unsafe", report(scan)
    policy = tests["content-security-policy"]["policy"]
    unsafe = ("unsafeInline", "unsafeEval", "unsafeObjects", "insecureBaseUri")
    assert not any(policy[flag] for flag in unsafe), policy
    assert policy["antiClickjacking"] and not policy["insecureFormAction"]
    assert tests["x-xss-protection"]["result"] == "x-xss-protection-not-needed-due-to-csp"
    assert tests["x-frame-options"]["result"] == "x-frame-options-implemented-via-csp"


def test_tls_side_checks_hold_hsts_a_year_and_redirect_to_https(scan: dict) -> None:
    tests = scan["tests"]
    assert tests["strict-transport-security"]["result"] == "hsts-implemented-max-age-at-least-six-months"
    assert tests["strict-transport-security"]["data"] == "max-age=31536000; includeSubDomains"
    assert tests["redirection"]["result"] == "redirection-to-https"
    assert tests["cookies"]["result"] == "cookies-secure-with-httponly-sessions-and-samesite"
