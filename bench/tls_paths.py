"""TLS paths: what TLS costs, and where it is cheapest to pay for it.

    python -m bench.tls_paths [--seconds 4] [--rounds 3] [--connections 16]

Measures, side by side in one run, the throughput of an authenticated `GET /api/v1/me` (Bearer
session token) over three paths to the same code:

- `nginx-tls`: HTTPS to nginx running the shipped deploy/nginx/synthorg.conf, plain HTTP with
  keep-alive from nginx to the lab server, which trusts it as a proxy;
- `direct`: plain HTTP straight to that same lab server (the ceiling: no TLS anywhere);
- `native-tls`: HTTPS straight to a second lab server with `ssl_certfile`/`ssl_keyfile`.

Every path is loaded with keep-alive connections, so the figures are request throughput, not
handshake throughput. The servers (both lab servers and nginx) share the first CPU and the load
generator gets the second, when the machine has two: each path then has the same one core to
serve with, and nginx's own work counts against the path that uses it. Paths are measured in
alternation, `--rounds` times each, and the median is reported, because the machine is noisy.

The load generator is `wrk` when it is installed, otherwise a small asyncio client in this file
(which is slower than the servers it loads, so its figures are a floor). Nothing is left behind:
every server runs in a temporary folder and is stopped by its own handle. SQLite, one process.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from bench.servers import cpu_split
from tests.client import Client
from tests.nginx import NginxServer
from tests.servers import ServerProcess, make_certificate, write_config

USERNAME = "benchadmin"
PASSWORD = "bench-admin-password-1"
PATH = "/api/v1/me"
WRK_RATE = re.compile(r"Requests/sec:\s+([\d.]+)")
WRK_BAD = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")


@dataclass(frozen=True)
class Target:
    name: str
    url: str
    token: str


def start_lab(directory: Path, **server: object) -> ServerProcess:
    config = write_config(
        directory,
        f"sqlite+aiosqlite:///{directory / 'synthorg.db'}",
        server=server,
        logging={"access_log": False, "level": "INFO", "format": "text"},
    )
    lab = ServerProcess(config).start()
    add_admin = [sys.executable, "-m", "synthorg_tornado", "user", "add", USERNAME, "--role", "admin"]
    try:
        subprocess.run(
            [*add_admin, "--password-stdin", "--config", str(config)],
            input=PASSWORD + "\n",
            text=True,
            capture_output=True,
            check=True,
        )
    except BaseException:
        lab.kill()
        raise
    return lab


def login(url: str, context: ssl.SSLContext) -> str:
    reply = Client(url, context=context).post(
        "/api/v1/auth/login", {"username": USERNAME, "password": PASSWORD}
    )
    if reply.status != 200:
        raise RuntimeError(f"login at {url} failed: {reply}")
    return reply.json()["token"]


def check_target(target: Target, context: ssl.SSLContext) -> None:
    reply = Client(target.url, token=target.token, context=context).get(PATH)
    if reply.status != 200 or reply.json()["username"] != USERNAME:
        raise RuntimeError(f"{target.name}: GET {PATH} answered {reply}")


def run_wrk(target: Target, seconds: int, connections: int) -> float:
    command = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{seconds}s",
        "-H",
        f"Authorization: Bearer {target.token}",
        target.url.rstrip("/") + PATH,
    ]
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 30,
    )
    bad = WRK_BAD.search(result.stdout)
    if bad:
        raise RuntimeError(f"{target.name}: {bad.group(1)} responses were not 200:\n{result.stdout}")
    rate = WRK_RATE.search(result.stdout)
    if rate is None:
        raise RuntimeError(f"{target.name}: no rate in wrk's output:\n{result.stdout}{result.stderr}")
    return float(rate.group(1))


async def _python_load(target: Target, seconds: int, connections: int, context: ssl.SSLContext) -> float:
    """The fallback load generator: keep-alive connections, one request in flight on each."""
    parts = urlsplit(target.url)
    request = (
        f"GET {PATH} HTTP/1.1\r\nHost: {parts.netloc}\r\nAuthorization: Bearer {target.token}\r\n\r\n"
    ).encode()
    deadline = time.monotonic() + seconds
    counts = [0] * connections

    async def one(index: int) -> None:
        reader, writer = await asyncio.open_connection(
            parts.hostname,
            parts.port,
            ssl=context if parts.scheme == "https" else None,
        )
        try:
            while time.monotonic() < deadline:
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                if not head.startswith(b"HTTP/1.1 200"):
                    raise RuntimeError(f"{target.name}: {head.splitlines()[0]!r}")
                length = re.search(rb"(?i)content-length:\s*(\d+)", head)
                await reader.readexactly(int(length.group(1)) if length else 0)
                counts[index] += 1
        finally:
            writer.close()

    started = time.monotonic()
    await asyncio.gather(*(one(index) for index in range(connections)))
    return sum(counts) / (time.monotonic() - started)


def measure(target: Target, seconds: int, connections: int, context: ssl.SSLContext) -> float:
    if shutil.which("wrk"):
        return run_wrk(target, seconds, connections)
    return asyncio.run(_python_load(target, seconds, connections, context))


@contextlib.contextmanager
def deployment(root: Path) -> Iterator[tuple[list[Target], ssl.SSLContext]]:
    certificate, key = make_certificate(root / "pki", "localhost")
    context = ssl.create_default_context(cafile=str(certificate))
    started: list[ServerProcess] = []
    nginx: NginxServer | None = None
    try:
        plain = start_lab(root / "plain", trusted_proxies=["127.0.0.1"])
        started.append(plain)
        native = start_lab(root / "native", ssl_certfile=str(certificate), ssl_keyfile=str(key))
        started.append(native)
        nginx = NginxServer(root / "nginx", f"127.0.0.1:{plain.port}", certificate, key).start()
        # Host names, not addresses: nginx refuses TLS handshakes that name no server.
        native_url = f"https://localhost:{native.port}/"
        plain_token = login(nginx.https_url, context)
        targets = [
            Target("nginx-tls", nginx.https_url, plain_token),
            Target("direct", plain.url, plain_token),
            Target("native-tls", native_url, login(native_url, context)),
        ]
        for target in targets:
            check_target(target, context)
        yield targets, context
    finally:
        if nginx is not None:
            nginx.stop()
        for server in started:
            server.kill()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.tls_paths", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=4, help="length of one measurement")
    parser.add_argument("--rounds", type=int, default=3, help="measurements per path")
    parser.add_argument("--connections", type=int, default=16, help="keep-alive connections")
    args = parser.parse_args(argv)

    server_cpus, load_cpus = cpu_split()
    if server_cpus:
        # Children inherit this: the lab servers and nginx all run on the servers' CPU.
        os.sched_setaffinity(0, server_cpus)
    generator = "wrk" if shutil.which("wrk") else "python (wrk not installed; figures are a floor)"
    print(
        f"TLS paths: GET {PATH}, {args.connections} keep-alive connections, {args.seconds} s x {args.rounds}"
    )
    print(
        f"load generator: {generator}; servers on CPUs {server_cpus or 'any'}, load on {load_cpus or 'any'}"
    )

    rates: dict[str, list[float]] = {}
    with (
        tempfile.TemporaryDirectory(prefix="synthorg-tls-bench-") as folder,
        deployment(Path(folder)) as (targets, context),
    ):
        if load_cpus:
            # The servers are running; from here on this process (and wrk) is the load.
            os.sched_setaffinity(0, load_cpus)
        for _ in range(args.rounds):
            for target in targets:
                rate = measure(target, args.seconds, args.connections, context)
                rates.setdefault(target.name, []).append(rate)

    direct = statistics.median(rates["direct"])
    print(f"{'path':<12} {'req/s (median)':>15} {'vs direct':>10}   runs")
    for name, values in rates.items():
        median = statistics.median(values)
        runs = ", ".join(f"{value:.0f}" for value in values)
        print(f"{name:<12} {median:>15.0f} {median / direct:>9.2f}x   {runs}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
