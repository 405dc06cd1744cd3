"""The authority's metrics (SPEC §13), beside the HTTP ones in `server.metrics`."""

from __future__ import annotations

import time

from prometheus_client import Counter, Gauge, Histogram

from server.audit import AuditRecord
from server.metrics import LATENCY_BUCKETS, Metrics


class AuthorityMetrics(Metrics):
    def __init__(self) -> None:
        super().__init__()
        r = self.registry
        verify = Counter("sable_verify_total", "POST /v1/verify answers, by result.", ["result"], registry=r)
        self.allowed, self.denied = verify.labels("allowed"), verify.labels("denied")
        self.mint = Counter("sable_mint_total", "Permission tokens minted.", registry=r)
        self.strip = Counter("sable_strip_total", "Service tokens stripped.", registry=r)
        revocations = Counter("sable_revocations_total", "Revocations made, by scope.", ["scope"], registry=r)
        self.revoked = {scope: revocations.labels(scope) for scope in ("token", "attenuation")}
        # With several workers: the cursor every worker has reached, and the worst lag.
        self.feed_cursor = Gauge("sable_feed_cursor", "The revocation feed position applied.", registry=r,
                                 multiprocess_mode="min")
        self.feed_lag = Gauge("sable_feed_lag_seconds", "Seconds since this process last confirmed its revocation "
                              "view current.", registry=r, multiprocess_mode="max")
        self.cache_entries = Gauge("sable_cache_entries", "Entries in the authority's caches.", ["cache"], registry=r,
                                   multiprocess_mode="sum")
        deliveries = Counter("sable_webhook_deliveries_total", "Webhook delivery attempts, by result.", ["result"],
                             registry=r)
        self.deliveries = {result: deliveries.labels(result) for result in ("delivered", "failed", "refused")}
        self.outbox_depth = Gauge("sable_webhook_outbox_depth", "Webhook deliveries waiting in the outbox.",
                                  registry=r, multiprocess_mode="max")
        self.db_commit = Histogram("sable_db_commit_seconds", "Time to commit a write transaction.",
                                   buckets=LATENCY_BUCKETS, registry=r)

    def observe_audit(self, record: AuditRecord) -> None:
        if record.event == "mint":
            self.mint.inc()
        elif record.event == "strip":
            self.strip.inc()
        elif record.event == "revoke":
            self.revoked[(record.detail or {}).get("scope", "token")].inc()

    def watch(self, authority) -> None:
        """Read the feed and cache gauges from a running `authority.service.Authority`."""
        caches = {"records": authority.records, "chains": authority.checker.chains,
                  "parsed": authority.checker.parsed}
        children = {name: self.cache_entries.labels(name) for name in caches}

        sent = dict.fromkeys(self.deliveries, 0)

        def refresh() -> None:
            for result, n in authority.webhooks.results.items():  # added by difference
                self.deliveries[result].inc(n - sent[result])
                sent[result] = n
            if authority.webhooks.depth is not None:
                self.outbox_depth.set(authority.webhooks.depth)
            self.feed_cursor.set(authority.feed.head)
            self.feed_lag.set(max(0.0, time.monotonic() - authority.feed.read_at))
            for name, cache in caches.items():
                children[name].set(len(cache))
        self.refresh_with(refresh)
        authority.store.commit_observer = self.db_commit.observe
