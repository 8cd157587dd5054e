"""Login throttling across two server processes on one PostgreSQL database.

A and B are separate `serve` processes sharing one database, as two workers or two hosts would.
Failures counted on one must count on the other, so N processes never multiply the per-IP limit
or the (account, IP) lockout by N. Both trust 127.0.0.1 as a proxy, so each test picks its client
address with X-Forwarded-For, as nginx would report it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.client import Reply
from tests.conftest import start_lab
from tests.servers import USER_PASSWORD, Lab, PostgresCluster, ServerProcess, wait_for, write_config
from tests.test_login_concurrency import burst

PER_IP = 10
LOCKOUT = 3
SECTIONS = {
    "server": {"trusted_proxies": ["127.0.0.1"]},
    "auth": {
        "lockout_threshold": LOCKOUT,
        "lockout_minutes": 15,
        "login_rate_limit_per_minute": PER_IP,
        "cleanup_interval_seconds": 1,
        "rate_limit_allowlist": ["198.18.0.0/24"],
    },
}


class TwoProcesses:
    def __init__(self, cluster: PostgresCluster, url: str, a: Lab, b: ServerProcess) -> None:
        self.cluster = cluster
        self.database = url.rsplit("/", 1)[1]
        self.a = a
        self.b = b

    def attempt(self, server: str, ip: str, username: str, password: str) -> Reply:
        url = self.a.url if server == "A" else self.b.url
        client = self.a.client_class(url, headers={"X-Forwarded-For": ip})
        return client.post("/api/v1/auth/login", {"username": username, "password": password})

    def sql(self, statement: str) -> list[tuple]:
        return self.cluster.psql(statement, database=self.database)


@pytest.fixture(scope="module")
def lab2(pg_cluster: PostgresCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TwoProcesses]:
    url = pg_cluster.create_database("lab_wide_throttle")
    a = start_lab(tmp_path_factory.mktemp("a"), url, **SECTIONS)
    b = ServerProcess(write_config(Path(tmp_path_factory.mktemp("b")), url, **SECTIONS))
    try:
        b.start()
        yield TwoProcesses(pg_cluster, url, a, b)
    finally:
        assert a.server.terminate() == 0
        if b.process is not None:
            assert b.terminate() == 0


@pytest.mark.parametrize("last", ["A", "B"])
def test_failures_spread_across_both_processes_count_together(lab2: TwoProcesses, last: str) -> None:
    ip = f"203.0.113.{20 if last == 'A' else 21}"
    first, other = ("B", "A") if last == "A" else ("A", "B")
    # Unknown accounts, alternating processes, so only the per-IP limit is in play.
    for n in range(PER_IP):
        reply = lab2.attempt(first if n % 2 == 0 else other, ip, f"spread-ghost{n}", "wrong-password")
        assert reply.status == 401, reply
    limited = lab2.attempt(last, ip, "spread-ghost-last", "wrong-password")
    assert (limited.status, limited.code) == (429, 5000)
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    # Both processes now refuse that address, the right password included.
    user = lab2.a.create_user()
    assert lab2.attempt("A", ip, user["username"], USER_PASSWORD).code == 5000
    assert lab2.attempt("B", ip, user["username"], USER_PASSWORD).code == 5000
    assert lab2.attempt(last, "203.0.113.22", user["username"], USER_PASSWORD).status == 200


def test_the_account_and_ip_lockout_counts_failures_from_both_processes(lab2: TwoProcesses) -> None:
    user = lab2.a.create_user()
    attacker = "198.51.100.20"
    for server in ("A", "B", "A"):
        assert lab2.attempt(server, attacker, user["username"], "guess-guess").status == 401
    for server in ("B", "A"):
        locked = lab2.attempt(server, attacker, user["username"], USER_PASSWORD)
        assert (locked.status, locked.code) == (429, 1004)
        assert 800 <= int(locked.headers["Retry-After"]) <= 900
    # The owner, from elsewhere, logs in on either process.
    assert lab2.attempt("B", "192.0.2.20", user["username"], USER_PASSWORD).status == 200
    assert lab2.attempt("A", "192.0.2.20", user["username"], USER_PASSWORD).status == 200


def test_a_burst_split_across_both_processes_checks_at_most_the_per_ip_limit(lab2: TwoProcesses) -> None:
    ip = "203.0.113.23"
    requests = [
        (lambda n=n: lab2.attempt("AB"[n % 2], ip, f"burst-ghost{n}", "wrong-password")) for n in range(40)
    ]
    replies = burst(requests)
    statuses = Counter(reply.status for reply in replies)
    assert set(statuses) <= {401, 429}, statuses
    assert statuses[401] <= PER_IP, statuses
    assert all(reply.code == 5000 for reply in replies if reply.status == 429)
    # Every check that was let through is on record, lab-wide, as a failure.
    ((stored,),) = lab2.sql("SELECT count(*) FROM login_attempts WHERE ip = '203.0.113.23'")
    assert stored == statuses[401]


def test_a_burst_on_one_account_split_across_both_processes_checks_at_most_the_threshold(
    lab2: TwoProcesses,
) -> None:
    ip = "198.51.100.21"
    user = lab2.a.create_user()
    replies = burst(
        [(lambda n=n: lab2.attempt("AB"[n % 2], ip, user["username"], "guess-guess")) for n in range(30)]
    )
    statuses = Counter(reply.status for reply in replies)
    assert statuses[401] <= LOCKOUT, statuses
    assert statuses[429] >= len(replies) - LOCKOUT
    assert all(reply.code == 1004 for reply in replies if reply.status == 429)


def test_an_allowlisted_address_keeps_the_lab_wide_lockout_but_not_the_per_ip_limit(
    lab2: TwoProcesses,
) -> None:
    nat = "198.18.0.20"
    for n in range(PER_IP + 2):
        assert lab2.attempt("AB"[n % 2], nat, f"nat-ghost{n}", "wrong-password").status == 401
    typist = lab2.a.create_user()
    for server in ("A", "B", "A"):
        assert lab2.attempt(server, nat, typist["username"], "typo-typo").status == 401
    assert lab2.attempt("B", nat, typist["username"], USER_PASSWORD).code == 1004
    colleague = lab2.a.create_user()
    assert lab2.attempt("B", nat, colleague["username"], USER_PASSWORD).status == 200


def test_a_success_on_one_process_forgives_that_pairs_failures_on_the_other(lab2: TwoProcesses) -> None:
    user = lab2.a.create_user()
    ip = "192.0.2.21"
    for server in ("A", "B"):
        assert lab2.attempt(server, ip, user["username"], "typo-typo").status == 401
    assert lab2.attempt("B", ip, user["username"], USER_PASSWORD).status == 200
    # Counted from zero again: three more failures before the lock, whichever process.
    for server in ("A", "B", "A"):
        assert lab2.attempt(server, ip, user["username"], "typo-typo").status == 401
    assert lab2.attempt("B", ip, user["username"], USER_PASSWORD).code == 1004


def test_an_unlock_made_on_one_process_applies_on_the_other_at_once(lab2: TwoProcesses) -> None:
    user = lab2.a.create_user()
    ip = "198.51.100.22"
    for server in ("B", "A", "B"):
        assert lab2.attempt(server, ip, user["username"], "guess-guess").status == 401
    assert lab2.attempt("B", ip, user["username"], USER_PASSWORD).code == 1004
    assert lab2.a.admin.post(f"/api/v1/users/{user['id']}/unlock").status == 200
    # No wait for a change feed: B reads the unlock with the counts.
    assert lab2.attempt("B", ip, user["username"], USER_PASSWORD).status == 200


def test_the_cleanup_job_prunes_attempts_no_window_can_reach(lab2: TwoProcesses) -> None:
    lab2.sql(
        "INSERT INTO login_attempts (ip, account, at, outcome) VALUES "
        "('192.0.2.99', 'old', now() - interval '16 minutes', 'failed'), "
        "('192.0.2.99', 'recent', now() - interval '14 minutes', 'failed')"
    )

    def pruned() -> bool:
        rows = lab2.sql("SELECT account FROM login_attempts WHERE ip = '192.0.2.99'")
        return [account for (account,) in rows] == ["recent"]

    wait_for(pruned, 10.0, "the cleanup job to prune the old attempt", interval=0.2)


def test_a_burst_on_one_account_behind_an_allowlisted_address_checks_at_most_the_threshold(
    lab2: TwoProcesses,
) -> None:
    user = lab2.a.create_user()
    replies = burst(
        [
            (lambda n=n: lab2.attempt("AB"[n % 2], "198.18.0.21", user["username"], "guess-guess"))
            for n in range(30)
        ]
    )
    statuses = Counter(reply.status for reply in replies)
    assert statuses[401] <= LOCKOUT, statuses
    assert all(reply.code == 1004 for reply in replies if reply.status == 429)


def test_a_successful_login_pays_no_round_trip_for_the_lab_wide_count(lab2: TwoProcesses) -> None:
    """The admission also reads the account (the read every login makes), and the verdict is
    written by the statement that starts the session: no statement of its own for either."""
    lab2.sql("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    user = lab2.a.create_user()
    lab2.sql("SELECT pg_stat_statements_reset()")
    assert lab2.attempt("A", "203.0.113.90", user["username"], USER_PASSWORD).status == 200
    statements = lab2.sql(
        "SELECT s.query, s.calls FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid"
        " WHERE d.datname = current_database()"
    )
    pruning = "DELETE FROM login_attempts WHERE at <"  # the cleanup job, on its own clock
    throttle = [
        (query, calls)
        for query, calls in statements
        if ("login_attempts" in query or "synthorg_login_admit" in query) and not query.startswith(pruning)
    ]
    assert len(throttle) == 2, throttle
    admission = next(q for q, _ in throttle if "synthorg_login_admit" in q)
    assert "LEFT JOIN users" in admission
    session_start = next(q for q, _ in throttle if q is not admission)
    assert "UPDATE users SET last_login_at" in session_start
    assert all(calls == 1 for _, calls in throttle)
    separate_reads = [q for q, _ in statements if "WHERE users.username_key" in q]
    assert separate_reads == [], separate_reads
