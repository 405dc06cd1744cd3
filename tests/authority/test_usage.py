"""Unit tests for `authority.usage.Usage` (last-used bookkeeping, flushing to a real store)
and `authority.audit.DenialLog` (log-line cap and buffer bound for denied verifies)."""

from __future__ import annotations

import asyncio
import os

import pytest

from authority.audit import DenialLog
from authority.records import TokenRecord
from authority.store import TokenRow
from authority.usage import Usage
from server.audit import AuditRecord
from server.store import StoreError


async def new_record(store) -> TokenRecord:
    """A stored token and the cache record for it, never used yet."""
    token_id = os.urandom(16).hex()
    row = TokenRow(token_id, "permission", None, "acme", None, None, 0, os.urandom(72), 100)
    assert await store.insert_token(row, AuditRecord("mint"))
    return TokenRecord(token_id, "permission", "acme", None, None, 0, b"sig", False, set(), 0)


def denial(at: float, token_id: str | None = None) -> AuditRecord:
    return AuditRecord("verify_denied", outcome="denied", token_id=token_id, detail={"rule": "r"}, at=at)


# --- Usage -------------------------------------------------------------------------------------


async def test_a_use_is_recorded_once_per_interval(store):
    usage = Usage(store, DenialLog(), last_used_interval=60)
    rec = await new_record(store)
    usage.used(rec, 1000)
    assert usage.pending == {rec.id: 1000} and rec.last_used_at == 1000
    usage.used(rec, 1059)
    assert usage.pending == {rec.id: 1000} and rec.last_used_at == 1000
    usage.used(rec, 1060)
    assert usage.pending == {rec.id: 1060} and rec.last_used_at == 1060
    assert usage.last_used(rec.id, 5) == 1060
    assert usage.last_used("other", 5) == 5


async def test_flush_writes_last_used_and_denials(store):
    usage = Usage(store, DenialLog(), last_used_interval=60)
    used, unused = await new_record(store), await new_record(store)
    usage.used(used, 1000)
    usage.denials.add(denial(1000.1, unused.id))
    usage.denials.add(denial(1000.2))

    await usage.flush()
    assert (await store.load_token(used.id))[0].last_used_at == 1000
    assert (await store.load_token(unused.id))[0].last_used_at is None
    rows = await store.audit_rows("verify_denied")
    assert [(r.token_id, r.outcome, r.detail) for r in rows] == [
        (unused.id, "denied", {"rule": "r"}), (None, "denied", {"rule": "r"}),
    ]
    assert usage.pending == {} and usage.denials.buffer == []

    await usage.flush()  # nothing new: nothing written twice
    assert len(await store.audit_rows("verify_denied")) == 2


async def test_stop_flushes(store):
    usage = Usage(store, DenialLog(), last_used_interval=60, flush_interval=60)
    rec = await new_record(store)
    await usage.start()
    usage.used(rec, 1000)
    await usage.stop()
    assert (await store.load_token(rec.id))[0].last_used_at == 1000


class Outage:
    """The real store, except that its next `fail` writes find the database gone."""

    def __init__(self, store, fail: int = 1):
        self._store, self.fail = store, fail

    def __getattr__(self, name):
        return getattr(self._store, name)

    async def _maybe_fail(self):
        if self.fail:
            self.fail -= 1
            raise StoreError("database unavailable")

    async def write_audit(self, records):
        await self._maybe_fail()
        await self._store.write_audit(records)

    async def touch(self, pending):
        await self._maybe_fail()
        await self._store.touch(pending)


async def test_a_failed_flush_keeps_denials_for_the_next(store):
    usage = Usage(Outage(store), DenialLog(), last_used_interval=60)
    rec = await new_record(store)
    usage.used(rec, 1000)
    usage.denials.add(denial(1000.1, rec.id))
    with pytest.raises(StoreError):
        await usage.flush()
    usage.denials.add(denial(1000.2))
    await usage.flush()
    rows = await store.audit_rows("verify_denied")
    assert [r.token_id for r in rows] == [rec.id, None]  # the older one first, none lost
    assert (await store.load_token(rec.id))[0].last_used_at == 1000


async def test_a_failed_last_used_write_is_retried_newest_first(store):
    outage = Outage(store, fail=0)
    usage = Usage(outage, DenialLog(), last_used_interval=60)
    rec = await new_record(store)
    usage.used(rec, 1000)
    outage.fail = 1
    usage.denials.take()  # nothing to audit: the first write to fail is `touch`
    outage.write_audit = store.write_audit  # type: ignore[method-assign]
    with pytest.raises(StoreError):
        await usage.flush()
    assert usage.pending == {rec.id: 1000}
    usage.used(rec, 1100)  # a newer use while the database was away wins
    await usage.flush()
    assert (await store.load_token(rec.id))[0].last_used_at == 1100 and usage.pending == {}


async def test_an_explicit_flush_waits_for_the_background_one(store):
    usage = Usage(store, DenialLog(), flush_interval=0.001)
    for i in range(200):
        usage.denials.add(denial(1000 + i / 1000))
    await usage.start()
    await asyncio.sleep(0.002)  # the loop is most likely mid-write now
    await usage.flush()
    assert len(await store.audit_rows("verify_denied")) == 200
    await usage.stop()


# --- DenialLog ---------------------------------------------------------------------------------


def test_log_lines_are_capped_per_second_but_records_kept():
    log = DenialLog(per_second=2)
    records = [denial(1000 + i / 10) for i in range(5)]
    for r in records:
        log.add(r)
    assert log.suppressed == 3
    next_second = denial(1001.0)
    log.add(next_second)  # a new second starts a new allowance
    assert log.suppressed == 0
    assert log.take() == [*records, next_second]  # every record is kept, logged or not


def test_take_returns_everything_once():
    log = DenialLog(per_second=2)
    records = [denial(1000 + i / 10) for i in range(5)]
    for r in records:
        log.add(r)
    assert log.take() == records
    assert log.take() == []


async def test_buffer_overflow_is_counted_in_one_aggregated_record(store):
    log = DenialLog(per_second=100, max_buffer=3)
    records = [denial(1000 + i / 10) for i in range(7)]
    for r in records:
        log.add(r)
    assert log.buffer == records[:3]
    assert log.dropped == 4

    usage = Usage(store, log)
    await usage.flush()
    assert len(await store.audit_rows("verify_denied")) == 3
    (aggregated,) = await store.audit_rows("verify_denials_aggregated")
    assert aggregated.outcome == "denied" and aggregated.detail == {"count": 4}

    assert log.take() == []  # the count was reset with the flush


def test_restored_records_go_first_and_stay_bounded():
    log = DenialLog(max_buffer=3)
    old = [denial(1), denial(2)]
    log.add(denial(3))
    log.add(denial(4))
    log.restore(old)
    assert [r.at for r in log.buffer] == [1, 2, 3] and log.dropped == 1
    log.restore([AuditRecord("verify_denials_aggregated", detail={"count": 5})])
    assert len(log.buffer) == 3 and log.dropped == 6
    assert log.take()[-1].detail == {"count": 6}
