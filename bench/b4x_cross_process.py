"""B4x: B4 across processes, revocation on A closing a socket on B, and A's settings reaching B.

Two server processes of one lab on a throwaway PostgreSQL cluster: A on 127.0.0.1 (it ran the
setup) and B on 127.0.0.2, one database and one signing secret, as two hosts (tests/scale_out.py's
set-up). Nothing is pinned: each process may take a core, as on two hosts.

- Revocation: members log in on A (`SESSIONS_PER_USER` times each, as in B4); each session's
  socket is opened on **B** (Bearer JWT, subscribed to `lab`). Then, one session at a time, the
  admin sends `DELETE /api/v1/auth/sessions/{id}` to **A** on a keep-alive connection, and the time
  runs from just before the request is written until the close frame (4001) arrives on B. B learns
  of it only through the bus: A commits the revocation with its `bus_events` row, NOTIFY wakes B's
  listener, B reads the row and closes the socket. `--revocations` sessions, 10 ms apart, half on
  sockets idle since set-up, half on sockets opened just before, as in B4 (B4's code does both).
- Settings: one member holds a socket on A and one on B, both subscribed to `settings`. The admin
  sends `--setting-updates` `PUT /api/v1/settings/budget/monthly_limit` to A with `If-Match: *`,
  each with a new value, 10 ms apart; the time runs from just before the request is written
  until the `setting.updated` event with that value arrives on each socket. A's own socket is the
  reference: same process, no bus round trip.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from typing import Any

from bench.accounts import admin_headers, log_in, sessions_for
from bench.b4_revocation import (
    GAP_SECONDS,
    SESSIONS_PER_USER,
    figures,
    open_sockets,
    revoke_with_api,
    summarise,
)
from bench.report import table, verdict
from bench.servers import Servers, Target, raise_open_files
from bench.wsclient import HttpConnection, WebSocketClient, open_socket, subscribe

GOAL_P99_MS = 250.0
AIM_P99_MS = 50.0
EVENT_TIMEOUT = 5.0
SETTING_PATH = "/api/v1/settings/budget/monthly_limit"
FIRST_VALUE = 1_000_000
SETTING_EVENT = re.compile(rb'"event_type":"setting\.updated".*?"value":([0-9.eE+-]+)')


class SettingWatcher:
    """A socket subscribed to `settings` that stamps each `setting.updated` by its value."""

    def __init__(self) -> None:
        self.arrivals: dict[float, float] = {}
        self.client: WebSocketClient | None = None

    def on_text(self, _client: WebSocketClient, payload: bytes, now: float) -> None:
        match = SETTING_EVENT.search(payload)
        if match:
            self.arrivals.setdefault(float(match.group(1)), now)

    async def open(self, server: Target, headers: dict[str, str]) -> SettingWatcher:
        self.client = await open_socket(server.base_url + "api/v1/ws", headers, self.on_text)
        await subscribe(self.client, json.dumps({"action": "subscribe", "channels": ["settings"]}))
        return self

    async def arrival(self, value: float) -> float | None:
        deadline = time.monotonic() + EVENT_TIMEOUT
        while value not in self.arrivals and time.monotonic() < deadline:
            await asyncio.sleep(0.001)
        return self.arrivals.get(value)


async def settings_delivery(a: Target, b: Target, updates: int) -> dict[str, Any]:
    (member,) = sessions_for(a, 1, 1, prefix="setx")
    second = log_in(a, member.username)  # one session per socket, as two tabs would have
    on_a = await SettingWatcher().open(a, member.headers)
    on_b = await SettingWatcher().open(b, second.headers)
    writer = HttpConnection(a.base_url)
    await writer.connect()
    headers = {**admin_headers(a), "If-Match": "*"}
    latencies: dict[str, list[float]] = {"A": [], "B": []}
    reply_ms: list[float] = []
    problems: list[str] = []
    try:
        for number in range(updates):
            value = float(FIRST_VALUE + number)
            started = time.monotonic()
            status, _, body = await writer.request(
                "PUT", SETTING_PATH, headers, json.dumps({"value": value}).encode()
            )
            reply_ms.append(1000 * (time.monotonic() - started))
            if status != 200:
                problems.append(f"PUT answered {status} {body[:100]!r}")
                continue
            for name, watcher in (("A", on_a), ("B", on_b)):
                arrived = await watcher.arrival(value)
                if arrived is None:
                    problems.append(f"{name}: no setting.updated for {value:g}")
                else:
                    latencies[name].append(1000 * (arrived - started))
            await asyncio.sleep(GAP_SECONDS)
    finally:
        await writer.close()
        for watcher in (on_a, on_b):
            if watcher.client is not None:
                watcher.client.abort()
    return {
        "on_a": summarise(latencies["A"]),
        "on_b": summarise(latencies["B"]),
        "reply": summarise(reply_ms),
        "problems": problems,
    }


async def measure(a: Target, b: Target, options: Any) -> dict[str, Any]:
    total = options.revocations
    users = -(-total // SESSIONS_PER_USER)
    logins = sessions_for(a, users, SESSIONS_PER_USER, prefix="revx")[:total]
    idle_count = total // 2
    clients = await open_sockets(b, logins[:idle_count])
    print(
        f"  {total} sessions of {users} members logged in on A; {len(clients)} sockets open on B at "
        f"set-up, {total - idle_count} opened on B one by one just before their revocation",
        flush=True,
    )
    try:
        idle = await revoke_with_api(a, list(zip(logins[:idle_count], clients, strict=True)))
        fresh = await revoke_with_api(a, [(login, None) for login in logins[idle_count:]], sockets_on=b)
    finally:
        for client in clients:
            client.abort()
    every = summarise(idle.pop("close_ms") + fresh.pop("close_ms"))
    for label, part in (("socket idle since set-up", idle), ("socket opened just before", fresh)):
        close = part["close"]
        print(
            f"  DELETE on A -> close on B, {label}: {close['count']} revocations, p50 "
            f"{close['p50_ms']:.1f} ms, p99 {close['p99_ms']:.1f} ms, max {close['max_ms']:.1f} ms"
            + (f"; PROBLEMS {part['problems'][:5]}" if part["problems"] else ""),
            flush=True,
        )
    settings = await settings_delivery(a, b, options.setting_updates)
    print(
        f"  PUT on A -> setting.updated: {settings['on_b']['count']} on B, p99 "
        f"{settings['on_b']['p99_ms']:.1f} ms; on A itself p99 {settings['on_a']['p99_ms']:.1f} ms"
        + (f"; PROBLEMS {settings['problems'][:5]}" if settings["problems"] else ""),
        flush=True,
    )
    return {
        "close": every,
        "idle_socket": idle,
        "just_opened_socket": fresh,
        "settings": settings,
        "sessions": total,
        "users": users,
    }


def run(options: Any) -> dict[str, Any]:
    raise_open_files(options.revocations + 1024)
    print(
        f"\nB4x across processes: {options.revocations} sessions revoked with DELETE on A "
        f"({1000 * GAP_SECONDS:g} ms apart), their sockets on B; then {options.setting_updates} "
        "setting writes on A (If-Match: *), watched on A and on B; PostgreSQL, nothing pinned",
        flush=True,
    )
    with Servers(pin=False) as servers:
        try:
            url = servers.postgres("bench_cross_process")
        except RuntimeError as error:
            print(f"  B4x skipped: {error}")
            return {"skipped": str(error)}
        a = servers.synthorg(database_url=url)
        b = servers.synthorg(join=a, server={"host": "127.0.0.2"})
        results = asyncio.run(measure(a, b, options))
    settings = results["settings"]
    rows = [
        ["DELETE on A -> close on B, socket idle", *figures(results["idle_socket"]["close"])],
        ["DELETE on A -> close on B, socket just opened", *figures(results["just_opened_socket"]["close"])],
        ["DELETE on A -> close on B, all", *figures(results["close"])],
        ["DELETE on A -> 204 reply, socket idle", *figures(results["idle_socket"]["reply"])],
        ["PUT on A -> setting.updated on B", *figures(settings["on_b"])],
        ["PUT on A -> setting.updated on A (same process)", *figures(settings["on_a"])],
        ["PUT on A -> 200 reply", *figures(settings["reply"])],
    ]
    print()
    print(table(["measure", "count", "min ms", "p50 ms", "p99 ms", "max ms"], rows))
    p99 = results["close"]["p99_ms"]
    print(
        f"\nrevocation on A -> close on B p99 = {p99:.1f} ms  {verdict(p99, GOAL_P99_MS, False)}; "
        f"aim {verdict(p99, AIM_P99_MS, False)}"
    )
    print(f"setting.updated A -> B p99 = {settings['on_b']['p99_ms']:.1f} ms")
    return results
