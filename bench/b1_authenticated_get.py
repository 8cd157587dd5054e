"""B1: requests per second of an authenticated GET, three servers side by side in one run.

- synthorg-tornado `GET /api/v1/me` with `Authorization: Bearer <session JWT>`;
- raw Tornado, one handler writing a JSON body of the same size (the ceiling);
- jupyter_server `GET /api/me` with `Authorization: token <token>`.

Each server is one process pinned to the first CPU; the load generator is another process pinned
to the second, so they never compete for a core. Targets take turns, in a different order each
round, so a slow patch of the machine does not land on one of them only. The server's own CPU
time during the window is reported: near 100% means the server, not the client, was the limit.
From it comes the server CPU time per request, the figure that moves least when other work on
the machine steals time from the server (req/s then drops, CPU per request barely changes).
"""

from __future__ import annotations

from statistics import mean
from typing import Any

from bench.clients import LoadProcess, cpu_seconds, cpus_busy_seconds, run_wrk
from bench.report import table, verdict
from bench.servers import Servers, Target, cpu_split

GOAL_VS_RAW = 0.8
GOAL_VS_JUPYTER = 2.0


def measure(
    target: Target, options: Any, server_cpus: set[int] | None, client_cpus: set[int] | None
) -> dict[str, Any]:
    pid = target.process.pid
    if options.wrk:
        run_wrk(
            options.wrk, target.get_url, target.get_headers, options.connections, options.warmup, client_cpus
        )
        before, core_before = cpu_seconds(pid), cpus_busy_seconds(server_cpus)
        result = run_wrk(
            options.wrk,
            target.get_url,
            target.get_headers,
            options.connections,
            options.duration,
            client_cpus,
        )
    else:
        host, port = target.host_port
        load = LoadProcess(
            {
                "mode": "load",
                "url": target.get_url,
                "host": host,
                "port": port,
                "headers": target.get_headers,
                "connections": options.connections,
                "warmup": options.warmup,
                "duration": options.duration,
            },
            client_cpus,
        )
        load.wait_ready()
        before, core_before = cpu_seconds(pid), cpus_busy_seconds(server_cpus)
        result = load.result()
    used = cpu_seconds(pid) - before
    result["server_cpu"] = used / result["seconds"]
    # Whatever else ran on the server's core (other processes, interrupts): noise in the figures.
    others = cpus_busy_seconds(server_cpus) - core_before - used
    result["other_cpu_on_server_core"] = max(0.0, others) / result["seconds"] if server_cpus else None
    result["server_cpu_us_per_request"] = (
        1e6 * used / result["requests"] if result["requests"] else float("nan")
    )
    return result


def _other_cpu(result: dict[str, Any]) -> str:
    other = result.get("other_cpu_on_server_core")
    return "" if other is None else f"  other work on the server's core {100 * other:>3.0f}%"


def run(options: Any) -> dict[str, Any]:
    server_cpus, client_cpus = cpu_split()
    client = "wrk (1 thread)" if options.wrk else "bench.loadgen (Python asyncio)"
    print(
        f"\nB1 authenticated GET: {options.connections} keep-alive connections, no pipelining, "
        f"{options.warmup:g} s warm-up + {options.duration:g} s per measurement, {options.rounds} rounds; "
        f"client {client};\n   servers on CPU {sorted(server_cpus or [])}, "
        f"client on CPU {sorted(client_cpus or [])}",
        flush=True,
    )
    with Servers() as servers:
        targets = [servers.synthorg(), servers.raw_tornado(), servers.jupyter()]
        runs: dict[str, list[dict[str, Any]]] = {target.name: [] for target in targets}
        for round_number in range(options.rounds):
            order = targets if round_number % 2 == 0 else targets[::-1]
            for target in order:
                result = measure(target, options, server_cpus, client_cpus)
                runs[target.name].append(result)
                bad = {k: v for k, v in result["statuses"].items() if k not in ("200", "2xx/3xx")}
                print(
                    f"  round {round_number + 1} {target.name:<17} {result['rps']:>9,.0f} req/s"
                    f"  server CPU {100 * result['server_cpu']:>3.0f}%"
                    f"  {result['server_cpu_us_per_request']:>4.0f} us/req"
                    f"  p99 {result['p99_ms']:6.2f} ms"
                    + _other_cpu(result)
                    + (f"  NON-200: {bad}" if bad else "")
                    + (f"  errors: {result['errors']}" if result["errors"] else ""),
                    flush=True,
                )
    rates = {name: mean(r["rps"] for r in results) for name, results in runs.items()}
    rows = []
    for name, results in runs.items():
        rows.append(
            [name]
            + [r["rps"] for r in results]
            + [rates[name], mean(r["p50_ms"] for r in results), mean(r["p99_ms"] for r in results)]
            + [f"{100 * mean(r['server_cpu'] for r in results):.0f}%"]
            + [mean(r["server_cpu_us_per_request"] for r in results)]
            + [f"{100 * max(r.get('other_cpu_on_server_core') or 0.0 for r in results):.0f}%"]
        )
    headers = ["target"] + [f"round {i + 1}" for i in range(options.rounds)]
    headers += ["mean req/s", "p50 ms", "p99 ms", "server CPU", "CPU us/req", "max other"]
    print()
    print(table(headers, rows))
    ours, raw, jupyter = rates["synthorg-tornado"], rates["raw Tornado"], rates["jupyter_server"]
    ratios = {"synthorg_vs_raw": ours / raw, "synthorg_vs_jupyter": ours / jupyter}
    cost = {name: mean(r["server_cpu_us_per_request"] for r in results) for name, results in runs.items()}
    efficiency = {
        "synthorg_vs_raw": cost["raw Tornado"] / cost["synthorg-tornado"],
        "synthorg_vs_jupyter": cost["jupyter_server"] / cost["synthorg-tornado"],
    }
    print()
    for key, label, goal in (
        ("synthorg_vs_raw", "synthorg / raw Tornado   ", GOAL_VS_RAW),
        ("synthorg_vs_jupyter", "synthorg / jupyter_server", GOAL_VS_JUPYTER),
    ):
        print(
            f"{label} req/s = {ratios[key]:.2f}  {verdict(ratios[key], goal, True)};"
            f"  by server CPU per request = {efficiency[key]:.2f}"
        )
    return {
        "client": client,
        "connections": options.connections,
        "warmup_seconds": options.warmup,
        "duration_seconds": options.duration,
        "runs": runs,
        "mean_rps": rates,
        "ratios": ratios,
        "server_cpu_us_per_request": cost,
        "ratios_by_cpu_per_request": efficiency,
    }
