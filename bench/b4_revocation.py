"""B4: from revoking a session to its WebSocket closing with 4001, on one server process.

Members are created by the admin and log in `SESSIONS_PER_USER` times each (below the default
`auth.max_sessions_per_user` of 10, so no login evicts an older session); every session opens
one WebSocket with `Authorization: Bearer <its JWT>` and subscribes to `lab`, so it is known to
the hub. Then, one session at a time:

- API: the admin sends `DELETE /api/v1/auth/sessions/{id}` on a keep-alive connection; measured
  from just before the request is written to the arrival of the close frame (code 4001) on that
  session's socket, both in this process on one clock. `--revocations` sessions, 10 ms apart:
  the first half on sockets open (and idle) since set-up, the second half on sockets opened and
  subscribed just before the revocation, as a browser tab that has just connected. The two are
  reported apart because they differ in one thing, whether the server's last small write on
  that TCP connection is still unacknowledged (Nagle's algorithm then holds the close frame).
- Command line: `python -m synthorg_tornado sessions revoke SESSION_ID --config ...`, a separate
  process writing to the database; the running server sees it through its change feed, which
  polls twice a second. Measured from the command's start and from its exit (its write is
  committed by then) to the close frame. `--cli-revocations` sessions.

Nothing is pinned but the server (first CPU): this process is idle while it waits for a close.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
from typing import Any

from bench.accounts import Login, admin_headers, sessions_for
from bench.loadgen import percentile
from bench.report import table, verdict
from bench.servers import Servers, Target, raise_open_files
from bench.wsclient import HttpConnection, WebSocketClient, open_socket, subscribe
from synthorg_tornado.auth.sync import POLL_SECONDS  # the period of the server's change feed

GOAL_P99_MS = 100.0
SESSIONS_PER_USER = 8
REVOKED = 4001
CLOSE_TIMEOUT = 5.0
CLI_TIMEOUT = 60.0
GAP_SECONDS = 0.01
SUBSCRIBE = json.dumps({"action": "subscribe", "channels": ["lab"]})


def summarise(latencies_ms: list[float]) -> dict[str, float]:
    ordered = sorted(latencies_ms)
    return {
        "count": len(ordered),
        "p50_ms": percentile(ordered, 0.50),
        "p99_ms": percentile(ordered, 0.99),
        "max_ms": ordered[-1] if ordered else float("nan"),
        "min_ms": ordered[0] if ordered else float("nan"),
    }


async def open_sockets(target: Target, logins: list[Login]) -> list[WebSocketClient]:
    gate = asyncio.Semaphore(50)

    async def one(login: Login) -> WebSocketClient:
        async with gate:
            client = await open_socket(target.base_url + "api/v1/ws", login.headers)
            await subscribe(client, SUBSCRIBE)
            return client

    return list(await asyncio.gather(*(one(login) for login in logins)))


async def wait_closed(client: WebSocketClient) -> int | None:
    try:
        return await asyncio.wait_for(asyncio.shield(client.closed), CLOSE_TIMEOUT)
    except TimeoutError:
        return None


async def revoke_with_api(
    target: Target, pairs: list[tuple[Login, WebSocketClient | None]], sockets_on: Target | None = None
) -> dict[str, Any]:
    """Revoke each session on `target`; a None socket is opened (and subscribed) just before its
    revocation, on `sockets_on` (another process of the lab, B4x) or on `target`."""
    admin = HttpConnection(target.base_url)
    await admin.connect()
    headers = admin_headers(target)
    close_ms, reply_ms, problems = [], [], []
    for login, open_client in pairs:
        client = open_client or (await open_sockets(sockets_on or target, [login]))[0]
        if client.closed.done():
            problems.append(f"{login.session_id[:8]}: closed early with {client.closed.result()}")
            continue
        started = time.monotonic()
        status, _, body = await admin.request("DELETE", f"/api/v1/auth/sessions/{login.session_id}", headers)
        reply_ms.append(1000 * (time.monotonic() - started))
        if status != 204:
            problems.append(f"{login.session_id[:8]}: DELETE answered {status} {body[:100]!r}")
        code = await wait_closed(client)
        if code != REVOKED:
            problems.append(f"{login.session_id[:8]}: close code {code}")
        else:
            close_ms.append(1000 * (client.closed_at - started))
        await asyncio.sleep(GAP_SECONDS)
        client.abort()
    await admin.close()
    return {
        "close": summarise(close_ms),
        "close_ms": close_ms,
        "reply": summarise(reply_ms),
        "problems": problems,
    }


async def revoke_with_cli(target: Target, pairs: list[tuple[Login, WebSocketClient]]) -> dict[str, Any]:
    from_start, from_exit, command_ms, problems = [], [], [], []
    config_path = str(target.extra["config_path"])
    jitter = random.Random(4001)
    for login, client in pairs:
        # The feed polls on a fixed period: a random pause keeps the start of each command from
        # falling at the same point of that period every time (it would, one after the other).
        await asyncio.sleep(jitter.uniform(0.0, POLL_SECONDS))
        started = time.monotonic()
        command = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "synthorg_tornado",
            "sessions",
            "revoke",
            "--config",
            config_path,
            "--",  # a session id may begin with "-" (base64url); without this argparse rejects it
            login.session_id,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            output, _ = await asyncio.wait_for(command.communicate(), CLI_TIMEOUT)
        except TimeoutError:
            command.kill()
            await command.wait()
            problems.append(f"{login.session_id[:8]}: the command ran over {CLI_TIMEOUT:g} s")
            continue
        exited = time.monotonic()
        command_ms.append(1000 * (exited - started))
        if command.returncode != 0:
            problems.append(f"{login.session_id[:8]}: exit {command.returncode}: {output[-200:]!r}")
        code = await wait_closed(client)
        if code != REVOKED:
            problems.append(f"{login.session_id[:8]}: close code {code}")
            continue
        from_start.append(1000 * (client.closed_at - started))
        from_exit.append(1000 * (client.closed_at - exited))
    return {
        "close_from_start": summarise(from_start),
        "close_from_exit": summarise(from_exit),
        "command": summarise(command_ms),
        "problems": problems,
    }


async def measure(target: Target, options: Any) -> dict[str, Any]:
    total = options.revocations + options.cli_revocations
    users = -(-total // SESSIONS_PER_USER)
    logins = sessions_for(target, users, SESSIONS_PER_USER, prefix="rev")[:total]
    idle_count = options.revocations // 2
    fresh = logins[idle_count : options.revocations]  # their sockets open just before revocation
    at_setup = logins[:idle_count] + logins[options.revocations :]
    started = time.monotonic()
    clients = await open_sockets(target, at_setup)
    opened_in = time.monotonic() - started
    print(
        f"  {total} sessions of {users} members; {len(clients)} sockets open at set-up in {opened_in:.1f} s, "
        f"{len(fresh)} opened one by one just before their revocation",
        flush=True,
    )
    try:
        idle = await revoke_with_api(
            target, list(zip(logins[:idle_count], clients[:idle_count], strict=True))
        )
        just_opened = await revoke_with_api(target, [(login, None) for login in fresh])
        every = summarise(idle.pop("close_ms") + just_opened.pop("close_ms"))
        api = {"close": every, "idle_socket": idle, "just_opened_socket": just_opened}
        for label, part in (("socket idle since set-up", idle), ("socket opened just before", just_opened)):
            close = part["close"]
            print(
                f"  API, {label}: {close['count']} revocations, close p50 {close['p50_ms']:.1f} ms, "
                f"p99 {close['p99_ms']:.1f} ms, max {close['max_ms']:.1f} ms"
                + (f"; PROBLEMS {part['problems'][:5]}" if part["problems"] else ""),
                flush=True,
            )
        cli = await revoke_with_cli(
            target, list(zip(logins[options.revocations :], clients[idle_count:], strict=True))
        )
        print(
            f"  command line: {cli['close_from_start']['count']} revocations, close p99 "
            f"{cli['close_from_start']['p99_ms']:.0f} ms from the command's start, "
            f"{cli['close_from_exit']['p99_ms']:.0f} ms from its exit"
            + (f"; PROBLEMS {cli['problems'][:5]}" if cli["problems"] else ""),
            flush=True,
        )
    finally:
        for client in clients:
            client.abort()
    return {"api": api, "cli": cli, "sessions": total, "users": users}


def run(options: Any) -> dict[str, Any]:
    total = options.revocations + options.cli_revocations
    raise_open_files(total + 1024)
    print(
        f"\nB4 revocation -> socket closed (4001): {options.revocations} sessions revoked through "
        f"DELETE /api/v1/auth/sessions/{{id}} ({1000 * GAP_SECONDS:g} ms apart), then "
        f"{options.cli_revocations} with `sessions revoke` on the command line; one server process, SQLite",
        flush=True,
    )
    with Servers() as servers:
        target = servers.synthorg()
        results = asyncio.run(measure(target, options))
    api, cli = results["api"], results["cli"]
    rows = [
        ["API: DELETE -> close, socket idle since set-up", *figures(api["idle_socket"]["close"])],
        ["API: DELETE -> close, socket opened just before", *figures(api["just_opened_socket"]["close"])],
        ["API: DELETE -> close, all", *figures(api["close"])],
        ["API: DELETE -> 204 reply, socket idle", *figures(api["idle_socket"]["reply"])],
        ["CLI: command start -> close frame", *figures(cli["close_from_start"])],
        ["CLI: command exit -> close frame", *figures(cli["close_from_exit"])],
        ["CLI: command run time", *figures(cli["command"])],
    ]
    print()
    print(table(["measure", "count", "min ms", "p50 ms", "p99 ms", "max ms"], rows))
    p99 = api["close"]["p99_ms"]
    print(f"\nAPI revocation -> close p99 = {p99:.1f} ms  {verdict(p99, GOAL_P99_MS, False)}")
    print(
        f"command-line revocation -> close p99 = {cli['close_from_exit']['p99_ms']:.0f} ms after the "
        f"command exits ({cli['close_from_start']['p99_ms']:.0f} ms after it starts); SPEC section 4 "
        "asks for sockets closed within one second"
    )
    return results


def figures(summary: dict[str, float]) -> list[Any]:
    return [summary["count"], summary["min_ms"], summary["p50_ms"], summary["p99_ms"], summary["max_ms"]]
