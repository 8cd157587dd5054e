"""WebSocket load processes: `python -m bench.wsload < spec.json`, driven by B3 and B6.

The spec arrives on stdin (credentials never show in `ps`). Two modes:

- `sockets`: open `len(headers)` WebSockets (one per entry of `headers`, the handshake headers of
  that socket; each to `url`, or to its own entry of `urls` when the sockets are spread over
  several server processes, as in B3x), at most `concurrency` handshakes at a time so the
  server's listen backlog never overflows, optionally send `subscribe` on each and wait for
  the answer, then print `ready <json>`. From then on it reads commands, one a line: `status`
  prints the counts so far as JSON, `phase N` adds the arrivals and latencies of phase N,
  `report` prints everything and exits. Received B3 events are counted per `phase` of
  their payload, with their publish-to-receive latency. B6 uses it with no subscription and no
  events: it only holds the sockets open.
- `publish`: post events at a steady `rate` for `duration` seconds over `in_flight` keep-alive
  connections (open loop: event i is due at start + i / rate, late ones go out as soon as a
  connection is free), each payload `{phase, seq, sent_at}` with `sent_at` the moment its request
  is written. Prints one JSON line.

Every run ends by itself: the sockets mode after `deadline` seconds even if no `report` comes,
the publisher when its duration is over (events not yet sent by then are dropped, so a server
that cannot keep up gets fewer events rather than a longer phase); the driver kills a publisher
that is still waiting for replies `PUBLISH_GRACE` seconds later.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import threading
import time
from array import array
from collections import Counter
from pathlib import Path
from typing import Any

from bench.loadgen import percentile
from bench.servers import raise_open_files
from bench.wsclient import HttpConnection, WebSocketClient, open_socket, subscribe

REPO = Path(__file__).resolve().parent.parent
EVENT = re.compile(rb'"phase":(\d+),"seq":(\d+),"sent_at":([0-9.]+)')
DEFAULT_DEADLINE = 300.0
PUBLISH_GRACE = 20.0


class Phase:
    __slots__ = ("count", "first_at", "last_at", "latencies")

    def __init__(self) -> None:
        self.count = 0
        self.first_at = 0.0
        self.last_at = 0.0
        self.latencies = array("d")


class Receiver:
    """Counts every event frame, per phase, with the time from its publication to its arrival."""

    def __init__(self) -> None:
        self.phases: dict[int, Phase] = {}
        self.other_texts = 0

    def on_text(self, _client: WebSocketClient, payload: bytes, now: float) -> None:
        match = EVENT.search(payload)
        if match is None:
            self.other_texts += 1
            return
        number = int(match.group(1))
        phase = self.phases.get(number)
        if phase is None:
            phase = self.phases[number] = Phase()
            phase.first_at = now
        phase.count += 1
        phase.last_at = now
        phase.latencies.append(now - float(match.group(3)))

    def counts(self) -> dict[str, int]:
        return {str(number): phase.count for number, phase in self.phases.items()}

    def summary(self) -> dict[str, Any]:
        return {str(number): self.phase_summary(number) for number in self.phases}

    def phase_summary(self, number: int) -> dict[str, Any]:
        phase = self.phases.get(number)
        if phase is None:
            return {}
        ordered = sorted(phase.latencies)
        return {
            "received": phase.count,
            "first_at": phase.first_at,
            "last_at": phase.last_at,
            "p50_ms": 1000 * percentile(ordered, 0.50),
            "p90_ms": 1000 * percentile(ordered, 0.90),
            "p99_ms": 1000 * percentile(ordered, 0.99),
            "max_ms": 1000 * ordered[-1] if ordered else float("nan"),
        }


async def open_all(spec: dict[str, Any], receiver: Receiver) -> tuple[list[WebSocketClient], Counter]:
    gate = asyncio.Semaphore(spec.get("concurrency", 50))
    failures: Counter[str] = Counter()
    subscribe_text = spec.get("subscribe")

    async def one(url: str, headers: dict[str, str]) -> WebSocketClient | None:
        async with gate:
            try:
                client = await open_socket(url, headers, receiver.on_text)
                if subscribe_text:
                    await subscribe(client, subscribe_text)
                return client
            except (OSError, TimeoutError) as error:
                failures[f"{type(error).__name__}: {str(error)[:80]}"] += 1
                return None

    urls = spec.get("urls") or [spec["url"]] * len(spec["headers"])
    opened = await asyncio.gather(*(one(url, h) for url, h in zip(urls, spec["headers"], strict=True)))
    return [client for client in opened if client is not None], failures


def closed_codes(clients: list[WebSocketClient]) -> dict[str, int]:
    return dict(Counter(str(c.closed.result()) for c in clients if c.closed.done()))


def stdin_lines() -> asyncio.Queue[str]:
    """Lines of stdin as they come, read by a daemon thread (so a silent driver never keeps this
    process from ending at its deadline); "" marks the end of input."""
    loop = asyncio.get_running_loop()
    lines: asyncio.Queue[str] = asyncio.Queue()

    def read() -> None:
        while True:
            line = sys.stdin.readline()
            loop.call_soon_threadsafe(lines.put_nowait, line)
            if not line:
                return

    threading.Thread(target=read, daemon=True).start()
    return lines


async def run_sockets(spec: dict[str, Any]) -> None:
    receiver = Receiver()
    started = time.monotonic()
    clients, failures = await open_all(spec, receiver)
    ready = {
        "opened": len(clients),
        "failed": dict(failures),
        "open_seconds": time.monotonic() - started,
        "client_cpu_seconds": time.process_time(),
    }
    print("ready " + json.dumps(ready), flush=True)
    commands = stdin_lines()
    deadline = started + spec.get("deadline", DEFAULT_DEADLINE)
    try:
        while time.monotonic() < deadline:
            try:
                command = await asyncio.wait_for(commands.get(), deadline - time.monotonic())
            except TimeoutError:
                break
            command = command.strip()
            state = {
                "counts": receiver.counts(),
                "other_texts": receiver.other_texts,
                "closed": closed_codes(clients),
                "client_cpu_seconds": time.process_time(),
            }
            if command == "status":
                print(json.dumps(state), flush=True)
            elif command.startswith("phase "):  # the summary of one phase, e.g. "phase 3"
                summary = receiver.phase_summary(int(command.split()[1]))
                print(json.dumps({**state, "phase": summary}), flush=True)
            elif command in ("report", ""):  # "" is end of input: the driver has gone
                state["phases"] = receiver.summary()
                print(json.dumps(state), flush=True)
                break
    finally:
        for client in clients:
            client.abort()


async def run_publisher(spec: dict[str, Any]) -> dict[str, Any]:
    rate, duration = float(spec["rate"]), float(spec["duration"])
    total = max(1, int(rate * duration))
    path, headers = spec["path"], {**spec.get("headers", {}), "Content-Type": "application/json"}
    connections = [HttpConnection(spec["url"]) for _ in range(spec.get("in_flight", 2))]
    for connection in connections:
        await connection.connect()
    statuses: Counter[int] = Counter()
    reply_seconds: list[float] = []
    late = 0
    delivered = 0
    next_index = 0
    first_sent = last_sent = 0.0
    start = time.monotonic() + 0.05
    # A server that cannot keep up gets fewer events, not a longer phase.
    stop_by = start + duration

    async def sender(connection: HttpConnection) -> None:
        nonlocal next_index, late, delivered, first_sent, last_sent
        while next_index < total and time.monotonic() < stop_by:
            index = next_index
            next_index += 1
            due = start + index / rate
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            elif wait < -0.005:
                late += 1
            sent_at = time.monotonic()
            first_sent = first_sent or sent_at
            last_sent = max(last_sent, sent_at)
            body = json.dumps(
                {
                    "channel": spec.get("channel", "lab"),
                    "event_type": "bench.tick",
                    "payload": {"phase": spec["phase"], "seq": index, "sent_at": sent_at},
                },
                separators=(",", ":"),
            ).encode()
            status, _, reply = await connection.request("POST", path, headers, body)
            reply_seconds.append(time.monotonic() - sent_at)
            statuses[status] += 1
            if status == 202:
                delivered += json.loads(reply).get("delivered", 0)

    await asyncio.gather(*(sender(connection) for connection in connections))
    for connection in connections:
        await connection.close()
    ordered = sorted(reply_seconds)
    sent = sum(statuses.values())
    span = last_sent - first_sent
    return {
        "planned": total,
        "sent": sent,
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "delivered_by_server": delivered,
        "first_sent": first_sent,
        "last_sent": last_sent,
        "achieved_rate": (sent - 1) / span if sent > 1 and span > 0 else 0.0,
        "late": late,
        "reply_p50_ms": 1000 * percentile(ordered, 0.50),
        "reply_p99_ms": 1000 * percentile(ordered, 0.99),
        "client_cpu_seconds": time.process_time(),
    }


def main() -> None:
    spec = json.loads(sys.stdin.readline())
    if spec.get("cpus") and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, spec["cpus"])
    if spec.get("open_files"):
        raise_open_files(spec["open_files"])
    if spec["mode"] == "publish":
        print(json.dumps(asyncio.run(run_publisher(spec))), flush=True)
    else:
        asyncio.run(run_sockets(spec))


# -- the driver's side -----------------------------------------------------------------------


class SocketsProcess:
    """A `sockets` load process, owned by the benchmark: started, asked, and always stopped."""

    def __init__(self, spec: dict[str, Any], cpus: set[int] | None, open_timeout: float = 120.0) -> None:
        import subprocess

        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.wsload"],
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps({**spec, "mode": "sockets", "cpus": sorted(cpus or [])}) + "\n")
        self.process.stdin.flush()
        line = self._line(open_timeout)
        if not line.startswith("ready "):
            self.stop()
            raise RuntimeError(f"socket load process did not start: {line[:300]!r}")
        self.ready: dict[str, Any] = json.loads(line[len("ready ") :])

    def ask(self, command: str, timeout: float = 60.0) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        line = self._line(timeout)
        if not line.strip():
            self.stop()
            raise RuntimeError(f"socket load process gave no answer to {command!r}")
        return json.loads(line)

    def report(self) -> dict[str, Any]:
        result = self.ask("report")
        self.stop()
        return result

    def stop(self) -> None:
        if self.process.poll() is None:
            if self.process.stdin is not None:
                self.process.stdin.close()
            try:
                self.process.wait(10)
            except Exception:
                self.process.kill()
                self.process.wait(10)

    def _line(self, timeout: float) -> str:
        """One line of output, or the process is killed when it has none within `timeout`."""
        assert self.process.stdout is not None
        got: list[str] = []
        reader = threading.Thread(target=lambda: got.append(self.process.stdout.readline()), daemon=True)
        reader.start()
        reader.join(timeout)
        if reader.is_alive():
            self.process.kill()
            reader.join(10)
            raise RuntimeError(f"socket load process gave no line within {timeout:g} s")
        return got[0] if got else ""


def publish(spec: dict[str, Any], cpus: set[int] | None) -> dict[str, Any]:
    """Run one publisher process to its end and return its summary."""
    import subprocess

    done = subprocess.run(
        [sys.executable, "-m", "bench.wsload"],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        input=json.dumps({**spec, "mode": "publish", "cpus": sorted(cpus or [])}) + "\n",
        capture_output=True,
        text=True,
        timeout=float(spec["duration"]) + PUBLISH_GRACE + 10.0,
        check=False,
    )
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"publisher failed ({done.returncode}): {done.stderr[-1500:]}")
    return json.loads(lines[-1])


if __name__ == "__main__":
    main()
