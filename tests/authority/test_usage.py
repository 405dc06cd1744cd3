"""Unit tests for `authority.usage.Usage` (last-used bookkeeping, flushing to a real store)
and `authority.audit.DenialLog` (log-line cap and buffer bound for denied verifies)."""

from __future__ import annotations

import os

import pytest

from authority.audit import DenialLog
from authority.records import TokenRecord
from authority.store import TokenRow, open_store
from authority.usage import Usage
from server.audit import AuditRecord


@pytest.fixture
async def store(tmp_path):
    s = await open_store(str(tmp_path / "authority.db"))
    await s.create_org("acme", 1, AuditRecord("org_create"))
    yield s
    await s.close()


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
