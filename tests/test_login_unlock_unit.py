"""The allowlist and the unlock in the limiter's bookkeeping, the bcrypt work of a disabled
user's login, and the allowlist's validation.

The server tests (`test_login_unlock.py`) show the behaviour over HTTP; these pin down what no
response shows: an unlock read again by the change feed is applied once, and every login path
does the same bcrypt work. Work is counted, never timed.
"""

from __future__ import annotations

import asyncio
import ipaddress
from datetime import timedelta
from pathlib import Path
from typing import Any

import bcrypt
import pytest
import yaml

from synthorg_tornado.accounts.records import UserRecord
from synthorg_tornado.auth.login import LoginService
from synthorg_tornado.auth.passwords import PasswordHasher, cost_of
from synthorg_tornado.auth.throttle import LoginThrottle
from synthorg_tornado.auth.throttle.limiter import LoginLimiter
from synthorg_tornado.clock import utcnow
from synthorg_tornado.config import ConfigError, load_config
from synthorg_tornado.errors import AccountLocked, NotAuthenticated, PermissionDenied, RateLimited

NAT = ipaddress.ip_network("198.18.0.0/24")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def limiter(clock: Clock, allowlist: tuple[Any, ...] = (NAT,), per_minute: int = 3) -> LoginLimiter:
    return LoginLimiter(lambda: per_minute, lambda: 2, lambda: 900.0, clock=clock, allowlist=allowlist)


def test_an_allowlisted_address_has_no_per_ip_limit_but_keeps_the_account_lockout() -> None:
    limits = limiter(Clock())
    for n in range(20):
        limits.admit(f"user{n}", "198.18.0.9").failed()
    limits.admit("user0", "198.18.0.9").failed()  # second failure: locked
    with pytest.raises(AccountLocked):
        limits.admit("user0", "198.18.0.9")
    limits.admit("someone-else", "198.18.0.9").succeeded()
    for n in range(3):
        limits.admit(f"user{n}", "198.19.0.9").failed()
    with pytest.raises(RateLimited):
        limits.admit("someone-else", "198.19.0.9")


def test_ipv4_mapped_addresses_and_garbage_are_judged_correctly() -> None:
    limits = limiter(Clock())
    assert limits.exempt("198.18.0.1") and limits.exempt("::ffff:198.18.0.1")
    assert not limits.exempt("198.18.1.1") and not limits.exempt("not-an-ip")
    assert not limiter(Clock(), allowlist=()).exempt("198.18.0.1")


def test_an_unlock_forgets_the_account_from_every_address_and_is_applied_once() -> None:
    limits = limiter(Clock(), per_minute=100)
    for ip in ("192.0.2.1", "198.18.0.9"):
        limits.admit("alice", ip).failed()
        limits.admit("alice", ip).failed()
        with pytest.raises(AccountLocked):
            limits.admit("alice", ip)
    limits.admit("bob", "192.0.2.1").failed()
    cleared_at = utcnow()
    assert limits.unlock("alice", cleared_at) is True
    limits.admit("alice", "192.0.2.1").failed()  # one failure since the unlock
    # The change feed reads the same unlock again (and an older one): nothing more is forgiven.
    assert limits.unlock("alice", cleared_at) is False
    assert limits.unlock("alice", cleared_at - timedelta(seconds=1)) is False
    limits.admit("alice", "192.0.2.1").failed()
    with pytest.raises(AccountLocked):
        limits.admit("alice", "192.0.2.1")
    limits.admit("alice", "198.18.0.9").succeeded()
    # Another account's failures are untouched: one more locks bob.
    limits.admit("bob", "192.0.2.1").failed()
    with pytest.raises(AccountLocked):
        limits.admit("bob", "192.0.2.1")


def test_an_unlock_leaves_attempts_in_flight_their_places() -> None:
    limits = limiter(Clock(), per_minute=100)
    limits.admit("alice", "192.0.2.1").failed()
    in_flight = limits.admit("alice", "192.0.2.1")
    limits.unlock("alice", utcnow())
    limits.admit("alice", "192.0.2.1")  # threshold 2: the one in flight plus this one
    with pytest.raises(AccountLocked):
        limits.admit("alice", "192.0.2.1")
    in_flight.succeeded()


class CountingHasher(PasswordHasher):
    """Records the bcrypt calls made: (function, cost of the hash it worked on)."""

    def __init__(self) -> None:
        super().__init__(rounds=4, min_length=8)
        self.calls: list[tuple[str, int | None]] = []

    async def _run(self, function, *args):  # type: ignore[no-untyped-def]
        self.calls.append((function.__name__, cost_of(args[-1].decode())))
        return await super()._run(function, *args)


class Users:
    def __init__(self, password_hash: str) -> None:
        stamp = utcnow()
        self.rows = {
            name: (UserRecord(n, name, "", "member", name == "dora", stamp, None), password_hash)
            for n, name in enumerate(("alice", "dora"), start=1)
        }

    async def find_for_login(self, account: str) -> tuple[UserRecord, str] | None:
        return self.rows.get(account)


class Audit:
    async def record(self, *args: Any, **kwargs: Any) -> None:
        return None


def test_every_refused_login_does_one_bcrypt_check_at_the_configured_cost() -> None:
    async def scenario() -> dict[str, list[tuple[str, int | None]]]:
        hasher = CountingHasher()
        await hasher.prepare()
        password_hash = bcrypt.hashpw(b"right-password", bcrypt.gensalt(4)).decode()
        audit = Audit()
        throttle = LoginThrottle(LoginLimiter(lambda: 100, lambda: 100, lambda: 900.0), audit)  # type: ignore[arg-type]
        login = LoginService(Users(password_hash), None, hasher, throttle, audit)  # type: ignore[arg-type]
        work = {}
        cases = {
            "unknown user": ("nobody", "wrong-password", NotAuthenticated),
            "wrong password": ("alice", "wrong-password", NotAuthenticated),
            "disabled, wrong password": ("dora", "wrong-password", NotAuthenticated),
            "disabled, right password": ("dora", "right-password", PermissionDenied),
        }
        try:
            for case, (username, password, refusal) in cases.items():
                hasher.calls.clear()
                with pytest.raises(refusal):
                    await login.login(username, password, "192.0.2.1", "test")
                work[case] = list(hasher.calls)
        finally:
            hasher.close()
        return work

    work = asyncio.run(scenario())
    assert all(calls == [("checkpw", 4)] for calls in work.values()), work


def write(tmp_path: Path, allowlist: list[str]) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"auth": {"rate_limit_allowlist": allowlist}}))
    return path


@pytest.mark.parametrize(
    ("entry", "fragment"),
    [
        ("nat.lab.internal", "is not an IP address or CIDR"),
        ("198.18.0.7/24", "has host bits set; did you mean '198.18.0.0/24'?"),
        ("0.0.0.0/0", "too broad"),
        ("::/0", "too broad"),
    ],
)
def test_a_bad_allowlist_entry_is_one_clear_error(tmp_path: Path, entry: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as refused:
        load_config(write(tmp_path, [entry]), environ={})
    assert len(refused.value.problems) == 1
    problem = refused.value.problems[0]
    assert (
        problem.startswith("auth.rate_limit_allowlist:") and f"'{entry}'" in problem and fragment in problem
    )


def test_addresses_and_networks_are_accepted_and_env_overridable(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, ["198.18.0.0/24", "192.0.2.5"]), environ={})
    assert config.auth.rate_limit_networks == (NAT, ipaddress.ip_network("192.0.2.5/32"))
    from_env = load_config(
        write(tmp_path, []), environ={"SYNTHORG_AUTH_RATE_LIMIT_ALLOWLIST": "2001:db8::/48, 198.18.0.0/24"}
    )
    assert from_env.auth.rate_limit_allowlist == ("2001:db8::/48", "198.18.0.0/24")
    assert load_config(None, environ={}).auth.rate_limit_allowlist == ()
