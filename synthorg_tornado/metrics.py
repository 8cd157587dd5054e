"""Prometheus metrics, one registry per application (no module-level singletons)."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class _CallbackCounter(Collector):
    """A counter owned by a service (a plain integer there), read at scrape time."""

    def __init__(self, name: str, documentation: str, read: Callable[[], float]) -> None:
        self.name, self.documentation, self.read = name, documentation, read

    def collect(self) -> Iterator[CounterMetricFamily]:
        yield CounterMetricFamily(self.name, self.documentation, value=self.read())


def read_scrape_token(path: str | None) -> bytes | None:
    """The SHA-256 digest of `metrics.token_file`, read once at start-up (config check has
    validated it), so a request compares digests in constant time and the token itself is not
    kept in memory."""
    if path is None:
        return None
    return hashlib.sha256(Path(path).read_text(encoding="utf-8").strip().encode()).digest()


class Metrics:
    def __init__(self, scrape_token_digest: bytes | None = None) -> None:
        self.scrape_token_digest = scrape_token_digest
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "synthorg_http_requests",
            "HTTP requests by route, method and status.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "synthorg_http_request_duration_seconds",
            "HTTP request latency by route.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.open_websockets = Gauge(
            "synthorg_open_websockets", "Open WebSocket connections in this process.", registry=self.registry
        )
        self.active_sessions = Gauge(
            "synthorg_active_sessions", "Live sessions in this process's cache.", registry=self.registry
        )
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def watch(self, active_sessions: Callable[[], float], failed_logins: Callable[[], float]) -> None:
        self.active_sessions.set_function(active_sessions)
        self.registry.register(
            _CallbackCounter("synthorg_failed_logins", "Failed login attempts.", failed_logins)
        )

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        # The labelled children are looked up once per (route, method, status), not per request.
        key = (route, method, status)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = (
                self.requests.labels(route, method, str(status)),
                self.latency.labels(route),
            )
        children[0].inc()
        children[1].observe(seconds)

    def is_scrape_token(self, presented: str) -> bool:
        if self.scrape_token_digest is None:
            return False
        digest = hashlib.sha256(presented.encode(errors="replace")).digest()
        return hmac.compare_digest(digest, self.scrape_token_digest)

    def render(self) -> bytes:
        return generate_latest(self.registry)
