"""The Content-Security-Policy (issue 16): every response carries the full policy, whoever wrote
it (a handler, the static files, the connection layer refusing a request), and Chromium enforces
it on the pages: a script, handler or style that an injected value would bring is refused, and the
refusal is seen by the check every browser test makes at its end (tests/conftest.py)."""

from __future__ import annotations

import socket

import pytest
from playwright.sync_api import Page

from tests.browser import HeadlessChromium
from tests.servers import Lab

# What the policy must say, directive by directive (written out here, not imported, so that the
# test reads the header as a browser does).
REQUIRED = {
    "default-src": {"'self'"},
    "script-src": {"'self'"},
    "style-src": {"'self'"},
    "img-src": {"'self'", "data:"},
    "connect-src": {"'self'"},
    "object-src": {"'none'"},
    "base-uri": {"'none'"},
    "form-action": {"'self'"},
    "frame-ancestors": {"'self'"},
}


@pytest.fixture(scope="module")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """SQLite only: the headers do not depend on the backend."""
    return f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('db-sqlite') / 'synthorg.db'}"


def directives(policy: str) -> dict[str, set[str]]:
    parsed: dict[str, set[str]] = {}
    for part in policy.split(";"):
        name, *sources = part.split()
        assert name not in parsed, f"{name} twice in {policy!r}"
        parsed[name] = set(sources)
    return parsed


def refused_before_any_handler(lab: Lab) -> str:
    """The policy on a 413 written by the connection layer (serving/http_limits.py)."""
    with socket.create_connection(("127.0.0.1", lab.server.port), timeout=10) as sock:
        sock.sendall(b"POST /login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 50000000\r\n\r\n")
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(65536)
            assert chunk, head
            head += chunk
    lines = head.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    assert lines[0].startswith("HTTP/1.1 413"), lines[0]
    return next(
        line.split(":", 1)[1].strip() for line in lines if line.lower().startswith("content-security-policy:")
    )


@pytest.mark.parametrize(
    "path",
    ["", "login", "setup", "nowhere", "static/style.css", "favicon.ico", "api/v1/health", "api/v1/nowhere"],
)
def test_every_response_carries_the_full_policy(lab: Lab, path: str) -> None:
    reply = lab.client().get("/" + path)
    assert reply.headers.get_all("Content-Security-Policy") == [reply.headers["Content-Security-Policy"]]
    assert directives(reply.headers["Content-Security-Policy"]) == REQUIRED
    assert "X-XSS-Protection" not in reply.headers  # the policy replaces it; see docs/security.md


def test_a_request_refused_before_any_handler_carries_the_full_policy_too(lab: Lab) -> None:
    assert directives(refused_before_any_handler(lab)) == REQUIRED


def test_what_an_injected_value_could_bring_is_refused_and_reported(
    lab: Lab, chromium: HeadlessChromium
) -> None:
    context = chromium.new_context()
    try:
        page: Page = context.new_page()
        page.goto(f"{lab.url}login")
        # As markup slipped into the page would: an inline script, a handler attribute, a style
        # attribute and a javascript: URL. (Playwright's own evaluate is not subject to the policy.)
        page.evaluate(
            """() => {
                const script = document.createElement("script");
                script.textContent = "window.inlineRan = true";
                document.body.append(script);
                const box = document.createElement("div");
                box.innerHTML = '<img src="data:," onload="window.handlerRan = true">'
                    + '<p id="styled" style="color: rgb(1, 2, 3)">x</p>';
                document.body.append(box);
            }"""
        )
        page.wait_for_function("window.cspViolations.length >= 3")
        assert page.evaluate("[window.inlineRan, window.handlerRan]") == [None, None]
        assert page.evaluate("getComputedStyle(document.getElementById('styled')).color") != "rgb(1, 2, 3)"
    finally:
        context.close()
    reported = chromium.take_problems()
    for directive in ("script-src-elem blocked inline", "script-src-attr blocked inline", "style-src-attr"):
        assert any(directive in problem for problem in reported), (directive, reported)
