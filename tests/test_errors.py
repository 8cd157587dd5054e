"""Every error is RFC 9457 problem JSON with our error code; the server keeps serving."""

from __future__ import annotations

import json
import re
import socket

import pytest
from tornado import web
from tornado.httpclient import AsyncHTTPClient, HTTPResponse
from tornado.routing import PathMatches, Rule

from synthorg_tornado.handlers.base import ApiHandler
from synthorg_tornado.handlers.decorators import allow_anonymous

INTERNAL_SECRET = "password=hunter2 at /srv/internal/module.py"


class EchoHandler(ApiHandler):
    """Stands in for any JSON-accepting endpoint."""

    @allow_anonymous
    def post(self) -> None:
        self.write_json({"received": self.json_body()})


class BoomHandler(ApiHandler):
    @allow_anonymous
    def get(self) -> None:
        raise RuntimeError(INTERNAL_SECRET)


@pytest.fixture
def app(app: web.Application) -> web.Application:
    prefix = app.settings["config"].server.base_url
    for path, handler in ((prefix + "api/v1/echo", EchoHandler), (prefix + "api/v1/boom", BoomHandler)):
        app.wildcard_router.rules.insert(
            0, app.wildcard_router.process_rule(Rule(PathMatches(path), handler))
        )
    return app


async def fetch(http_client: AsyncHTTPClient, url: str, **kwargs) -> HTTPResponse:
    if kwargs.get("body") is not None:
        kwargs.setdefault("headers", {}).setdefault("Content-Type", "application/json")
    return await http_client.fetch(url, raise_error=False, **kwargs)


def assert_problem(response: HTTPResponse, status: int, code: int) -> dict:
    assert response.code == status
    assert response.headers["Content-Type"] == "application/problem+json"
    body = json.loads(response.body)
    assert body["status"] == status
    assert body["error_code"] == code
    assert body["instance"] == response.headers["X-Request-ID"]
    for member in ("type", "title", "detail", "error_category", "retryable", "retry_after"):
        assert member in body
    return body


@pytest.mark.gen_test
async def test_unknown_api_route_is_404_problem_with_code_3002(http_client, base_url) -> None:
    for method, body in (("GET", None), ("DELETE", None), ("POST", b"{}")):
        response = await fetch(http_client, base_url + "/api/v1/no-such-thing", method=method, body=body)
        problem = assert_problem(response, 404, 3002)
        assert problem["error_category"] == "not_found"


@pytest.mark.gen_test
async def test_unknown_page_is_plain_html_404(http_client, base_url) -> None:
    response = await fetch(http_client, base_url + "/no-such-page")
    assert response.code == 404
    assert response.headers["Content-Type"].startswith("text/html")
    assert b"404" in response.body


@pytest.mark.gen_test
async def test_wrong_method_is_405_with_code_2002_and_allow_header(http_client, base_url) -> None:
    response = await fetch(http_client, base_url + "/api/v1/health", method="DELETE")
    assert_problem(response, 405, 2002)
    assert response.headers["Allow"] == "GET, HEAD"


@pytest.mark.gen_test
async def test_malformed_json_is_400_with_code_2001(http_client, base_url) -> None:
    response = await fetch(http_client, base_url + "/api/v1/echo", method="POST", body=b'{"a": ')
    problem = assert_problem(response, 400, 2001)
    assert "not valid JSON" in problem["detail"]
    empty = await fetch(http_client, base_url + "/api/v1/echo", method="POST", body=b"")
    assert_problem(empty, 400, 2001)
    ok = await fetch(http_client, base_url + "/api/v1/echo", method="POST", body=b'{"a": 1}')
    assert ok.code == 200 and json.loads(ok.body) == {"received": {"a": 1}}


@pytest.mark.gen_test
async def test_unexpected_exception_is_500_without_internals(http_client, base_url) -> None:
    response = await fetch(http_client, base_url + "/api/v1/boom")
    problem = assert_problem(response, 500, 8000)
    text = response.body.decode()
    assert "hunter2" not in text and "RuntimeError" not in text and "Traceback" not in text
    assert problem["retryable"] is False
    # The server keeps serving.
    assert (await fetch(http_client, base_url + "/api/v1/health")).code == 200


def _raw_request(port: int, head: str) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(head.encode())
        chunks = []
        while chunk := connection.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)


@pytest.mark.gen_test
async def test_body_over_max_body_size_is_413_before_it_is_read(http_server, http_port, io_loop) -> None:
    head = (
        "POST /api/v1/echo HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        "Content-Length: 2000000\r\nConnection: close\r\n\r\n"
    )
    raw = await io_loop.run_in_executor(None, _raw_request, http_port, head)
    status_line, _, rest = raw.partition(b"\r\n")
    assert status_line == b"HTTP/1.1 413 Request Entity Too Large"
    body = json.loads(rest.split(b"\r\n\r\n", 1)[1])
    assert body["error_code"] == 2001 and "1048576" in body["detail"]


@pytest.mark.gen_test
async def test_body_within_limit_is_accepted(http_client, base_url) -> None:
    payload = json.dumps({"text": "x" * 500_000}).encode()
    response = await fetch(http_client, base_url + "/api/v1/echo", method="POST", body=payload)
    assert response.code == 200


@pytest.mark.gen_test
async def test_well_formed_request_id_is_kept_and_bad_one_replaced(http_client, base_url) -> None:
    kept = await fetch(http_client, base_url + "/api/v1/nowhere", headers={"X-Request-ID": "abc.DEF-123_x"})
    assert kept.headers["X-Request-ID"] == "abc.DEF-123_x"
    assert json.loads(kept.body)["instance"] == "abc.DEF-123_x"
    for bad in ("has space", "x" * 129, "semi;colon"):
        replaced = await fetch(http_client, base_url + "/api/v1/health", headers={"X-Request-ID": bad})
        assert replaced.headers["X-Request-ID"] != bad
        assert re.fullmatch(r"[0-9a-f]{32}", replaced.headers["X-Request-ID"])


@pytest.mark.gen_test
async def test_security_headers_on_every_response(http_client, base_url) -> None:
    for path in ("/api/v1/health", "/api/v1/nowhere", "/nowhere"):
        response = await fetch(http_client, base_url + path)
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert "frame-ancestors 'self'" in response.headers["Content-Security-Policy"]
        assert "Strict-Transport-Security" not in response.headers  # plain HTTP
        assert "Server" not in response.headers
