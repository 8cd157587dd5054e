"""Set-up steps on a running synthorg-tornado: members created by the admin, and their logins.

The benchmarks keep the product's default limits (`auth.max_sessions_per_user` 10,
`websocket.max_connections_per_user` 20) and create as many users as they need instead, so the
server does the bookkeeping a real lab of that many people would. Never inside a timed loop.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from bench.servers import Target
from bench.wire import fetch

MEMBER_PASSWORD = "bench-member-password-1"


@dataclass
class Login:
    username: str
    user_id: str
    token: str
    session_id: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def admin_headers(target: Target) -> dict[str, str]:
    return {"Authorization": f"Bearer {target.extra['admin_token']}", "Content-Type": "application/json"}


def create_users(target: Target, count: int, prefix: str = "member", role: str = "member") -> list[str]:
    """`count` users through `POST /api/v1/users` as the admin; returns their usernames."""
    names = []
    for number in range(count):
        name = f"{prefix}{number:05d}"
        body = {"username": name, "password": MEMBER_PASSWORD, "role": role}
        reply = fetch(
            target.base_url + "api/v1/users", "POST", admin_headers(target), json.dumps(body).encode()
        )
        if reply.status != 201:
            raise RuntimeError(f"creating {name} answered {reply.status}: {reply.body[:300]!r}")
        names.append(name)
    return names


def log_in(target: Target, username: str, password: str = MEMBER_PASSWORD) -> Login:
    reply = fetch(
        target.base_url + "api/v1/auth/login",
        "POST",
        {"Content-Type": "application/json", "User-Agent": "synthorg-bench"},
        json.dumps({"username": username, "password": password}).encode(),
    )
    if reply.status != 200:
        raise RuntimeError(f"login of {username} answered {reply.status}: {reply.body[:300]!r}")
    body = reply.json()
    return Login(username, str(body["user"]["id"]), body["token"], body["session"]["session_id"])


def sessions_for(target: Target, users: int, sessions_per_user: int, prefix: str = "member") -> list[Login]:
    """`users` new members, each logged in `sessions_per_user` times (one session per login)."""
    return [
        log_in(target, name) for name in create_users(target, users, prefix) for _ in range(sessions_per_user)
    ]
