"""B5: settings contention, many writers incrementing one setting with If-Match, on each database.

`--writers` writers, each on its own keep-alive connection with the admin's Bearer token, each
make `--increments` successful increments of `budget.monthly_limit` (a float with no upper bound,
so any number of increments fits; integer values stay exact). One increment:

1. `GET /api/v1/settings/budget/monthly_limit` -> value and `ETag`;
2. `PUT` `{value: value + 1}` with `If-Match: <etag>`;
3. on 412, take `current.value` and `current.etag` from the problem body and go back to 2.

At the end the setting must equal its start plus writers x increments: any other value is a lost
(or doubled) update. Reported: successful writes/s, 412s per success, and anything else the
server answered. Run on SQLite, then on PostgreSQL (a throwaway cluster from `Servers.postgres`,
that is `tests.servers.PostgresCluster`: initdb as the `postgres` user when run as root, fsync
off like the tests).

Nothing is pinned: on PostgreSQL the database server needs a core as much as ours does. An
increment that meets `MAX_ATTEMPTS_PER_INCREMENT` 412s in a row starts again from the GET; every
writer stops at its quota or at the deadline, whichever comes first.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections import Counter
from typing import Any

from bench.accounts import admin_headers
from bench.clients import cpu_seconds, cpus_busy_seconds
from bench.report import table
from bench.servers import Servers, Target
from bench.wsclient import HttpConnection

NAMESPACE, KEY = "budget", "monthly_limit"
PATH = f"/api/v1/settings/{NAMESPACE}/{KEY}"
DEADLINE_SECONDS = 90.0
MAX_ATTEMPTS_PER_INCREMENT = 200
RETRY_PAUSE = 0.05


class Writer:
    def __init__(self, target: Target) -> None:
        self.connection = HttpConnection(target.base_url)
        self.headers = admin_headers(target)
        self.successes = 0
        self.conflicts = 0
        self.reads = 0
        self.other: Counter[str] = Counter()

    async def increment(self, deadline: float) -> bool:
        status, headers, body = await self.connection.request("GET", PATH, self.headers)
        self.reads += 1
        if status != 200:
            self.other[f"GET {status}"] += 1
            await asyncio.sleep(RETRY_PAUSE)
            return False
        value, etag = json.loads(body)["value"], headers["etag"]
        for _ in range(MAX_ATTEMPTS_PER_INCREMENT):
            if time.monotonic() > deadline:
                return False
            status, _, body = await self.connection.request(
                "PUT", PATH, {**self.headers, "If-Match": etag}, json.dumps({"value": value + 1}).encode()
            )
            if status == 200:
                self.successes += 1
                return True
            if status == 412:
                self.conflicts += 1
                current = json.loads(body)["current"]
                value, etag = current["value"], current["etag"]
                continue
            self.other[f"PUT {status}"] += 1  # 503 and the like: read again after a pause
            await asyncio.sleep(RETRY_PAUSE)
            return False
        return False

    async def run(self, increments: int, deadline: float) -> None:
        await self.connection.connect()
        try:
            while self.successes < increments and time.monotonic() < deadline:
                await self.increment(deadline)
        finally:
            await self.connection.close()


async def read_value(target: Target) -> float:
    connection = HttpConnection(target.base_url)
    try:
        status, _, body = await connection.request("GET", PATH, admin_headers(target))
        if status != 200:
            raise RuntimeError(f"GET {PATH} answered {status}: {body[:200]!r}")
        return json.loads(body)["value"]
    finally:
        await connection.close()


async def contend(target: Target, writers: int, increments: int) -> dict[str, Any]:
    start_value = await read_value(target)
    crew = [Writer(target) for _ in range(writers)]
    everything = set(range(os.cpu_count() or 1))
    server_before, client_before = cpu_seconds(target.process.pid), time.process_time()
    machine_before = cpus_busy_seconds(everything)
    started = time.monotonic()
    deadline = started + DEADLINE_SECONDS
    await asyncio.gather(*(writer.run(increments, deadline) for writer in crew))
    elapsed = time.monotonic() - started
    server_cpu = cpu_seconds(target.process.pid) - server_before
    client_cpu = time.process_time() - client_before
    machine_busy = cpus_busy_seconds(everything) - machine_before
    end_value = await read_value(target)
    successes = sum(w.successes for w in crew)
    conflicts = sum(w.conflicts for w in crew)
    other: Counter[str] = Counter()
    for writer in crew:
        other.update(writer.other)
    return {
        "writers": writers,
        "increments_per_writer": increments,
        "seconds": elapsed,
        "successes": successes,
        "conflicts_412": conflicts,
        "reads": sum(w.reads for w in crew),
        "other_answers": dict(other),
        "start_value": start_value,
        "end_value": end_value,
        "lost_updates": start_value + successes - end_value,
        "complete": successes == writers * increments,
        "writes_per_second": successes / elapsed if elapsed > 0 else 0.0,
        "retries_per_success": conflicts / successes if successes else float("nan"),
        "puts_per_second": (successes + conflicts) / elapsed if elapsed > 0 else 0.0,
        # 100% = one core. The rest of the machine's use is the database server (PostgreSQL).
        "server_cpu_percent": 100 * server_cpu / elapsed if elapsed > 0 else 0.0,
        "client_cpu_percent": 100 * client_cpu / elapsed if elapsed > 0 else 0.0,
        "machine_busy_percent": 100 * machine_busy / elapsed if elapsed > 0 else 0.0,
    }


def run(options: Any) -> dict[str, Any]:
    backends = [name.strip() for name in options.databases.split(",") if name.strip()]
    print(
        f"\nB5 settings contention: {options.writers} writers x {options.increments} If-Match increments of "
        f"{NAMESPACE}.{KEY} (GET, PUT, on 412 retry from `current`), keep-alive connections; "
        f"backends {', '.join(backends)}; nothing pinned",
        flush=True,
    )
    results: dict[str, Any] = {}
    with Servers(pin=False) as servers:
        for backend in backends:
            if backend == "sqlite":
                target = servers.synthorg()
            elif backend == "postgresql":
                try:
                    url = servers.postgres("bench_settings")
                except RuntimeError as error:  # no server binaries, or initdb refused
                    print(f"  postgresql skipped: {error}", flush=True)
                    continue
                target = servers.synthorg(database_url=url)
            else:
                raise SystemExit(f"B5: unknown backend {backend!r} (sqlite, postgresql)")
            try:
                result = asyncio.run(contend(target, options.writers, options.increments))
            finally:
                servers.stop(target)
            results[backend] = result
            print(
                f"  {backend:<10} {result['successes']} increments in {result['seconds']:.1f} s: "
                f"{result['writes_per_second']:.0f} writes/s, "
                f"{result['retries_per_success']:.2f} retries per success; "
                f"value {result['start_value']:g} -> {result['end_value']:g}, "
                f"lost updates {result['lost_updates']:g}"
                + (f"; other answers {result['other_answers']}" if result["other_answers"] else "")
                + ("" if result["complete"] else "; INCOMPLETE (deadline or attempt cap)"),
                flush=True,
            )
    rows = [
        [
            backend,
            r["successes"],
            r["seconds"],
            r["writes_per_second"],
            r["conflicts_412"],
            r["retries_per_success"],
            r["puts_per_second"],
            r["lost_updates"],
            f"{r['server_cpu_percent']:.0f}%",
            f"{r['client_cpu_percent']:.0f}%",
            f"{r['machine_busy_percent']:.0f}%",
            ", ".join(f"{k}: {v}" for k, v in r["other_answers"].items()) or "-",
        ]
        for backend, r in results.items()
    ]
    print()
    print(
        table(
            [
                "database",
                "successes",
                "seconds",
                "writes/s",
                "412s",
                "retries/success",
                "PUTs/s",
                "lost",
                "server CPU",
                "client CPU",
                "machine",
                "other",
            ],
            rows,
        )
    )
    lost = {backend: r["lost_updates"] for backend, r in results.items()}
    met = all(value == 0 for value in lost.values()) and all(r["complete"] for r in results.values())
    print(f"\nlost updates {lost}: {'met' if met else 'NOT met'} (goal: zero, every increment made)")
    return results
