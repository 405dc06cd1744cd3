"""The authority's audit policy.

State changes (mint, strip, revoke, org) are written in the same transaction as the change.
Denied verifies are buffered and flushed in batches; under a flood their log lines are
capped per second and the rest are counted, so the count is never lost.
"""

from __future__ import annotations

import structlog

from server.audit import AuditRecord

log = structlog.get_logger("sable.audit")


class DenialLog:
    """Buffers denied-verify records for batched writes; logs at most `per_second` lines."""

    def __init__(self, per_second: int = 50, max_buffer: int = 10_000):
        self.per_second = per_second
        self.max_buffer = max_buffer
        self.buffer: list[AuditRecord] = []
        self.dropped = 0  # records beyond max_buffer, counted in the next flushed row
        self.suppressed = 0  # log lines not written this second
        self._second = 0
        self._lines = 0

    def add(self, record: AuditRecord) -> None:
        now = int(record.at)
        if now != self._second:
            if self.suppressed:
                log.warning("verify_denials_suppressed", count=self.suppressed)
            self._second, self._lines, self.suppressed = now, 0, 0
        if self._lines < self.per_second:
            self._lines += 1
            record.emit()
        else:
            self.suppressed += 1
        if len(self.buffer) < self.max_buffer:
            self.buffer.append(record)
        else:
            self.dropped += 1

    def take(self) -> list[AuditRecord]:
        out, self.buffer = self.buffer, []
        if self.dropped:
            out.append(AuditRecord("verify_denials_aggregated", outcome="denied", detail={"count": self.dropped}))
            self.dropped = 0
        return out

    def restore(self, records: list[AuditRecord]) -> None:
        """Put back records whose write failed, ahead of newer ones. As in `add`, records
        beyond `max_buffer` are kept only as a count."""
        lost = 0
        merged = []
        for r in records + self.buffer:
            if r.event == "verify_denials_aggregated":  # folded back into the count
                lost += (r.detail or {}).get("count", 0)
            else:
                merged.append(r)
        lost += max(0, len(merged) - self.max_buffer)
        self.buffer = merged[:self.max_buffer]
        self.dropped += lost
