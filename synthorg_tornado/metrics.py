"""Prometheus metrics, one registry per application (no module-level singletons).

With `server.processes > 1` every worker has its own memory, so a registry per worker made one
counter read `6, absent, 1, 7, 2...` across scrapes (each answered by whichever worker accepted
the connection) and broke `rate()`. We use prometheus_client's multiprocess mode rather than
aggregating in the main process: the main process then stays what `workers` promises (no
serving, no event loop), a scrape needs no round trip to it, and a worker's update stays one
write into its own mmap'd file (about a microsecond more than the in-memory counter). The main
process makes a private 0700 directory before it forks (`SharedDirectory`), each worker writes
its own files there, a scrape sums every file (the files of workers that exited included, so
counters stay monotonic), and the files of a worker's live gauges are removed when it exits.

Counters (requests, latency, failed logins) are then lab-wide. Gauges say what they count:
`synthorg_open_websockets` is per process (a `pid` label), and `synthorg_active_sessions` is
lab-wide, counted in SQL at scrape time (one indexed count) rather than in one process's cache.
With one process nothing of this applies and the output is as it always was.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import os
import shutil
import tempfile
from collections.abc import Awaitable, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, values
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector

from synthorg_tornado.errors import Unavailable

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
ACTIVE_SESSIONS_HELP = "Live sessions in this process's cache."
LAB_ACTIVE_SESSIONS_HELP = "Live sessions in the lab (counted in the database at scrape time)."
# Every label value comes from a fixed set, never from the client: the methods the server
# implements (anything else, `gEt` included, is `other`), handler classes as route templates,
# and status codes. An invented method or path would otherwise add a series for the life of
# the process (and of the multiprocess files), and a scrape would grow with it.
METHOD_LABELS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OTHER = "other"


def method_label(method: str) -> str:
    """The method as a label: case-sensitive (RFC 9110 method names are), unknown ones `other`."""
    return method if method in METHOD_LABELS else OTHER


def status_label(status: int) -> str:
    """A status code Tornado can send (100-599); anything else would be a handler's bug."""
    return str(status) if isinstance(status, int) and 100 <= status <= 599 else OTHER


class _CallbackCounter(Collector):
    """A counter owned by a service (a plain integer there), read at scrape time."""

    def __init__(self, name: str, documentation: str, read: Callable[[], float]) -> None:
        self.name, self.documentation, self.read = name, documentation, read

    def collect(self) -> Iterator[CounterMetricFamily]:
        yield CounterMetricFamily(self.name, self.documentation, value=self.read())


class _CacheEntries(Collector):
    """How many entries each of this process's caches holds, read at scrape time: what a
    sysadmin watches to see that memory follows the live state, not the history."""

    def __init__(self, caches: Mapping[str, Callable[[], int]]) -> None:
        self.caches = caches

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "synthorg_cache_entries", "Entries held in this process's caches.", labels=["cache"]
        )
        for name, read in self.caches.items():
            family.add_metric([name], read())
        yield family


class _FixedGauge(Collector):
    """A lab-wide gauge whose value was read (from the database) just before the scrape."""

    def __init__(self, name: str, documentation: str, value: float) -> None:
        self.name, self.documentation, self.value = name, documentation, value

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily(self.name, self.documentation, value=self.value)


class SharedDirectory:
    """The main process's side of multiprocess mode: the directory every worker writes to.

    Made (0700, so empty and private) before the first fork, with the environment variable the
    workers' metrics look for; a worker's live gauges are dropped when it exits; removed when
    the main process ends, so a later start never sums an earlier run's counters.
    """

    def __init__(self) -> None:
        self.path = tempfile.mkdtemp(prefix="synthorg-metrics-")
        self._previous = os.environ.get(MULTIPROCESS_ENV)
        os.environ[MULTIPROCESS_ENV] = self.path

    def worker_exited(self, pid: int) -> None:
        with contextlib.suppress(OSError):
            mark_process_dead(pid, self.path)

    def remove(self) -> None:
        if self._previous is None:
            os.environ.pop(MULTIPROCESS_ENV, None)
        else:
            os.environ[MULTIPROCESS_ENV] = self._previous
        shutil.rmtree(self.path, ignore_errors=True)


def _use_multiprocess_values(directory: str) -> None:
    """prometheus_client picks its value class when first imported, which happened in the main
    process before the directory existed; a worker switches it before making any metric. Its
    files are named from the environment variable, so that names `directory` too."""
    os.environ[MULTIPROCESS_ENV] = directory
    if not getattr(values.ValueClass, "_multiprocess", False):
        values.ValueClass = values.MultiProcessValue()


def read_scrape_token(path: str | None) -> bytes | None:
    """The SHA-256 digest of `metrics.token_file`, read once at start-up (config check has
    validated it), so a request compares digests in constant time and the token itself is not
    kept in memory."""
    if path is None:
        return None
    return hashlib.sha256(Path(path).read_text(encoding="utf-8").strip().encode()).digest()


class Metrics:
    """This process's metrics; `shared_directory` (a worker of several) makes them lab-wide."""

    def __init__(self, scrape_token_digest: bytes | None = None, shared_directory: str | None = None) -> None:
        self.scrape_token_digest = scrape_token_digest
        self.shared_directory = shared_directory
        self.registry = CollectorRegistry()
        if shared_directory is not None:
            _use_multiprocess_values(shared_directory)
        # In multiprocess mode the values live in the files; the scrape reads those, not this.
        own = self.registry if shared_directory is None else None
        self.requests = Counter(
            "synthorg_http_requests",
            "HTTP requests by route, method and status.",
            ["route", "method", "status"],
            registry=own,
        )
        self.latency = Histogram(
            "synthorg_http_request_duration_seconds",
            "HTTP request latency by route.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=own,
        )
        if shared_directory is None:
            self.open_websockets = Gauge(
                "synthorg_open_websockets", "Open WebSocket connections in this process.", registry=own
            )
            self.active_sessions: Gauge | None = Gauge(
                "synthorg_active_sessions", ACTIVE_SESSIONS_HELP, registry=own
            )
            self.failed_logins: Counter | None = None
        else:
            self.open_websockets = Gauge(
                "synthorg_open_websockets",
                "Open WebSocket connections, per process (pid).",
                registry=None,
                multiprocess_mode="liveall",
            )
            self.active_sessions = None
            self.failed_logins = Counter("synthorg_failed_logins", "Failed login attempts.", registry=None)
        self._count_active_sessions: Callable[[], Awaitable[int]] | None = None
        self._children: dict[tuple[str, str, str], tuple[Any, Any]] = {}

    def watch(
        self,
        active_sessions: Callable[[], float],
        failed_logins: Callable[[], float],
        lab_active_sessions: Callable[[], Awaitable[int]] | None = None,
        caches: Mapping[str, Callable[[], int]] | None = None,
    ) -> None:
        """Where the values owned by services are read: with one process from memory; with
        several, active sessions from the database (`lab_active_sessions`), and failed logins
        through `failed_login` (the service calls it), since a scrape reads only the files."""
        if self.shared_directory is None:
            assert self.active_sessions is not None
            self.active_sessions.set_function(active_sessions)
            self.registry.register(
                _CallbackCounter("synthorg_failed_logins", "Failed login attempts.", failed_logins)
            )
            if caches:
                self.registry.register(_CacheEntries(caches))
        else:
            self._count_active_sessions = lab_active_sessions

    def failed_login(self) -> None:
        if self.failed_logins is not None:
            self.failed_logins.inc()

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        """`route` is a route template (the handler's class name), never a request's path.

        The labelled children are looked up once per (route, method, status), not per request;
        that lookup table is keyed by the labels, so it is as bounded as the series are."""
        key = (route, method_label(method), status_label(status))
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = (
                self.requests.labels(*key),
                self.latency.labels(route),
            )
        children[0].inc()
        children[1].observe(seconds)

    def is_scrape_token(self, presented: str) -> bool:
        if self.scrape_token_digest is None:
            return False
        digest = hashlib.sha256(presented.encode(errors="replace")).digest()
        return hmac.compare_digest(digest, self.scrape_token_digest)

    async def render(self) -> bytes:
        if self.shared_directory is None:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, self.shared_directory)
        if self._count_active_sessions is not None:
            try:
                count = await self._count_active_sessions()
            except Unavailable:
                # The counters are still worth having: the gauge is left out, not made up.
                pass
            else:
                registry.register(_FixedGauge("synthorg_active_sessions", LAB_ACTIVE_SESSIONS_HELP, count))
        # Reading the workers' files is disk work: off the IOLoop.
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, generate_latest, registry)
