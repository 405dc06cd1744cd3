"""The verifier process's metrics (SPEC §17), beside the HTTP ones in `server.metrics`."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

from clients.verifier import Verifier
from server.metrics import Metrics

RESULTS = ("allowed", "denied", "unavailable")


class VerifierMetrics(Metrics):
    def __init__(self) -> None:
        super().__init__()
        r = self.registry
        decisions = Counter("sable_verifier_decisions_total", "Decisions answered, by result.", ["result"], registry=r)
        self._decisions = {result: decisions.labels(result) for result in RESULTS}
        self._decided = dict.fromkeys(RESULTS, 0)  # counted here, added to the counter at a scrape: no lock per request
        self.hits = Counter("sable_verifier_cache_hits_total", "Checks answered from the cache.", registry=r)
        self.misses = Counter("sable_verifier_cache_misses_total", "Checks that asked the authority.", registry=r)
        self.feed_lag = Gauge("sable_feed_lag_seconds", "Seconds since the revocation feed last answered.", registry=r)

    def decided(self, result: str) -> None:
        self._decided[result] += 1

    def watch(self, verifier: Verifier) -> None:
        """Follow a running verifier's counters (added by difference) and its feed lag."""
        seen = {"hits": 0, "misses": 0}

        def refresh() -> None:
            stats = verifier.stats
            self.hits.inc(stats.hits - seen["hits"])
            self.misses.inc(stats.misses - seen["misses"])
            seen["hits"], seen["misses"] = stats.hits, stats.misses
            self.feed_lag.set(max(0.0, stats.feed_lag))
            for result, n in self._decided.items():
                if n:
                    self._decisions[result].inc(n)
                    self._decided[result] = 0
        self.refresh_with(refresh)
