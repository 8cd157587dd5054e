"""B6: server memory per idle authenticated WebSocket, at `--idle-sockets` connections.

synthorg-tornado runs with its default limits: `--idle-sockets / 16` members are created by the
admin and log in once each, and each session opens 16 sockets with `Authorization: Bearer <JWT>`
(`websocket.max_connections_per_user` is 20). The sockets only connect (each is subscribed to its
own `user:` channel by the server, nothing else) and then stay idle.

1. Every account and session exists before the first reading, so only the sockets are counted.
2. A warm-up of `WARMUP_SOCKETS` sockets opens and closes, so code paths that allocate once
   (imports, caches) are not charged to the measured sockets.
3. `VmRSS` of the server from /proc/PID/status, then all the sockets open (one client process
   on the other CPU, 50 handshakes at a time), `SETTLE_SECONDS` of idling, `VmRSS` again.
   Per socket = the difference / the sockets open.

The bare Tornado server of B3 goes through the same steps as a reference: what a WebSocket costs
in Tornado itself, with no authentication and no hub. The open-files limit is raised for the
benchmark's processes only.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from bench.accounts import admin_headers, sessions_for
from bench.report import table, verdict
from bench.servers import Servers, Target, cpu_split, raise_open_files
from bench.wire import fetch
from bench.wsload import SocketsProcess

GOAL_KB = 30.0  # kB of 1,000 bytes: the stricter reading of "30 KB" (29.3 KiB)
SOCKETS_PER_SESSION = 16
WARMUP_SOCKETS = 32
SETTLE_SECONDS = 3.0


def memory_kb(pid: int) -> dict[str, int]:
    """VmRSS, RssAnon and VmHWM of a process, in KiB."""
    wanted = {"VmRSS", "RssAnon", "VmHWM"}
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in wanted:
            values[name] = int(rest.split()[0])
    return values


def open_websockets(target: Target) -> int | None:
    """`synthorg_open_websockets` from /metrics (admin); None for the bare server."""
    if target.name != "synthorg-tornado":
        return None
    reply = fetch(target.base_url + "metrics", headers=admin_headers(target))
    for line in reply.body.decode().splitlines():
        if line.startswith("synthorg_open_websockets"):
            return int(float(line.split()[-1]))
    return None


def open_and_hold(
    target: Target, headers: list[dict[str, str]], client_cpus: set[int] | None
) -> SocketsProcess:
    path = "api/v1/ws" if target.name == "synthorg-tornado" else "ws"
    return SocketsProcess(
        {
            "url": target.base_url + path,
            "headers": headers,
            "concurrency": 50,
            "open_files": len(headers) + 1024,
            "deadline": 240,
        },
        client_cpus,
    )


def measure(target: Target, count: int, client_cpus: set[int] | None) -> dict[str, Any]:
    if target.name == "synthorg-tornado":
        users = -(-count // SOCKETS_PER_SESSION)
        logins = sessions_for(target, users, 1, prefix="idle")
        headers = [logins[n // SOCKETS_PER_SESSION].headers for n in range(count)]
    else:
        users, headers = 0, [{} for _ in range(count)]
    warmup = open_and_hold(target, headers[:WARMUP_SOCKETS], client_cpus)
    warmup.report()
    time.sleep(SETTLE_SECONDS)
    before = memory_kb(target.process.pid)
    holder = open_and_hold(target, headers, client_cpus)
    try:
        time.sleep(SETTLE_SECONDS)
        status = holder.ask("status")
        after = memory_kb(target.process.pid)
        # The server's own count (read after the memory, so its cost is not measured).
        server_count = open_websockets(target)
    finally:
        holder.stop()
    still_open = holder.ready["opened"] - sum(status["closed"].values())
    delta = after["VmRSS"] - before["VmRSS"]
    result = {
        "users": users,
        "opened": holder.ready["opened"],
        "failed": holder.ready["failed"],
        "closed_by_server": status["closed"],
        "still_open": still_open,
        "server_counts_open": server_count,
        "open_seconds": holder.ready["open_seconds"],
        "before_kb": before,
        "after_kb": after,
        "delta_kb": delta,
        "kb_per_socket": delta / still_open if still_open else float("nan"),
        "anon_kb_per_socket": (after["RssAnon"] - before["RssAnon"]) / still_open
        if still_open
        else float("nan"),
    }
    print(
        f"  {target.name:<17} {still_open} sockets open (in {result['open_seconds']:.1f} s): VmRSS "
        f"{before['VmRSS'] / 1024:.1f} -> {after['VmRSS'] / 1024:.1f} MiB, "
        f"{result['kb_per_socket']:.1f} KiB per socket"
        + (f" (the server counts {server_count})" if server_count is not None else "")
        + (f"; FAILED {result['failed']}" if result["failed"] else "")
        + (f"; closed by the server {status['closed']}" if status["closed"] else ""),
        flush=True,
    )
    return result


def run(options: Any) -> dict[str, Any]:
    count = options.idle_sockets
    server_cpus, client_cpus = cpu_split()
    raise_open_files(count + 1024)
    print(
        f"\nB6 memory: server VmRSS before and after {count} idle WebSockets "
        f"({SETTLE_SECONDS:g} s settle, {WARMUP_SOCKETS} warm-up sockets first); "
        f"server on CPU {sorted(server_cpus or [])}, client on CPU {sorted(client_cpus or [])}",
        flush=True,
    )
    results: dict[str, Any] = {"sockets": count}
    with Servers(open_files=count + 1024) as servers:
        for start in (servers.synthorg, servers.bare_broadcast):
            target = start()
            try:
                results[target.name] = measure(target, count, client_cpus)
            finally:
                servers.stop(target)
    rows = [
        [
            name,
            r["still_open"],
            r["before_kb"]["VmRSS"] / 1024,
            r["after_kb"]["VmRSS"] / 1024,
            r["kb_per_socket"],
            r["anon_kb_per_socket"],
        ]
        for name, r in ((n, results[n]) for n in ("synthorg-tornado", "bare Tornado"))
    ]
    print()
    print(
        table(
            ["target", "sockets", "VmRSS before MiB", "VmRSS after MiB", "KiB/socket", "anon KiB/socket"],
            rows,
        )
    )
    ours = results["synthorg-tornado"]["kb_per_socket"]
    results["synthorg_kilobytes_per_socket"] = ours * 1.024
    print(
        f"\nsynthorg-tornado per idle socket = {ours:.1f} KiB = {ours * 1.024:.1f} kB  "
        f"{verdict(ours * 1.024, GOAL_KB, False)}"
    )
    return results
