"""`python -m bench [b1|b2|b3|b4|b5|b6|b4x|b7|b3x|all]`: run the benchmarks and print their tables
(see docs/BENCHMARKS.md)."""

from __future__ import annotations

import argparse
import time

from bench import (
    b1_authenticated_get,
    b2_login_storm,
    b3_fanout,
    b3x_fanout_scale_out,
    b4_revocation,
    b4x_cross_process,
    b5_settings,
    b6_memory,
    b7_scale_out,
)
from bench.clients import find_wrk
from bench.report import machine, print_machine, write_json

BENCHMARKS = {
    "b1": b1_authenticated_get,
    "b2": b2_login_storm,
    "b3": b3_fanout,
    "b4": b4_revocation,
    "b5": b5_settings,
    "b6": b6_memory,
    "b4x": b4x_cross_process,
    "b7": b7_scale_out,
    "b3x": b3x_fanout_scale_out,
}
CHOICES = ", ".join(["all", *BENCHMARKS])


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "which",
        nargs="*",
        metavar=f"{{{CHOICES.replace(', ', ',')}}}",
        help="which benchmarks (default: all)",
    )
    parser.add_argument(
        "--client",
        choices=["auto", "python", "wrk"],
        default="auto",
        help="B1 load generator: wrk when installed (auto), or bench.loadgen",
    )
    parser.add_argument("--connections", type=int, default=16, help="B1 and B7 keep-alive connections")
    parser.add_argument(
        "--duration", type=float, default=5.0, help="B1 and B7 seconds measured per target and round"
    )
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds of load before measuring")
    parser.add_argument("--rounds", type=int, default=2, help="B1 and B7 rounds (targets alternate)")
    parser.add_argument(
        "--storm-duration", type=float, default=8.0, help="B2 seconds probed, idle and in the storm"
    )
    parser.add_argument("--storm-clients", type=int, default=4, help="B2 clients posting wrong passwords")
    parser.add_argument("--fanout-sockets", type=int, default=2000, help="B3 and B3x subscribed sockets")
    parser.add_argument("--fanout-rate", type=float, default=10.0, help="B3 and B3x steady phase, events/s")
    parser.add_argument("--fanout-duration", type=float, default=8.0, help="B3 and B3x steady phase, seconds")
    parser.add_argument(
        "--fanout-saturate-rate",
        type=float,
        default=200.0,
        help="B3 and B3x saturating phase, events/s asked for",
    )
    parser.add_argument(
        "--fanout-saturate-duration", type=float, default=6.0, help="B3 and B3x saturating phase, seconds"
    )
    parser.add_argument(
        "--fanout-placements",
        default="pinned,unpinned",
        help="B3x CPU placements, comma-separated: pinned (servers on one CPU), unpinned",
    )
    parser.add_argument("--fanout-rounds", type=int, default=2, help="B3 and B3x rounds (targets alternate)")
    parser.add_argument(
        "--revocations", type=int, default=200, help="B4 and B4x sessions revoked through the API"
    )
    parser.add_argument(
        "--cli-revocations", type=int, default=20, help="B4 sessions revoked with the command line"
    )
    parser.add_argument(
        "--setting-updates", type=int, default=100, help="B4x setting writes on A watched on A and B"
    )
    parser.add_argument("--writers", type=int, default=16, help="B5 concurrent writers")
    parser.add_argument("--increments", type=int, default=100, help="B5 successful increments per writer")
    parser.add_argument(
        "--databases",
        default="sqlite,postgresql",
        help="B5 backends, comma-separated (postgresql starts a throwaway cluster)",
    )
    parser.add_argument("--idle-sockets", type=int, default=5000, help="B6 idle authenticated sockets")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    options = parser.parse_args()
    unknown = set(options.which) - {"all", *BENCHMARKS}
    if unknown:
        parser.error(f"unknown benchmark {', '.join(sorted(unknown))}; choose from {CHOICES}")
    if options.client == "wrk" and not find_wrk():
        parser.error("--client wrk: wrk is not on PATH (Debian: apt-get install wrk)")
    options.wrk = find_wrk() if options.client in ("auto", "wrk") else None
    return options


def main() -> None:
    options = parse_arguments()
    which = (
        list(BENCHMARKS)
        if not options.which or "all" in options.which
        else list(dict.fromkeys(options.which))
    )
    info = machine(options.wrk)
    print_machine(info)
    results: dict = {"machine": info}
    started = time.monotonic()
    for name in which:
        results[name] = BENCHMARKS[name].run(options)
    print(f"\n# done in {time.monotonic() - started:.0f} s")
    if options.json:
        write_json(options.json, results)


if __name__ == "__main__":
    main()
