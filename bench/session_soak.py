"""Session soak: the server's RSS across many login/logout cycles of one member.

An ended session used to keep its cache entry, its identity and its verified token until it
would have expired (24 h by default), about 2.5 KiB a cycle. This prints `VmRSS` of the server
after a warm-up and then every `--report-every` cycles, and the growth per cycle: what stays of
a cycle now is the revoked id (about 200 bytes, until the session's expiry, capped), and the
caches' sizes (`synthorg_cache_entries`) show it.

    python -m bench.session_soak --cycles 20000
"""

from __future__ import annotations

import argparse
import http.client
import json
import re
from urllib.parse import urlsplit

from bench.accounts import MEMBER_PASSWORD, create_users
from bench.b6_memory import memory_kb
from bench.servers import Servers


def rss_kib(pid: int) -> int:
    return memory_kb(pid)["VmRSS"]


def run_cycles(base_url: str, username: str, count: int) -> None:
    """Log in, use the session once, log out; one keep-alive connection."""
    parts = urlsplit(base_url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    prefix = parts.path.rstrip("/")
    login = json.dumps({"username": username, "password": MEMBER_PASSWORD}).encode()
    for _ in range(count):
        connection.request(
            "POST", f"{prefix}/api/v1/auth/login", body=login, headers={"Content-Type": "application/json"}
        )
        reply = connection.getresponse()
        body = reply.read()
        if reply.status != 200:
            raise RuntimeError(f"login answered {reply.status}: {body[:200]!r}")
        headers = {"Authorization": f"Bearer {json.loads(body)['token']}"}
        for method, path in (("GET", "/api/v1/me"), ("POST", "/api/v1/auth/logout")):
            connection.request(method, prefix + path, headers=headers)
            connection.getresponse().read()
    connection.close()


def cache_entries(base_url: str) -> str:
    """`synthorg_cache_entries` from /metrics (a loopback scrape needs no token), compactly."""
    parts = urlsplit(base_url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    connection.request("GET", parts.path.rstrip("/") + "/metrics")
    text = connection.getresponse().read().decode()
    connection.close()
    found = re.findall(r'^synthorg_cache_entries\{cache="([a-z_]+)"\} ([0-9.e+]+)$', text, re.MULTILINE)
    return " ".join(f"{name}={int(float(value))}" for name, value in found)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=20_000)
    parser.add_argument("--warm-up", type=int, default=1_000)
    parser.add_argument("--report-every", type=int, default=2_000)
    options = parser.parse_args()
    with Servers(pin=False) as servers:
        target = servers.synthorg(auth={"rate_limit_allowlist": ["127.0.0.0/8"]})
        username = create_users(target, 1, prefix="soak")[0]
        pid = target.process.pid
        run_cycles(target.base_url, username, options.warm_up)
        start = rss_kib(pid)
        print(f"after {options.warm_up} warm-up cycles: VmRSS {start} KiB", flush=True)
        done, half = 0, None
        while done < options.cycles:
            step = min(options.report_every, options.cycles - done)
            run_cycles(target.base_url, username, step)
            done += step
            now = rss_kib(pid)
            if half is None and done >= options.cycles // 2:
                half = (done, now)
            print(
                f"{done:>6} cycles: VmRSS {now} KiB, growth {now - start:+d} KiB, "
                f"{(now - start) * 1024 / done:.0f} bytes a cycle; caches {cache_entries(target.base_url)}",
                flush=True,
            )
        if half is not None and done > half[0]:
            print(f"second half: {(now - half[1]) * 1024 / (done - half[0]):.0f} bytes a cycle", flush=True)


if __name__ == "__main__":
    main()
