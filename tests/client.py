"""A small HTTP client for the tests: JSON in and out, a cookie jar, optional Bearer token."""

from __future__ import annotations

import http.client
import json
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import urlsplit


class Reply:
    def __init__(self, status: int, headers: http.client.HTTPMessage, body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def code(self) -> int | None:
        """The problem JSON error code, if this is an error."""
        if self.headers.get("Content-Type", "").startswith("application/problem+json"):
            return self.json()["error_code"]
        return None

    def cookies(self) -> dict[str, str]:
        """Raw Set-Cookie headers by cookie name, attributes included."""
        found = {}
        for header in self.headers.get_all("Set-Cookie") or []:
            found[header.split("=", 1)[0]] = header
        return found

    def __repr__(self) -> str:
        return f"<Reply {self.status} {self.body[:200]!r}>"


def response_closed(response: http.client.HTTPResponse | None) -> bool:
    return response is None or response.will_close


class Client:
    """One browser-or-script identity. `token` sends Authorization; cookies are kept like a browser."""

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        scheme: str = "Bearer",
        headers: dict[str, str] | None = None,
        source_address: str | None = None,
        context: Any = None,
        keep_alive: bool = False,
    ) -> None:
        parts = urlsplit(base_url)
        self.scheme, self.host, self.port = parts.scheme, parts.hostname or "127.0.0.1", parts.port
        self.prefix = parts.path.rstrip("/")
        self.token, self.auth_scheme = token, scheme
        self.headers = headers or {}
        self.cookies: dict[str, str] = {}
        self.source_address = source_address
        self.context = context
        self.keep_alive = keep_alive
        self._connection: http.client.HTTPConnection | None = None

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
        raw: bytes | None = None,
        xsrf: bool = False,
    ) -> Reply:
        connection = self._connection or self._connect()
        send = {**self.headers, **(headers or {})}
        if self.token:
            send.setdefault("Authorization", f"{self.auth_scheme} {self.token}")
        if self.cookies:
            send["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        if xsrf and "_xsrf" in self.cookies:
            send["X-XSRFToken"] = self.cookies["_xsrf"]
        payload = raw
        if body is not None:
            payload = json.dumps(body).encode()
            send.setdefault("Content-Type", "application/json")
        try:
            connection.request(method, self.prefix + path, body=payload, headers=send)
            response = connection.getresponse()
            reply = Reply(response.status, response.headers, response.read())
        finally:
            if self.keep_alive and not response_closed(locals().get("response")):
                self._connection = connection
            else:
                connection.close()
                self._connection = None
        self._keep_cookies(reply)
        return reply

    def _connect(self) -> http.client.HTTPConnection:
        connection_class = (
            http.client.HTTPSConnection if self.scheme == "https" else http.client.HTTPConnection
        )
        kwargs: dict[str, Any] = {"timeout": 15}
        if self.source_address:
            kwargs["source_address"] = (self.source_address, 0)
        if self.scheme == "https":
            kwargs["context"] = self.context
        return connection_class(self.host, self.port, **kwargs)

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def _keep_cookies(self, reply: Reply) -> None:
        for header in reply.headers.get_all("Set-Cookie") or []:
            jar = SimpleCookie()
            jar.load(header)
            for name, morsel in jar.items():
                expired = (morsel["expires"] and "1970" in morsel["expires"]) or morsel["max-age"] == "0"
                if expired or morsel.value in ("", '""'):
                    self.cookies.pop(name, None)
                else:
                    self.cookies[name] = morsel.value

    def get(self, path: str, **kwargs: Any) -> Reply:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, body: Any = None, **kwargs: Any) -> Reply:
        return self.request("POST", path, body=body, **kwargs)

    def put(self, path: str, body: Any = None, **kwargs: Any) -> Reply:
        return self.request("PUT", path, body=body, **kwargs)

    def patch(self, path: str, body: Any = None, **kwargs: Any) -> Reply:
        return self.request("PATCH", path, body=body, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> Reply:
        return self.request("DELETE", path, **kwargs)
