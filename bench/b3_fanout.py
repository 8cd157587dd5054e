"""B3: WebSocket fan-out, synthorg-tornado's hub against a bare Tornado broadcast loop.

Both servers run side by side, each with `--fanout-sockets` WebSockets subscribed to the `lab`
channel (one client process per server). A publisher process posts events at a steady rate,
each payload carrying the moment it was sent; the client stamps every arrival and counts per
phase. After a 1 s warm-up, each target runs two phases per round, and the targets take turns,
in reverse order in the second round (`--fanout-rounds`):

- `steady`: `--fanout-rate` events/s for `--fanout-duration` s, a load both servers carry: its
  p99 publish-to-receive latency is the latency figure (at 2,000 sockets, mostly the time one
  event takes to reach the last socket, plus any pause of the server).
- `saturate`: `--fanout-saturate-rate` events/s asked for, more than either server can fan out,
  with two posts in flight at most: the delivered messages per second there are the capacity
  figure.

synthorg-tornado runs with its default limits, except the per-user publish rate (the admin publishes
every event here; see `bench/servers.py`). Its sockets authenticate at the handshake with
`Authorization: Bearer <session JWT>`: `--fanout-sockets / 16` members are created by the admin
and log in once each, and each session opens 16 sockets (`websocket.max_connections_per_user` is
20). Events go through `POST /api/v1/events {channel: "lab", ...}` with the admin's token. The
bare server (`bench/bare_broadcast.py`) takes the same posts on `/publish` and sends events of
the same shape and size.

The servers run on the first CPU, the clients and the publisher on the second. The server's own
CPU time per delivered message is reported too: it moves least when the machine is noisy.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from statistics import mean
from typing import Any

from bench.accounts import admin_headers, sessions_for
from bench.clients import cpu_seconds, cpus_busy_seconds
from bench.report import table, verdict
from bench.servers import Servers, Target, cpu_split, raise_open_files
from bench.wsload import SocketsProcess, publish

GOAL_VS_BARE = 0.7
PHASES = ("steady", "saturate")
SOCKETS_PER_SESSION = 16
IN_FLIGHT = 2
SUBSCRIBE = json.dumps({"action": "subscribe", "channels": ["lab"]})
DRAIN_IDLE_SECONDS = 2.0
WARMUP_SECONDS = 1.0
DRAIN_MAX_SECONDS = 20.0
SATURATED_SERVER_CPU = 90.0  # percent of one core
BUSY_CLIENT_CPU = 80.0


def socket_headers(target: Target, sockets: int) -> list[dict[str, str]]:
    """The handshake headers of every socket: a Bearer JWT for ours, nothing for the bare server."""
    if target.name != "synthorg-tornado":
        return [{} for _ in range(sockets)]
    users = -(-sockets // SOCKETS_PER_SESSION)
    logins = sessions_for(target, users, 1, prefix="fan")
    return [logins[n // SOCKETS_PER_SESSION].headers for n in range(sockets)]


def publisher_spec(target: Target) -> dict[str, Any]:
    if target.name == "synthorg-tornado":
        return {"url": target.base_url, "path": "/api/v1/events", "headers": admin_headers(target)}
    return {"url": target.base_url, "path": "/publish", "headers": {}}


def drain(client: SocketsProcess, phase: int, expected: int) -> dict[str, Any]:
    """Wait until the client has every message of the phase, or none arrives for a while."""
    started = last_change = time.monotonic()
    last_count = -1
    while True:
        status = client.ask("status")
        count = status["counts"].get(str(phase), 0)
        now = time.monotonic()
        if count >= expected or now - last_change > DRAIN_IDLE_SECONDS or now - started > DRAIN_MAX_SECONDS:
            return status
        if count != last_count:
            last_count, last_change = count, now
        time.sleep(0.2)


@dataclass
class Side:
    """One target with its client process holding the subscribed sockets, and its phases."""

    target: Target
    client: SocketsProcess
    runs: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: {name: [] for name in PHASES})


def connect(target: Target, options: Any, client_cpus: set[int] | None) -> Side:
    sockets = options.fanout_sockets
    headers = socket_headers(target, sockets)
    ws_url = target.base_url + ("api/v1/ws" if target.name == "synthorg-tornado" else "ws")
    client = SocketsProcess(
        {
            "url": ws_url,
            "headers": headers,
            "subscribe": SUBSCRIBE,
            "concurrency": 50,
            "open_files": sockets + 1024,
            "deadline": 600,
        },
        client_cpus,
    )
    print(
        f"  {target.name:<17} {client.ready['opened']} sockets subscribed in "
        f"{client.ready['open_seconds']:.1f} s"
        + (f"; FAILED {client.ready['failed']}" if client.ready["failed"] else ""),
        flush=True,
    )
    # Warm-up (phase 0, not reported): the first events take code paths that run once.
    publish(
        {**publisher_spec(target), "rate": options.fanout_rate, "duration": WARMUP_SECONDS, "phase": 0},
        client_cpus,
    )
    drain(client, 0, 1)
    return Side(target, client)


def run_phase(
    side: Side, number: int, rate: float, duration: float, cpus: tuple[set[int] | None, set[int] | None]
) -> dict[str, Any]:
    """Publish one phase, wait for its messages, and collect what the client saw of them."""
    target, client = side.target, side.client
    server_cpus, client_cpus = cpus
    before = client.ask("status")
    cpu_before, wall_before = cpu_seconds(target.process.pid), time.monotonic()
    core_before = cpus_busy_seconds(server_cpus)
    published = publish(
        {
            **publisher_spec(target),
            "rate": rate,
            "duration": duration,
            "phase": number,
            "in_flight": IN_FLIGHT,
        },
        client_cpus,
    )
    drain(client, number, published["delivered_by_server"])
    wall = time.monotonic() - wall_before
    after = client.ask(f"phase {number}")
    server_cpu = cpu_seconds(target.process.pid) - cpu_before
    # Whatever else ran on the server's core (other processes, interrupts): noise in the figures.
    other = max(0.0, cpus_busy_seconds(server_cpus) - core_before - server_cpu) if server_cpus else 0.0
    entry = {
        "phase_number": number,
        "rate": rate,
        "duration": duration,
        "publisher": published,
        "closed": after["closed"],
        "server_cpu_seconds": server_cpu,
        "other_cpu_on_server_core_percent": 100 * other / wall,
        "client_cpu_seconds": after["client_cpu_seconds"] - before["client_cpu_seconds"],
        "wall_seconds": wall,
    }
    complete(entry, after["phase"])
    return entry


def complete(entry: dict[str, Any], stats: dict[str, Any]) -> None:
    """Add the client's view of a phase (arrivals, latencies) to what the driver measured."""
    published = entry["publisher"]
    received = stats.get("received", 0)
    window = stats.get("last_at", 0.0) - published["first_sent"]
    entry.update(
        {
            "latency": stats,
            "received": received,
            "expected": published["delivered_by_server"],
            "lost": published["delivered_by_server"] - received,
            "events_per_second": published["achieved_rate"],
            "delivered_per_second": received / window if window > 0 else 0.0,
            "server_cpu_percent": 100 * entry["server_cpu_seconds"] / entry["wall_seconds"],
            "client_cpu_percent": 100 * entry["client_cpu_seconds"] / entry["wall_seconds"],
            "server_cpu_us_per_message": 1e6 * entry["server_cpu_seconds"] / received
            if received
            else float("nan"),
        }
    )


def print_phase(name: str, phase: str, round_number: int, entry: dict[str, Any]) -> None:
    stats = entry["latency"]
    bad = {k: v for k, v in entry["publisher"]["statuses"].items() if k != "202"}
    p50, p99 = stats.get("p50_ms", float("nan")), stats.get("p99_ms", float("nan"))
    print(
        f"  round {round_number} {name:<17} {phase:<8} {entry['events_per_second']:5.1f} events/s "
        f"-> {entry['delivered_per_second']:>7,.0f} msgs/s  p50 {p50:6.1f} ms  p99 {p99:6.1f} ms"
        f"  server CPU {entry['server_cpu_percent']:3.0f}%"
        f" ({entry['server_cpu_us_per_message']:.1f} us/msg)"
        f"  client CPU {entry['client_cpu_percent']:3.0f}%"
        f"  other work on the server's core {entry['other_cpu_on_server_core_percent']:3.0f}%"
        + (f"  LOST {entry['lost']}" if entry["lost"] else "")
        + (f"  closed {entry['closed']}" if entry["closed"] else "")
        + (f"  NON-202 {bad}" if bad else ""),
        flush=True,
    )


def run(options: Any) -> dict[str, Any]:
    server_cpus, client_cpus = cpu_split()
    sockets, rounds = options.fanout_sockets, options.fanout_rounds
    raise_open_files(sockets + 1024)
    print(
        f"\nB3 WebSocket fan-out: {sockets} sockets subscribed to `lab`; steady "
        f"{options.fanout_rate:g} events/s for {options.fanout_duration:g} s, then saturate "
        f"{options.fanout_saturate_rate:g} events/s for {options.fanout_saturate_duration:g} s "
        f"({IN_FLIGHT} posts in flight); {rounds} rounds, targets alternating;"
        f"\n   servers on CPU {sorted(server_cpus or [])}, "
        f"clients and publisher on CPU {sorted(client_cpus or [])}",
        flush=True,
    )
    phases = {
        "steady": (options.fanout_rate, options.fanout_duration),
        "saturate": (options.fanout_saturate_rate, options.fanout_saturate_duration),
    }
    results: dict[str, Any] = {"sockets": sockets, "in_flight": IN_FLIGHT, "rounds": rounds}
    with Servers(open_files=sockets + 1024) as servers:
        sides = [connect(servers.synthorg(), options, client_cpus)]
        try:
            sides.append(connect(servers.bare_broadcast(), options, client_cpus))
            for round_number in range(rounds):
                for side in sides if round_number % 2 == 0 else sides[::-1]:
                    for index, (phase, (rate, duration)) in enumerate(phases.items()):
                        number = 1 + round_number * len(phases) + index
                        entry = run_phase(side, number, rate, duration, (server_cpus, client_cpus))
                        side.runs[phase].append(entry)
                        print_phase(side.target.name, phase, round_number + 1, entry)
            for side in sides:
                final = side.client.report()
                results[side.target.name] = {
                    "open": side.client.ready,
                    "runs": side.runs,
                    "closed_at_end": final["closed"],
                }
        finally:
            for side in sides:
                side.client.stop()
    means = {
        name: {
            phase: {
                key: mean(entry[key] for entry in results[name]["runs"][phase])
                for key in ("events_per_second", "delivered_per_second", "server_cpu_us_per_message")
            }
            | {
                key: mean(entry["latency"].get(key, float("nan")) for entry in results[name]["runs"][phase])
                for key in ("p50_ms", "p99_ms", "max_ms")
            }
            | {
                "lost": sum(entry["lost"] for entry in results[name]["runs"][phase]),
                "server_cpu_percent": mean(e["server_cpu_percent"] for e in results[name]["runs"][phase]),
                "client_cpu_percent": max(e["client_cpu_percent"] for e in results[name]["runs"][phase]),
                "other_cpu_on_server_core_percent": max(
                    e["other_cpu_on_server_core_percent"] for e in results[name]["runs"][phase]
                ),
            }
            for phase in phases
        }
        for name in ("synthorg-tornado", "bare Tornado")
    }
    results["means"] = means
    rows = []
    for name in ("synthorg-tornado", "bare Tornado"):
        for phase in phases:
            entry = means[name][phase]
            rows.append(
                [
                    f"{name} {phase}",
                    entry["events_per_second"],
                    entry["delivered_per_second"],
                    entry["lost"],
                    entry["p50_ms"],
                    entry["p99_ms"],
                    entry["max_ms"],
                    f"{entry['server_cpu_percent']:.0f}%",
                    entry["server_cpu_us_per_message"],
                    f"{entry['client_cpu_percent']:.0f}%",
                    f"{entry['other_cpu_on_server_core_percent']:.0f}%",
                ]
            )
    print(f"\nmeans of {rounds} rounds (client CPU and other work on the server's core: the highest)")
    print(
        table(
            [
                "target / phase",
                "events/s",
                "msgs/s",
                "lost",
                "p50 ms",
                "p99 ms",
                "max ms",
                "server CPU",
                "CPU us/msg",
                "client CPU",
                "max other",
            ],
            rows,
        )
    )
    ours, bare = means["synthorg-tornado"], means["bare Tornado"]
    ratios = {
        "saturate_msgs_per_second": ours["saturate"]["delivered_per_second"]
        / bare["saturate"]["delivered_per_second"],
        "steady_msgs_per_second": ours["steady"]["delivered_per_second"]
        / bare["steady"]["delivered_per_second"],
        # Latency: bare / ours, so that, like throughput, 1.0 is parity and higher is better.
        "steady_p99_latency": bare["steady"]["p99_ms"] / ours["steady"]["p99_ms"],
        "saturate_cpu_per_message": bare["saturate"]["server_cpu_us_per_message"]
        / ours["saturate"]["server_cpu_us_per_message"],
    }
    results["ratios"] = ratios
    print()
    for name in means:
        saturated = means[name]["saturate"]
        if saturated["server_cpu_percent"] < SATURATED_SERVER_CPU:
            print(
                f"WARNING: {name} was not saturated ({saturated['server_cpu_percent']:.0f}% CPU): "
                "raise --fanout-saturate-rate, the capacity figure is a floor"
            )
        if saturated["client_cpu_percent"] > BUSY_CLIENT_CPU:
            print(
                f"WARNING: the client of {name} used {saturated['client_cpu_percent']:.0f}% of its core: "
                "it may have been the limit"
            )
    print(
        f"delivered msgs/s at saturation, synthorg / bare = {ratios['saturate_msgs_per_second']:.2f}  "
        f"{verdict(ratios['saturate_msgs_per_second'], GOAL_VS_BARE, True)}"
    )
    print(
        f"steady p99 latency, bare / synthorg = {ratios['steady_p99_latency']:.2f}  "
        f"{verdict(ratios['steady_p99_latency'], GOAL_VS_BARE, True)}"
        f"  (synthorg {ours['steady']['p99_ms']:.1f} ms, bare {bare['steady']['p99_ms']:.1f} ms)"
    )
    print(f"server CPU per message at saturation, bare / synthorg = {ratios['saturate_cpu_per_message']:.2f}")
    return results
