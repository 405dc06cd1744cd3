"""The discharger's metrics (SPEC §13), beside the HTTP ones in `server.metrics`."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from server.audit import AuditRecord
from server.metrics import Metrics

HASH_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
LOGIN_EVENTS = frozenset({"login", "browser_login"})  # a password checked (API or browser)


class DischargerMetrics(Metrics):
    def __init__(self) -> None:
        super().__init__()
        r = self.registry
        logins = Counter("sable_logins_total", "Password logins, by result.", ["result"], registry=r)
        self.logins = {result: logins.labels(result) for result in ("ok", "failed", "throttled")}
        self.discharges = Counter("sable_discharges_total", "Discharges issued.", registry=r)
        self.password_hash = Histogram("sable_password_hash_seconds", "Time to hash or check a password (argon2id).",
                                       buckets=HASH_BUCKETS, registry=r)

    def observe_audit(self, record: AuditRecord) -> None:
        if record.event in LOGIN_EVENTS and record.outcome in self.logins:
            self.logins[record.outcome].inc()
        elif record.event == "discharge":
            self.discharges.inc()
