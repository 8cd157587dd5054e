"""`python -m bench [b1|b2|all]`: run the benchmarks and print their tables (see docs/BENCHMARKS.md)."""

from __future__ import annotations

import argparse
import time

from bench import b1_authenticated_get, b2_login_storm
from bench.clients import find_wrk
from bench.report import machine, print_machine, write_json

BENCHMARKS = {"b1": b1_authenticated_get, "b2": b2_login_storm}


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("which", nargs="*", metavar="{all,b1,b2}", help="which benchmarks (default: all)")
    parser.add_argument(
        "--client",
        choices=["auto", "python", "wrk"],
        default="auto",
        help="B1 load generator: wrk when installed (auto), or bench.loadgen",
    )
    parser.add_argument("--connections", type=int, default=16, help="B1 keep-alive connections")
    parser.add_argument(
        "--duration", type=float, default=5.0, help="B1 seconds measured per target and round"
    )
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds of load before measuring")
    parser.add_argument("--rounds", type=int, default=2, help="B1 rounds (targets alternate)")
    parser.add_argument(
        "--storm-duration", type=float, default=8.0, help="B2 seconds probed, idle and in the storm"
    )
    parser.add_argument("--storm-clients", type=int, default=4, help="B2 clients posting wrong passwords")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    options = parser.parse_args()
    unknown = set(options.which) - {"all", *BENCHMARKS}
    if unknown:
        parser.error(f"unknown benchmark {', '.join(sorted(unknown))}; choose from all, b1, b2")
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
