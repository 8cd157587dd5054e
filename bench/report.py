"""What a run prints: the machine it ran on, plain-text tables, and the optional JSON file."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

BUSY_WARNING = 15.0  # percent of one core
PACKAGES = ("synthorg-tornado", "tornado", "jupyter_server", "bcrypt", "argon2-cffi", "PyJWT", "SQLAlchemy")


def machine(wrk: str | None = None) -> dict[str, Any]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    info = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpus": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "packages": versions,
    }
    if wrk:
        info["wrk"] = " ".join(_first_line([wrk, "--version"]).split()[:2])
    info["background_cpu_percent"] = background_cpu_percent()
    return info


def background_cpu_percent(seconds: float = 1.0) -> float | None:
    """How busy the machine is before we start (100 = one full core): other work skews figures."""
    try:
        before = _cpu_totals()
        time.sleep(seconds)
        after = _cpu_totals()
    except OSError:
        return None
    total, idle = after[0] - before[0], after[1] - before[1]
    cpus = os.cpu_count() or 1
    return round(100.0 * cpus * (total - idle) / total, 1) if total else None


def _cpu_totals() -> tuple[int, int]:
    """Jiffies since boot, all CPUs: (total, idle + iowait), from the first line of /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return sum(values), values[3] + values[4]


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _first_line(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return ((done.stdout or done.stderr).strip().splitlines() or ["unknown"])[0]


def print_machine(info: dict[str, Any]) -> None:
    packages = ", ".join(f"{name} {version}" for name, version in info["packages"].items() if version)
    print(f"# {info['date']}: {info['cpus']} CPUs ({info['cpu_model']}), Linux {info['kernel']}")
    print(f"# Python {info['python']}")
    print(f"# {packages}" + (f", {info['wrk']}" if "wrk" in info else ""))
    busy = info.get("background_cpu_percent")
    if busy is not None:
        note = "  WARNING: the machine is busy, figures will be noisy" if busy > BUSY_WARNING else ""
        print(f"# CPU in use by other work before the run: {busy:g}% of {info['cpus'] * 100}%{note}")


def table(headers: list[str], rows: list[list[Any]]) -> str:
    """Left-aligned first column, right-aligned figures."""
    cells = [headers] + [[_cell(value) for value in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for index, row in enumerate(cells):
        parts = [row[0].ljust(widths[0])] + [row[i].rjust(widths[i]) for i in range(1, len(row))]
        lines.append("  ".join(parts).rstrip())
        if index == 0:
            lines.append("  ".join("-" * width for width in widths))
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.2f}"
    return str(value)


def verdict(value: float, goal: float, at_least: bool) -> str:
    met = value >= goal if at_least else value <= goal
    return f"{'met' if met else 'NOT met'} (goal {'>=' if at_least else '<='} {goal:g})"


def write_json(path: str, results: dict[str, Any]) -> None:
    Path(path).write_text(json.dumps(results, indent=2, sort_keys=False) + "\n")
    print(f"\nwrote {path}", file=sys.stderr)
