"""Prometheus metrics both services share (SPEC §13): HTTP requests by route pattern, and
the plumbing each service's own metrics use.

Counts of domain events (mint, strip, revoke, login, discharge) come from the audit records
those events already make (`observe_audit`), so the metrics agree with the audit trail by
construction and no domain code knows about Prometheus.

With `--workers N` the supervisor gives every worker one `PROMETHEUS_MULTIPROC_DIR`
(prometheus-client's multiprocess mode): each worker writes its values to files there and any
worker's scrape reads them all, counters and histograms summed, gauges as each declares.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector

from server.audit import AuditRecord
from server.periodic import Periodic

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = CONTENT_TYPE_LATEST
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
disable_created_metrics()  # no `_created` series: they double a scrape's size and nothing here reads them
REFRESH_EVERY = 1.0  # seconds: how stale another worker's gauges may be in a scrape


class Metrics:
    """A service's registry with the HTTP metrics; services subclass it with their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("sable_http_requests_total", "HTTP requests answered, by route pattern.",
                                ["route", "method", "status"], registry=self.registry)
        self.duration = Histogram("sable_http_request_duration_seconds", "Time to answer a request, by route pattern.",
                                  ["route"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self._children: dict[tuple[str, str, int], tuple] = {}
        self._pending: dict[tuple[str, str, int], int] = {}  # requests counted since the last flush
        self._refreshers: list[Callable[[], None]] = [self._flush]
        self._loop = Periodic("metrics_refresh", self.refresh, REFRESH_EVERY, at_start=True)

    # --- recording -----------------------------------------------------------------------------

    def request(self, route: str, method: str, status: int, seconds: float | None = None) -> None:
        """Count one answered request. Label children are bound once per (route, method,
        status), since `.labels()` costs more than the increment itself, and the count goes
        into a plain dict that a scrape (or the refresh loop) adds to the counter: the hot
        path takes no lock for it."""
        if method not in METHODS:  # any token may arrive as a method: keep the label set bounded
            method = "other"
        key = (route, method, status)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = (self.requests.labels(route, method, str(status)),
                                               self.duration.labels(route))
            self._pending[key] = 0
        self._pending[key] += 1
        if seconds is not None:  # None: a route too hot for a histogram's lock (the verifier's forward-auth)
            children[1].observe(seconds)

    def _flush(self) -> None:
        for key, n in self._pending.items():
            if n:
                self._children[key][0].inc(n)
                self._pending[key] = 0

    def observe_audit(self, record: AuditRecord) -> None:
        """Count the domain event an audit record stands for (services override)."""

    # --- gauges read from the service's state --------------------------------------------------

    def refresh_with(self, fn: Callable[[], None]) -> None:
        """Call `fn` to set gauges before each scrape (and, with several workers, every second,
        so the other workers' values stay current)."""
        self._refreshers.append(fn)

    def refresh(self) -> None:
        for fn in self._refreshers:
            fn()

    async def start(self) -> None:
        if os.environ.get(MULTIPROC_ENV):
            self._loop.start()

    async def stop(self) -> None:
        await self._loop.stop()

    # --- the scrape ------------------------------------------------------------------------------

    def render(self) -> bytes:
        self.refresh()
        path = os.environ.get(MULTIPROC_ENV)
        if not path:
            return generate_latest(self.registry)
        merged = CollectorRegistry()
        MultiProcessCollector(merged, path)
        return generate_latest(merged)

