"""Running the load generators as processes: our own (`bench.loadgen`) or `wrk` when installed."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
# Beyond its own warm-up and duration, how long a load process may take to start and to report.
GRACE_SECONDS = 30.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


class LoadProcess:
    """`python -m bench.loadgen` with its spec on stdin; "ready" marks the start of measuring."""

    def __init__(self, spec: dict[str, Any], cpus: set[int] | None) -> None:
        self.spec = {**spec, "cpus": sorted(cpus) if cpus else None}
        self.budget = spec.get("warmup", 1.0) + spec["duration"] + GRACE_SECONDS
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.loadgen"],
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(self.spec) + "\n")
        self.process.stdin.close()

    def wait_ready(self) -> None:
        """Blocks until warm-up is over (the load mode prints "ready"; the probe does not)."""
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if line.strip() != "ready":
            self.process.kill()
            raise RuntimeError(f"load generator did not start: {line!r}")

    def result(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        try:
            # Its output is a line or two, far below a pipe's buffer: waiting first cannot block it.
            self.process.wait(timeout=self.budget)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise RuntimeError("load generator overran its time budget and was stopped") from None
        output = self.process.stdout.read()
        self.process.stdout.close()
        lines = [line for line in output.splitlines() if line.strip()]
        if self.process.returncode != 0 or not lines:
            raise RuntimeError(f"load generator failed ({self.process.returncode}): {output[-1000:]}")
        return json.loads(lines[-1])


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and all its threads, from /proc (0.0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (field 3, the state, comes first)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def process_tree(pid: int) -> list[int]:
    """`pid` and every live descendant (a supervisor's workers, nginx's, PostgreSQL's backends)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields:
                parents.setdefault(int(fields[1]), []).append(int(entry.name))
    tree, pending = [], [pid]
    while pending:
        current = pending.pop()
        tree.append(current)
        pending.extend(parents.get(current, []))
    return tree


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU of a process tree: every live member, plus what each has collected of
    its children that already exited (cutime + cstime), so a short-lived backend still counts."""
    total = 0
    for member in process_tree(pid):
        fields = _stat_fields(member)
        if fields:
            total += sum(int(value) for value in fields[11:15])
    return total / CLOCK_TICKS


def tree_context_switches(pid: int) -> tuple[int, int]:
    """(voluntary, involuntary) context switches of every thread of a process tree, from /proc:
    many involuntary ones mean the tree waited for a core, many voluntary ones that its event
    loops went to sleep often, with little work per wake-up."""
    voluntary = involuntary = 0
    for member in process_tree(pid):
        for status in Path(f"/proc/{member}/task").glob("*/status"):
            try:
                lines = status.read_text().splitlines()
            except OSError:
                continue
            for line in lines:
                if line.startswith("voluntary_ctxt_switches:"):
                    voluntary += int(line.split()[1])
                elif line.startswith("nonvoluntary_ctxt_switches:"):
                    involuntary += int(line.split()[1])
    return voluntary, involuntary


def cpus_busy_seconds(cpus: set[int] | None) -> float:
    """Seconds the given CPUs spent on anything but idle (any process, interrupts too)."""
    if not cpus:
        return 0.0
    busy = 0
    try:
        lines = Path("/proc/stat").read_text().splitlines()
    except OSError:
        return 0.0
    for line in lines:
        name, *values = line.split()
        if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cpus:
            jiffies = [int(v) for v in values]
            busy += sum(jiffies[:8]) - jiffies[3] - jiffies[4]  # all but idle and iowait, no guest
    return busy / CLOCK_TICKS


def find_wrk() -> str | None:
    return shutil.which("wrk")


WRK_RATE = re.compile(r"Requests/sec:\s+([\d.]+)")
WRK_TOTAL = re.compile(r"(\d+) requests in ([\d.]+)(us|ms|s|m)")
WRK_NON_2XX = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")
WRK_SOCKET_ERRORS = re.compile(r"Socket errors: (.*)")
WRK_PERCENTILE = re.compile(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", re.MULTILINE)
TO_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def run_wrk(
    wrk: str,
    url: str,
    headers: dict[str, str],
    connections: int,
    seconds: float,
    cpus: set[int] | None,
) -> dict[str, Any]:
    """One wrk run (one thread, keep-alive, no pipelining), summarised like `bench.loadgen`."""
    argv = [wrk, "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "5s", "--latency"]
    for name, value in headers.items():
        argv += ["-H", f"{name}: {value}"]
    argv.append(url)
    done = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=seconds + GRACE_SECONDS,
        check=False,
        preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None,
    )
    text = done.stdout
    rate, total = WRK_RATE.search(text), WRK_TOTAL.search(text)
    if done.returncode != 0 or not rate or not total:
        raise RuntimeError(f"wrk failed ({done.returncode}): {text[-500:]} {done.stderr[-500:]}")
    requests = int(total.group(1))
    non_2xx = WRK_NON_2XX.search(text)
    bad = int(non_2xx.group(1)) if non_2xx else 0
    percentiles = {p: float(v) * TO_MS[unit] for p, v, unit in WRK_PERCENTILE.findall(text)}
    socket_errors = WRK_SOCKET_ERRORS.search(text)
    return {
        "requests": requests,
        "seconds": float(total.group(2)) * TO_MS[total.group(3)] / 1000.0,
        "rps": float(rate.group(1)),
        "statuses": {"2xx/3xx": requests - bad, "other": bad} if bad else {"2xx/3xx": requests},
        "errors": {"socket": socket_errors.group(1)} if socket_errors else {},
        "p50_ms": percentiles.get("50", float("nan")),
        "p99_ms": percentiles.get("99", float("nan")),
    }
