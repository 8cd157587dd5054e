"""Log masking cost per KiB, for each hostile shape of text, from 1 KiB to 64 KiB.

Every request's access line passes through the masking filter on the IOLoop, and its path and
query are the client's. Masking must cost the same per KiB whatever the size (linear): the goal
is that, for every shape, the dearest size costs at most twice the cheapest per KiB. The server
caps each field at 4 KiB before masking; this measures the masking function itself, uncapped,
so that a quadratic pattern shows here even though the cap would hide it in the server.

    python -m bench.log_mask [--min-seconds 0.02] [--rounds 3] [--give-up-seconds 2]

Figures are CPU time of this thread (not wall time: a busy machine preempts long runs more than
short ones), the best of `--rounds`, each round repeating the call for at least `--min-seconds`.
A shape whose single call passes `--give-up-seconds`, or raises, is not measured at larger sizes.
"""

from __future__ import annotations

import argparse
import random
import string
import time
from collections.abc import Callable

from bench.report import machine, print_machine, table, verdict
from synthorg_tornado.logs import mask_secrets

SIZES_KIB = (1, 2, 4, 8, 16, 32, 64)
GOAL_RATIO = 2.0
# Each shape is a unit repeated to the size: what a client can put in a path or query string.
SHAPES: dict[str, str] = {
    "name%3D repeated": "name%3D",
    "password= repeated": "password=",
    "token%3D repeated": "token%3D",
    "%25 run": "%25",
    "%3Fa%3D nested query": "%3Fa%3D",
    "%2526 (double-encoded &)": "%2526",
    "&a= pairs": "&a=",
    ";a= path parameters": ";a=",
    "eyJ run (JWT start)": "eyJ",
    "syt_ run (API token start)": "syt_",
    "bearer + space": "bearer ",
    "authorization: + space": "authorization: ",
    '"password":" (JSON)': '"password":"',
    "letters only": "abcdefgh",
}


def random_text(size: int) -> str:
    generator = random.Random(size)
    alphabet = string.printable + "%=&?;"
    return "".join(generator.choice(alphabet) for _ in range(size))


def cpu_seconds_per_call(function: Callable[[str], str], text: str, min_seconds: float, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        calls, started = 0, time.thread_time()
        while True:
            function(text)
            calls += 1
            spent = time.thread_time() - started
            if spent >= min_seconds:
                break
        best = min(best, spent / calls)
    return best


def measure_shape(make: Callable[[int], str], options: argparse.Namespace) -> list[float | str]:
    """Microseconds per KiB at each size, or why a size was not measured."""
    row: list[float | str] = []
    for kib in SIZES_KIB:
        if row and isinstance(row[-1], str):
            row.append("-")
            continue
        text = make(kib * 1024)
        started = time.thread_time()
        try:
            mask_secrets(text)
        except RecursionError:
            row.append("RecursionError")
            continue
        if time.thread_time() - started > options.give_up_seconds:
            row.append(f">{options.give_up_seconds:g} s")
            continue
        seconds = cpu_seconds_per_call(mask_secrets, text, options.min_seconds, options.rounds)
        row.append(1e6 * seconds / kib)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.log_mask", description=__doc__)
    parser.add_argument("--min-seconds", type=float, default=0.02, help="CPU seconds per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="measurements per cell; the best is kept")
    parser.add_argument(
        "--give-up-seconds", type=float, default=2.0, help="a single call slower than this ends a row"
    )
    options = parser.parse_args()
    print_machine(machine())
    makers: dict[str, Callable[[int], str]] = {
        name: (lambda size, unit=unit: (unit * (size // len(unit) + 1))[:size])
        for name, unit in SHAPES.items()
    }
    makers["random printable text"] = random_text
    rows = []
    worst = 0.0
    for name, make in makers.items():
        cells = measure_shape(make, options)
        figures = [cell for cell in cells if isinstance(cell, float)]
        linear = len(figures) == len(cells)
        ratio = max(figures) / min(figures) if linear else float("inf")
        worst = max(worst, ratio)
        rows.append([name, *cells, f"{ratio:.2f}" if linear else "not linear"])
    headers = ["shape (us CPU per KiB)", *(f"{kib} KiB" for kib in SIZES_KIB), "max/min"]
    print(table(headers, rows))
    print(
        f"\nworst max/min per KiB across 1-64 KiB: {worst:.2f}, {verdict(worst, GOAL_RATIO, at_least=False)}"
    )


if __name__ == "__main__":
    main()
