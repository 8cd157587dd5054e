"""B7: coordination cost, an authenticated GET through nginx to one and to two server processes.

One lab on a throwaway PostgreSQL cluster, reached through a real nginx started from the shipped
`deploy/nginx/synthorg.conf` (TLS, HTTP/1.1 keep-alive to the upstream, `worker_processes 1` as
in tests/nginx.py), three ways, each with its own nginx:

- `1 process`: nginx -> one server process (the lab's first, which ran the setup);
- `processes: 2`: nginx -> one instance with `server.processes: 2`, two workers forked by the
  supervisor on one port, the kernel handing each new connection to one of them;
- `2 instances`: nginx -> two single-process instances, 127.0.0.1 and 127.0.0.2, both lines of
  nginx's `upstream` (round robin), as two hosts would be.

All share the database and the signing secret, so the admin's Bearer JWT from the setup works
on each. The load is `wrk` (one thread, `--connections` keep-alive connections over TLS) on
`GET /api/v1/me`. The configurations take turns, in reverse order in the second round.

Nothing is pinned: two workers need both cores, and nginx, wrk and PostgreSQL run beside them.
On a 2-core machine req/s therefore says little about what a second core buys; what holds is
**CPU per request**, read from /proc (utime + stime) over the measured window for every process
of each part: the server (supervisor and workers summed), nginx (master and worker), wrk (its
rusage) and PostgreSQL (postmaster and backends). "other" is whatever else the machine ran in
that window (other work on a shared machine, the kernel's softirqs): the busy time of all CPUs
minus the four parts.
"""

from __future__ import annotations

import os
import resource
import time
from statistics import mean
from typing import Any

from bench.clients import (
    cpu_seconds,
    cpus_busy_seconds,
    process_tree,
    run_wrk,
    tree_context_switches,
    tree_cpu_seconds,
)
from bench.report import BUSY_WARNING, table, verdict
from bench.servers import Servers, Target

GOAL_CPU_RATIO = 1.1  # CPU per request with two processes / with one
GOAL_SPEC_THROUGHPUT = 1.6  # SPEC section 12, on 2 cores
WORKERS_TIMEOUT = 30.0
PARTS = ("server", "nginx", "wrk", "postgres", "other")


def wait_for_workers(target: Target, count: int) -> list[int]:
    deadline = time.monotonic() + WORKERS_TIMEOUT
    while time.monotonic() < deadline:
        workers = process_tree(target.process.pid)[1:]
        if len(workers) >= count:
            return workers
        if target.process.poll() is not None:
            raise RuntimeError(f"the server exited with {target.process.returncode}:\n{target.log()[-2000:]}")
        time.sleep(0.1)
    raise TimeoutError(f"fewer than {count} workers after {WORKERS_TIMEOUT:g} s:\n{target.log()[-2000:]}")


def start(servers: Servers) -> dict[str, tuple[Target, list[Target]]]:
    """The three configurations: name -> (nginx, the server processes behind it)."""
    proxies = {"trusted_proxies": ["127.0.0.1"]}
    first = servers.synthorg(database_url=servers.postgres("bench_scale_out"), server=proxies)
    second = servers.synthorg(join=first, server={**proxies, "host": "127.0.0.2"})
    workers = servers.synthorg(join=first, server={**proxies, "processes": 2})
    wait_for_workers(workers, 2)
    return {
        "1 process": (servers.nginx([first]), [first]),
        "processes: 2": (servers.nginx([workers]), [workers]),
        "2 instances": (servers.nginx([first, second]), [first, second]),
    }


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure(nginx: Target, backends: list[Target], postgres_pid: int | None, options: Any) -> dict[str, Any]:
    everything = set(range(os.cpu_count() or 1))
    run_wrk(options.wrk, nginx.get_url, nginx.get_headers, options.connections, options.warmup, None)

    def snapshot() -> dict[str, float]:
        return {
            "server": sum(tree_cpu_seconds(backend.process.pid) for backend in backends),
            "nginx": tree_cpu_seconds(nginx.process.pid),
            "wrk": children_cpu_seconds(),  # only wrk exits in the window
            "postgres": tree_cpu_seconds(postgres_pid) if postgres_pid else 0.0,
            "machine": cpus_busy_seconds(everything),
        }

    def switches() -> tuple[int, int]:
        counts = [tree_context_switches(backend.process.pid) for backend in backends]
        return sum(c[0] for c in counts), sum(c[1] for c in counts)

    def per_process() -> dict[int, float]:
        """CPU of each serving process: is the load split evenly between the workers?"""
        return {pid: cpu_seconds(pid) for backend in backends for pid in process_tree(backend.process.pid)}

    switches_before, split_before = switches(), per_process()
    before = snapshot()
    result = run_wrk(
        options.wrk, nginx.get_url, nginx.get_headers, options.connections, options.duration, None
    )
    after = snapshot()
    switches_after, split_after = switches(), per_process()
    used = {part: after[part] - before[part] for part in before}
    used["other"] = max(0.0, used["machine"] - sum(used[part] for part in PARTS[:-1]))
    requests = result["requests"] or 1
    result["cpu_seconds"] = used
    result["cpu_us_per_request"] = {part: 1e6 * used[part] / requests for part in (*PARTS, "machine")}
    result["cpu_percent"] = {part: 100 * used[part] / result["seconds"] for part in (*PARTS, "machine")}
    result["server_switches_per_request"] = {
        "voluntary": (switches_after[0] - switches_before[0]) / requests,
        "involuntary": (switches_after[1] - switches_before[1]) / requests,
    }
    shares = [split_after[pid] - split_before.get(pid, 0.0) for pid in split_after]
    # Shares of the server's CPU, busiest first; a supervisor's (it serves nothing) is left out.
    result["server_split_percent"] = sorted(
        (100 * share / used["server"] for share in shares if share > 0.01 * used["server"]), reverse=True
    )
    return result


def print_round(name: str, round_number: int, result: dict[str, Any]) -> None:
    per = result["cpu_us_per_request"]
    bad = {k: v for k, v in result["statuses"].items() if k not in ("200", "2xx/3xx")}
    print(
        f"  round {round_number} {name:<13} {result['rps']:>7,.0f} req/s  p99 {result['p99_ms']:6.2f} ms"
        f"  CPU us/req: server {per['server']:4.0f}  nginx {per['nginx']:4.0f}  wrk {per['wrk']:3.0f}"
        f"  postgres {per['postgres']:3.0f}  other {per['other']:3.0f}"
        f"  server switches/req {sum(result['server_switches_per_request'].values()):.2f}"
        f"  split {'/'.join(f'{share:.0f}' for share in result['server_split_percent'])}%"
        f"  (machine {result['cpu_percent']['machine']:3.0f}% of {100 * (os.cpu_count() or 1)}%)"
        + (f"  NON-2xx {bad}" if bad else "")
        + (f"  errors {result['errors']}" if result["errors"] else "")
        + (
            "  (BUSY: other work on the machine)" if result["cpu_percent"]["other"] > 2 * BUSY_WARNING else ""
        ),
        flush=True,
    )


def run(options: Any) -> dict[str, Any]:
    if not options.wrk:
        print("\nB7 skipped: it needs wrk on PATH (Debian: apt-get install wrk)")
        return {"skipped": "no wrk"}
    print(
        f"\nB7 coordination cost: GET /api/v1/me (Bearer) through nginx (TLS, shipped config) on "
        f"PostgreSQL; wrk 1 thread, {options.connections} connections, {options.warmup:g} s warm-up + "
        f"{options.duration:g} s per configuration, {options.rounds} rounds; nothing pinned",
        flush=True,
    )
    runs: dict[str, list[dict[str, Any]]] = {}
    with Servers(pin=False) as servers:
        try:
            configurations = start(servers)
        except RuntimeError as error:  # no nginx or no PostgreSQL binaries
            print(f"  B7 skipped: {error}")
            return {"skipped": str(error)}
        postgres_pid = servers.postgres_pid()
        names = list(configurations)
        for round_number in range(options.rounds):
            for name in names if round_number % 2 == 0 else names[::-1]:
                nginx, backends = configurations[name]
                result = measure(nginx, backends, postgres_pid, options)
                runs.setdefault(name, []).append(result)
                print_round(name, round_number + 1, result)
    means = {
        name: {
            "rps": mean(r["rps"] for r in results),
            "p50_ms": mean(r["p50_ms"] for r in results),
            "p99_ms": mean(r["p99_ms"] for r in results),
            "cpu_us_per_request": {
                part: mean(r["cpu_us_per_request"][part] for r in results) for part in (*PARTS, "machine")
            },
            "cpu_percent": {
                part: mean(r["cpu_percent"][part] for r in results) for part in (*PARTS, "machine")
            },
            "server_switches_per_request": {
                kind: mean(r["server_switches_per_request"][kind] for r in results)
                for kind in ("voluntary", "involuntary")
            },
            "busiest_process_percent": mean(max(r["server_split_percent"], default=0.0) for r in results),
        }
        for name, results in runs.items()
    }
    rows = []
    for name, entry in means.items():
        per, percent = entry["cpu_us_per_request"], entry["cpu_percent"]
        rows.append(
            [name, entry["rps"], entry["p50_ms"], entry["p99_ms"]]
            + [f"{per[part]:.0f} ({percent[part]:.0f}%)" for part in PARTS]
            + [f"{per['machine']:.0f} ({percent['machine']:.0f}%)"]
            + [f"{entry['server_switches_per_request'][kind]:.2f}" for kind in ("voluntary", "involuntary")]
            + [f"{entry['busiest_process_percent']:.0f}%"]
        )
    print(
        f"\nmeans of {options.rounds} rounds; CPU us per request (share of one core); the server's "
        "context switches per request, voluntary (its loops slept) and involuntary (it waited for a core); "
        "the busiest serving process's share of the server's CPU"
    )
    headers = [
        "configuration",
        "req/s",
        "p50 ms",
        "p99 ms",
        *PARTS,
        "machine",
        "vol sw",
        "invol sw",
        "busiest",
    ]
    print(table(headers, rows))
    one = means["1 process"]
    ratios: dict[str, dict[str, float]] = {}
    print()
    for name in names[1:]:
        two = means[name]
        server_cpu = two["cpu_us_per_request"]["server"] / one["cpu_us_per_request"]["server"]
        ratio = {"throughput": two["rps"] / one["rps"], "server_cpu_per_request": server_cpu}
        ratios[name] = ratio
        print(
            f"{name} / 1 process: server CPU per request = {ratio['server_cpu_per_request']:.2f}  "
            f"{verdict(ratio['server_cpu_per_request'], GOAL_CPU_RATIO, False)};  req/s = "
            f"{ratio['throughput']:.2f}  {verdict(ratio['throughput'], GOAL_SPEC_THROUGHPUT, True)}"
        )
    return {
        "connections": options.connections,
        "duration_seconds": options.duration,
        "runs": runs,
        "means": means,
        "ratios": ratios,
    }
