"""Login throttling under concurrent bursts, and the current-password check of a password change.

An attempt takes its place under the limits when it is admitted, so however many requests arrive
at once, no more passwords are checked than the limits allow. Each burst here is real: threads
released together by a barrier, each with its own connection. The server trusts 127.0.0.1 as a
proxy, so each test picks its client address with X-Forwarded-For.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.client import Client, Reply
from tests.conftest import start_lab
from tests.servers import USER_PASSWORD, Lab

PER_IP = 10
LOCKOUT = 3
LAB_CONFIG = {
    "server": {"trusted_proxies": ["127.0.0.1"]},
    "auth": {"lockout_threshold": LOCKOUT, "lockout_minutes": 15, "login_rate_limit_per_minute": PER_IP},
}


def burst(requests: list[Callable[[], Reply]]) -> list[Reply]:
    """Send every request at the same moment, each from its own thread and connection."""
    start = threading.Barrier(len(requests))
    replies: list[Any] = [None] * len(requests)

    def run(index: int) -> None:
        start.wait()
        replies[index] = requests[index]()

    threads = [threading.Thread(target=run, args=(n,)) for n in range(len(requests))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert all(reply is not None for reply in replies)
    return replies


def login_from(lab: Lab, ip: str, username: str, password: str) -> Callable[[], Reply]:
    client = lab.client(headers={"X-Forwarded-For": ip})
    return lambda: client.post("/api/v1/auth/login", {"username": username, "password": password})


def test_a_burst_of_wrong_passwords_from_one_ip_checks_at_most_the_limit(lab: Lab) -> None:
    ip = "203.0.113.40"
    user = lab.create_user()
    # Different unknown accounts, so only the per-IP limit is in play; the right password
    # travels in the middle of the burst.
    requests = [login_from(lab, ip, f"burst-ghost{n}", "wrong-password") for n in range(40)]
    requests.insert(20, login_from(lab, ip, user["username"], USER_PASSWORD))
    replies = burst(requests)
    statuses = Counter(reply.status for reply in replies)
    assert set(statuses) <= {200, 401, 429}
    assert statuses[401] + statuses[200] <= PER_IP, statuses
    assert statuses[429] >= len(replies) - PER_IP
    assert all(
        reply.code == 5000 and int(reply.headers["Retry-After"]) >= 1
        for reply in replies
        if reply.status == 429
    )
    # The window is now full of failures (or of the one success's freed place): the address
    # stays limited, the right password included.
    if statuses[401] == PER_IP:
        assert login_from(lab, ip, user["username"], USER_PASSWORD)().status == 429


def test_a_burst_on_one_account_checks_at_most_the_lockout_threshold(lab: Lab) -> None:
    ip = "198.51.100.40"
    user = lab.create_user()
    requests = [login_from(lab, ip, user["username"], "guess-guess") for _ in range(30)]
    requests.insert(15, login_from(lab, ip, user["username"], USER_PASSWORD))
    replies = burst(requests)
    statuses = Counter(reply.status for reply in replies)
    assert statuses[401] + statuses[200] <= LOCKOUT, statuses
    refused = [reply for reply in replies if reply.status == 429]
    assert len(refused) >= len(replies) - LOCKOUT
    assert all(reply.code == 1004 and int(reply.headers["Retry-After"]) >= 1 for reply in refused)
    # The owner, from another address, is not locked out.
    assert login_from(lab, "192.0.2.40", user["username"], USER_PASSWORD)().status == 200


def change_password(client: Client, current: str) -> Reply:
    return client.post(
        "/api/v1/me/password", {"current_password": current, "new_password": "a-new-password-9"}
    )


def test_password_change_guesses_lock_the_account_for_that_ip(lab: Lab) -> None:
    ip = "198.51.100.41"
    user = lab.create_user()
    stolen, _ = lab.login(user["username"], headers={"X-Forwarded-For": ip})
    for _ in range(LOCKOUT):
        reply = change_password(stolen, "a-wrong-guess")
        assert reply.status == 403 and reply.code == 1001
    locked = change_password(stolen, USER_PASSWORD)
    assert locked.status == 429 and locked.code == 1004
    assert 800 <= int(locked.headers["Retry-After"]) <= 900
    # Nothing changed: the old password still logs in, from elsewhere.
    assert login_from(lab, "192.0.2.41", user["username"], USER_PASSWORD)().status == 200


def test_password_change_shares_the_per_ip_budget_with_login(lab: Lab) -> None:
    ip = "203.0.113.41"
    user = lab.create_user()
    client, _ = lab.login(user["username"], headers={"X-Forwarded-For": ip})
    for n in range(PER_IP):
        assert login_from(lab, ip, f"budget-ghost{n}", "wrong-password")().status == 401
    refused = change_password(client, USER_PASSWORD)
    assert refused.status == 429 and refused.code == 5000 and int(refused.headers["Retry-After"]) >= 1


def test_a_burst_of_password_change_guesses_checks_at_most_the_lockout_threshold(lab: Lab) -> None:
    ip = "198.51.100.42"
    user = lab.create_user()
    clients = [lab.login(user["username"], headers={"X-Forwarded-For": ip})[0] for _ in range(3)]
    replies = burst([lambda c=clients[n % 3], n=n: change_password(c, f"guess-{n}") for n in range(24)])
    statuses = Counter(reply.status for reply in replies)
    assert statuses[403] <= LOCKOUT, statuses
    assert statuses[429] >= len(replies) - LOCKOUT


def test_a_throttled_burst_is_audited_as_one_counted_burst(tmp_path: Path) -> None:
    database = tmp_path / "lab.db"
    lab = start_lab(
        tmp_path,
        f"sqlite+aiosqlite:///{database}",
        server={"trusted_proxies": ["127.0.0.1"]},
        auth={"login_rate_limit_per_minute": 1},
    )
    try:
        ip = "203.0.113.50"
        assert login_from(lab, ip, "audit-ghost", "wrong-password")().status == 401
        replies = burst([login_from(lab, ip, f"audit-ghost{n}", "wrong-password") for n in range(50)])
        assert {reply.status for reply in replies} == {429}
    finally:
        # A clean stop flushes what was counted in memory.
        assert lab.server.terminate() == 0
    with sqlite3.connect(database) as db:
        rows = db.execute(
            "SELECT detail FROM audit_log WHERE action = 'auth.login' AND outcome = 'throttled' "
            "AND ip_address = ?",
            (ip,),
        ).fetchall()
    details = [json.loads(detail) for (detail,) in rows]
    assert 1 <= len(details) <= 2, details
    assert sum(detail["count"] for detail in details) == 50
    assert all(detail["reason"] == "RateLimited" for detail in details)
