"""Login throttling per client IP, and lockout per (account, client IP).

The server trusts 127.0.0.1 as a proxy, so each test picks its client address with
X-Forwarded-For, exactly as nginx would report it.
"""

from __future__ import annotations

from tests.servers import USER_PASSWORD, Lab

LAB_CONFIG = {
    "server": {"trusted_proxies": ["127.0.0.1"]},
    "auth": {"lockout_threshold": 3, "lockout_minutes": 15, "login_rate_limit_per_minute": 10},
}


def attempt(lab: Lab, ip: str, username: str, password: str):  # type: ignore[no-untyped-def]
    client = lab.client(headers={"X-Forwarded-For": ip})
    return client.post("/api/v1/auth/login", {"username": username, "password": password})


def test_eleventh_failure_from_one_ip_within_a_minute_is_429_with_retry_after(lab: Lab) -> None:
    ip = "203.0.113.10"
    # Different (unknown) accounts, so only the per-IP limit is in play.
    replies = [attempt(lab, ip, f"ghost{n}", "wrong-password") for n in range(11)]
    assert [r.status for r in replies[:10]] == [401] * 10
    limited = replies[10]
    assert limited.status == 429 and limited.code == 5000
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    assert limited.json()["retryable"] is True
    # Even the right password is refused from that address until the window allows again.
    user = lab.create_user()
    assert attempt(lab, ip, user["username"], USER_PASSWORD).status == 429
    # Another address is unaffected.
    assert attempt(lab, "203.0.113.11", user["username"], USER_PASSWORD).status == 200


def test_lockout_is_per_account_and_ip_so_the_owner_still_logs_in_elsewhere(lab: Lab) -> None:
    user = lab.create_user()
    attacker = "198.51.100.66"
    for _ in range(3):
        assert attempt(lab, attacker, user["username"], "guess-guess").status == 401
    locked = attempt(lab, attacker, user["username"], USER_PASSWORD)
    assert locked.status == 429 and locked.code == 1004
    assert 800 <= int(locked.headers["Retry-After"]) <= 900
    # The owner, from another address, is not locked out.
    assert attempt(lab, "192.0.2.25", user["username"], USER_PASSWORD).status == 200
    # The attacker's address can still log in to other accounts it knows.
    other = lab.create_user()
    assert attempt(lab, attacker, other["username"], USER_PASSWORD).status == 200


def test_lockout_applies_equally_to_unknown_accounts(lab: Lab) -> None:
    for _ in range(3):
        attempt(lab, "198.51.100.77", "no-such-user", "guess-guess")
    assert attempt(lab, "198.51.100.77", "no-such-user", "guess-guess").code == 1004


def test_throttled_attempts_are_audited(lab: Lab) -> None:
    entries = lab.admin.get("/api/v1/audit?action=auth.login&limit=200").json()["items"]
    outcomes = {e["outcome"] for e in entries}
    assert {"failure", "throttled", "success"} <= outcomes
    assert any(e["ip_address"] == "198.51.100.66" for e in entries)


def test_sessions_record_the_client_ip_reported_by_the_trusted_proxy(lab: Lab) -> None:
    user = lab.create_user()
    client, body = lab.login(user["username"], headers={"X-Forwarded-For": "192.0.2.99"})
    assert body["session"]["ip_address"] == "192.0.2.99"
    assert client.get("/api/v1/auth/sessions").json()[0]["ip_address"] == "192.0.2.99"
