"""B3x: B3's fan-out with the 2,000 sockets split across two processes, events published on one.

Two labs on one throwaway PostgreSQL cluster, each in its own database, side by side:

- `1 process`: one server process holding all `--fanout-sockets` sockets;
- `A + B`: two processes of one lab (A on 127.0.0.1, B on 127.0.0.2, one database, one signing
  secret), half of the sockets on each. Events are posted to A; B hears of each through the bus
  (A's `bus_events` row, NOTIFY, B's listener reads the row) and fans it out to its half.

Both are on PostgreSQL, so what differs is the bus round trip and the split, not the database.
Everything else is B3's (bench/b3_fanout.py): members log in once each and open 16 sockets per
session, one client process (bench/wsload.py) holds every socket of a layout, the publisher is a
process of its own, and each round runs a `steady` phase (`--fanout-rate` events/s, the latency
figure) and a `saturate` phase (`--fanout-saturate-rate` asked for, two posts in flight, the
capacity figure); layouts take turns, in reverse order in the second round. `POST /api/v1/events`
reports only the sockets of the process it reached, so the messages expected are the events
accepted (202) times the sockets open.

The run goes through two CPU placements (`--fanout-placements`):

- `pinned`: every server process on the first CPU, clients and publisher on the second, as in
  B3. Two processes then share the one core a single process has: the comparison is the cost of
  coordinating (CPU per message, latency), not what a second core buys.
- `unpinned`: nothing pinned, so A and B may take a core each, beside the client, the publisher
  and PostgreSQL: whether the split raises capacity on this 2-core machine.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from statistics import mean
from typing import Any

from bench.b3_fanout import (
    IN_FLIGHT,
    PHASES,
    SATURATED_SERVER_CPU,
    SUBSCRIBE,
    WARMUP_SECONDS,
    complete,
    drain,
    print_phase,
    publisher_spec,
    socket_headers,
)
from bench.clients import cpu_seconds, cpus_busy_seconds, tree_cpu_seconds
from bench.report import table
from bench.servers import Servers, Target, cpu_split, raise_open_files
from bench.wsload import SocketsProcess, publish

LAYOUTS = ("1 process", "A + B")
PLACEMENTS = ("pinned", "unpinned")


@dataclass
class Layout:
    """Server processes holding the sockets, the one events are posted to, and the client."""

    name: str
    publisher: Target
    holders: list[Target]
    client: SocketsProcess
    sockets: int
    runs: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: {name: [] for name in PHASES})


def connect(name: str, holders: list[Target], options: Any, client_cpus: set[int] | None) -> Layout:
    """Log members in on the first holder, spread their sockets evenly over every holder."""
    sockets, publisher = options.fanout_sockets, holders[0]
    headers = socket_headers(publisher, sockets)
    share = -(-sockets // len(holders))
    urls = [holders[number // share].base_url + "api/v1/ws" for number in range(sockets)]
    client = SocketsProcess(
        {
            "url": urls[0],
            "urls": urls,
            "headers": headers,
            "subscribe": SUBSCRIBE,
            "concurrency": 50,
            "open_files": sockets + 1024,
            "deadline": 900,
        },
        client_cpus,
    )
    opened = client.ready["opened"]
    print(
        f"  {name:<10} {opened} sockets subscribed in {client.ready['open_seconds']:.1f} s"
        + (f"; FAILED {client.ready['failed']}" if client.ready["failed"] else ""),
        flush=True,
    )
    layout = Layout(name, publisher, holders, client, opened)
    # Warm-up (phase 0, not reported): the first events take code paths that run once.
    publish(
        {**publisher_spec(publisher), "rate": options.fanout_rate, "duration": WARMUP_SECONDS, "phase": 0},
        client_cpus,
    )
    drain(client, 0, opened)
    return layout


def run_phase(
    layout: Layout,
    number: int,
    rate: float,
    duration: float,
    cpus: tuple[set[int] | None, set[int] | None],
    postgres_pid: int | None,
) -> dict[str, Any]:
    server_cpus, client_cpus = cpus
    pids = [holder.process.pid for holder in layout.holders]
    before = layout.client.ask("status")
    server_before = sum(cpu_seconds(pid) for pid in pids)
    postgres_before = tree_cpu_seconds(postgres_pid) if postgres_pid else 0.0
    core_before, wall_before = cpus_busy_seconds(server_cpus), time.monotonic()
    spec = {"rate": rate, "duration": duration, "phase": number, "in_flight": IN_FLIGHT}
    published = publish({**publisher_spec(layout.publisher), **spec}, client_cpus)
    expected = published["statuses"].get("202", 0) * layout.sockets
    drain(layout.client, number, expected)
    wall = time.monotonic() - wall_before
    after = layout.client.ask(f"phase {number}")
    server_cpu = sum(cpu_seconds(pid) for pid in pids) - server_before
    other = max(0.0, cpus_busy_seconds(server_cpus) - core_before - server_cpu) if server_cpus else 0.0
    entry = {
        "phase_number": number,
        "rate": rate,
        "duration": duration,
        "publisher": published,
        "closed": after["closed"],
        "server_cpu_seconds": server_cpu,
        "postgres_cpu_seconds": (tree_cpu_seconds(postgres_pid) - postgres_before) if postgres_pid else 0.0,
        "other_cpu_on_server_core_percent": 100 * other / wall,
        "client_cpu_seconds": after["client_cpu_seconds"] - before["client_cpu_seconds"],
        "wall_seconds": wall,
    }
    complete(entry, after["phase"])
    # The publisher's count is of A's sockets only; every socket of the layout should have it.
    entry["expected"] = expected
    entry["lost"] = expected - entry["received"]
    entry["postgres_cpu_percent"] = 100 * entry["postgres_cpu_seconds"] / wall
    return entry


def run_placement(placement: str, options: Any) -> dict[str, Any]:
    pinned = placement == "pinned"
    server_cpus, client_cpus = cpu_split() if pinned else (None, None)
    sockets, rounds = options.fanout_sockets, options.fanout_rounds
    print(
        f"\n  placement {placement}: "
        + (
            f"servers on CPU {sorted(server_cpus or [])}, clients and publisher on CPU "
            f"{sorted(client_cpus or [])}"
            if pinned
            else "nothing pinned"
        ),
        flush=True,
    )
    phases = {
        "steady": (options.fanout_rate, options.fanout_duration),
        "saturate": (options.fanout_saturate_rate, options.fanout_saturate_duration),
    }
    layouts: list[Layout] = []
    with Servers(pin=pinned, open_files=sockets + 1024) as servers:
        try:
            one = servers.synthorg(database_url=servers.postgres("bench_fanout_one"))
            a = servers.synthorg(database_url=servers.postgres("bench_fanout_two"))
            b = servers.synthorg(join=a, server={"host": "127.0.0.2"})
            postgres_pid = servers.postgres_pid()
            layouts.append(connect(LAYOUTS[0], [one], options, client_cpus))
            layouts.append(connect(LAYOUTS[1], [a, b], options, client_cpus))
            for round_number in range(rounds):
                for layout in layouts if round_number % 2 == 0 else layouts[::-1]:
                    for index, (phase, (rate, duration)) in enumerate(phases.items()):
                        number = 1 + round_number * len(phases) + index
                        entry = run_phase(
                            layout, number, rate, duration, (server_cpus, client_cpus), postgres_pid
                        )
                        layout.runs[phase].append(entry)
                        print_phase(layout.name, phase, round_number + 1, entry)
            return {
                layout.name: {"open": layout.client.ready, "runs": layout.runs, "sockets": layout.sockets}
                for layout in layouts
            }
        finally:
            for layout in layouts:
                layout.client.stop()


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    summary = {
        key: mean(entry[key] for entry in runs)
        for key in (
            "events_per_second",
            "delivered_per_second",
            "server_cpu_us_per_message",
            "server_cpu_percent",
            "postgres_cpu_percent",
        )
    }
    summary |= {
        key: mean(entry["latency"].get(key, float("nan")) for entry in runs)
        for key in ("p50_ms", "p99_ms", "max_ms")
    }
    summary["lost"] = sum(entry["lost"] for entry in runs)
    summary["client_cpu_percent"] = max(entry["client_cpu_percent"] for entry in runs)
    summary["other_cpu_on_server_core_percent"] = max(e["other_cpu_on_server_core_percent"] for e in runs)
    return summary


def run(options: Any) -> dict[str, Any]:
    placements = [name.strip() for name in options.fanout_placements.split(",") if name.strip()]
    unknown = set(placements) - set(PLACEMENTS)
    if unknown:
        raise SystemExit(f"B3x: unknown placement {', '.join(sorted(unknown))} ({', '.join(PLACEMENTS)})")
    raise_open_files(2 * options.fanout_sockets + 1024)
    print(
        f"\nB3x fan-out across processes: {options.fanout_sockets} sockets subscribed to `lab`, on one "
        f"process or split over A and B, events posted to A; steady {options.fanout_rate:g} events/s for "
        f"{options.fanout_duration:g} s, saturate {options.fanout_saturate_rate:g} events/s for "
        f"{options.fanout_saturate_duration:g} s; {options.fanout_rounds} rounds; PostgreSQL",
        flush=True,
    )
    results: dict[str, Any] = {"sockets": options.fanout_sockets, "placements": {}}
    rows = []
    for placement in placements:
        try:
            runs = run_placement(placement, options)
        except RuntimeError as error:
            if "PostgreSQL" not in str(error):
                raise
            print(f"  B3x skipped: {error}")
            return {"skipped": str(error)}
        means = {name: {phase: summarise(runs[name]["runs"][phase]) for phase in PHASES} for name in runs}
        results["placements"][placement] = {"runs": runs, "means": means}
        for name in LAYOUTS:
            for phase in PHASES:
                entry = means[name][phase]
                rows.append(
                    [
                        f"{placement}: {name} {phase}",
                        entry["events_per_second"],
                        entry["delivered_per_second"],
                        entry["lost"],
                        entry["p50_ms"],
                        entry["p99_ms"],
                        entry["max_ms"],
                        f"{entry['server_cpu_percent']:.0f}%",
                        entry["server_cpu_us_per_message"],
                        f"{entry['postgres_cpu_percent']:.0f}%",
                        f"{entry['client_cpu_percent']:.0f}%",
                        f"{entry['other_cpu_on_server_core_percent']:.0f}%" if placement == "pinned" else "-",
                    ]
                )
    print(
        f"\nmeans of {options.fanout_rounds} rounds; server CPU summed over A and B; client CPU and other "
        "work on the servers' core (pinned only): the highest"
    )
    headers = ["placement: layout phase", "events/s", "msgs/s", "lost", "p50 ms", "p99 ms", "max ms"]
    headers += ["server CPU", "CPU us/msg", "postgres CPU", "client CPU", "max other"]
    print(table(headers, rows))
    print()
    ratios: dict[str, dict[str, float]] = {}
    for placement, found in results["placements"].items():
        one, two = found["means"][LAYOUTS[0]], found["means"][LAYOUTS[1]]
        ratio = {
            "saturate_msgs_per_second": two["saturate"]["delivered_per_second"]
            / one["saturate"]["delivered_per_second"],
            "steady_p99": two["steady"]["p99_ms"] / one["steady"]["p99_ms"],
            "saturate_cpu_per_message": two["saturate"]["server_cpu_us_per_message"]
            / one["saturate"]["server_cpu_us_per_message"],
        }
        ratios[placement] = ratio
        for name in LAYOUTS:
            saturated = found["means"][name]["saturate"]["server_cpu_percent"]
            if placement == "pinned" and saturated < SATURATED_SERVER_CPU:
                print(
                    f"WARNING: pinned {name} was not saturated ({saturated:.0f}% of the servers' core): "
                    "its capacity figure is a floor (other work on that core, or too few posts in flight)"
                )
        print(
            f"{placement}: A + B / 1 process: msgs/s at saturation {ratio['saturate_msgs_per_second']:.2f}, "
            f"steady p99 {ratio['steady_p99']:.2f} ({two['steady']['p99_ms']:.1f} vs "
            f"{one['steady']['p99_ms']:.1f} ms), server CPU per message "
            f"{ratio['saturate_cpu_per_message']:.2f}"
        )
    results["ratios"] = ratios
    return results
