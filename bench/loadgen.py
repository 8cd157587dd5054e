"""The load generator, always run as its own process: `python -m bench.loadgen < spec.json`.

The spec arrives on stdin rather than the command line, so credentials never show in `ps`.

Two modes, chosen by the spec's "mode":

- `load`: N keep-alive connections, each sending the same request as soon as its previous answer
  is complete (no pipelining). A warm-up comes first; then "ready" is printed and responses are
  counted for `duration` seconds. B1 measures throughput with it; B2 uses it for the storm of
  wrong passwords.
- `probe`: one connection, sequential requests, the latency of each. B2's probing client.

Both stop by themselves at the earlier of `duration` seconds and `max_requests` responses, and
print one JSON line with their counts as the last line of stdout.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections import Counter
from typing import Any

from bench.wire import BlockingConnection, ProtocolError, build_request, parse_response

DEFAULT_MAX_REQUESTS = 2_000_000
DRAIN_SECONDS = 5.0


class Tally:
    """Responses counted inside the measuring window only."""

    def __init__(self, max_requests: int) -> None:
        self.measuring = False
        self.stopping = False
        self.statuses: Counter[int] = Counter()
        self.latencies: list[float] = []
        self.errors: Counter[str] = Counter()
        self.max_requests = max_requests
        self.count = 0

    def record(self, status: int, seconds: float) -> None:
        if not self.measuring:
            return
        self.statuses[status] += 1
        self.latencies.append(seconds)
        self.count += 1
        if self.count >= self.max_requests:
            self.stopping = True


class KeepAliveClient(asyncio.Protocol):
    """One connection: send, wait for the whole answer, send again, until told to stop."""

    def __init__(self, request: bytes, tally: Tally) -> None:
        self.request = request
        self.tally = tally
        self.buffer = bytearray()
        self.sent_at = 0.0
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._send()

    def _send(self) -> None:
        if self.tally.stopping:
            self._finish(None)
            return
        self.sent_at = time.perf_counter()
        self.transport.write(self.request)  # type: ignore[union-attr]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        try:
            parsed = parse_response(self.buffer)
        except (ProtocolError, ValueError) as error:
            self._finish(error)
            return
        if parsed is None:
            return
        status, total = parsed
        if total != len(self.buffer):
            self._finish(ProtocolError("bytes after the response: is the server pipelining?"))
            return
        self.buffer.clear()
        self.tally.record(status, time.perf_counter() - self.sent_at)
        self._send()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(None)
            if not self.tally.stopping:
                self.tally.errors["closed by server"] += 1

    def _finish(self, error: Exception | None) -> None:
        if error is not None:
            self.tally.errors[type(error).__name__ + ": " + str(error)[:120]] += 1
        if self.transport is not None:
            self.transport.close()
        if not self.done.done():
            self.done.set_result(None)


async def keep_loading(host: str, port: int, request: bytes, tally: Tally) -> None:
    """One virtual user: reconnects if the server closes on it, until the run stops."""
    loop = asyncio.get_running_loop()
    while not tally.stopping:
        try:
            _, client = await loop.create_connection(lambda: KeepAliveClient(request, tally), host, port)
        except OSError as error:
            tally.errors[f"connect: {error}"] += 1
            await asyncio.sleep(0.1)
            continue
        await client.done


async def run_load(spec: dict[str, Any]) -> dict[str, Any]:
    host, port = spec["host"], spec["port"]
    request = build_request(
        spec.get("method", "GET"), spec["url"], spec.get("headers"), spec.get("body", "").encode()
    )
    tally = Tally(spec.get("max_requests", DEFAULT_MAX_REQUESTS))
    workers = [
        asyncio.ensure_future(keep_loading(host, port, request, tally)) for _ in range(spec["connections"])
    ]
    await asyncio.sleep(spec.get("warmup", 1.0))
    tally.measuring = True
    started = time.perf_counter()
    print("ready", flush=True)
    deadline = started + spec["duration"]
    while time.perf_counter() < deadline and not tally.stopping:
        await asyncio.sleep(0.05)
    elapsed = time.perf_counter() - started
    tally.measuring, tally.stopping = False, True
    await asyncio.wait(workers, timeout=DRAIN_SECONDS)
    for worker in workers:
        worker.cancel()
    return summary(tally, elapsed)


def run_probe(spec: dict[str, Any]) -> dict[str, Any]:
    request = build_request("GET", spec["url"], spec.get("headers"))
    tally = Tally(spec.get("max_requests", DEFAULT_MAX_REQUESTS))
    connection = BlockingConnection(spec["url"])
    try:
        warm_until = time.perf_counter() + spec.get("warmup", 0.5)
        while time.perf_counter() < warm_until:
            connection.exchange(request)
        tally.measuring = True
        started = time.perf_counter()
        deadline = started + spec["duration"]
        while time.perf_counter() < deadline and not tally.stopping:
            sent = time.perf_counter()
            status = connection.exchange(request)
            tally.record(status, time.perf_counter() - sent)
        return summary(tally, time.perf_counter() - started)
    finally:
        connection.close()


def percentile(ordered: list[float], fraction: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    if not ordered:
        return float("nan")
    rank = max(0, min(len(ordered) - 1, round(fraction * len(ordered) + 0.5) - 1))
    return ordered[rank]


def summary(tally: Tally, elapsed: float) -> dict[str, Any]:
    ordered = sorted(tally.latencies)
    return {
        "requests": tally.count,
        "seconds": elapsed,
        "rps": tally.count / elapsed if elapsed > 0 else 0.0,
        "statuses": {str(status): n for status, n in sorted(tally.statuses.items())},
        "errors": dict(tally.errors),
        "p50_ms": 1000 * percentile(ordered, 0.50),
        "p99_ms": 1000 * percentile(ordered, 0.99),
        "max_ms": 1000 * ordered[-1] if ordered else float("nan"),
        "client_cpu_seconds": time.process_time(),
    }


def main() -> None:
    spec = json.loads(sys.stdin.readline())
    if spec.get("cpus") and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, spec["cpus"])
    result = asyncio.run(run_load(spec)) if spec["mode"] == "load" else run_probe(spec)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
