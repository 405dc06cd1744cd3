"""Usage bookkeeping written off the hot path: `last_used_at` (at most once per interval per
token) and the buffered denied-verify audit records, flushed together every `flush_interval`."""

from __future__ import annotations

import asyncio

import structlog

from authority.audit import DenialLog
from authority.records import TokenRecord
from authority.store import AuthorityStore
from server.periodic import Periodic

log = structlog.get_logger("sable.authority")


class Usage:
    def __init__(self, store: AuthorityStore, denials: DenialLog, last_used_interval: float = 60.0,
                 flush_interval: float = 1.0):
        self._store = store
        self.denials = denials
        self.last_used_interval = last_used_interval
        self.flush_interval = flush_interval
        self.pending: dict[str, int] = {}  # token id -> last use not yet written
        self._writing: dict[str, int] = {}  # being written now: still the freshest until it commits
        self._loop = Periodic("flush", self.flush, flush_interval)
        self._flushing = asyncio.Lock()  # an explicit flush waits for the background one

    def used(self, rec: TokenRecord, now: int) -> None:
        """Note a successful use; written at most once per interval per token."""
        if now - rec.last_used_at >= self.last_used_interval:
            rec.last_used_at = now
            self.pending[rec.id] = now

    def last_used(self, token_id: str, stored: int | None) -> int | None:
        """The freshest known last use: a pending one, else what the database holds."""
        return self.pending.get(token_id) or self._writing.get(token_id) or stored

    async def flush(self) -> None:
        """Write buffered denial audits and last-used times. What a failed write held is kept
        for the next flush, so a database outage loses no denial record or last use."""
        async with self._flushing:
            records = self.denials.take()
            try:
                await self._store.write_audit(records)
            except BaseException:
                self.denials.restore(records)
                raise
            pending, self.pending = self.pending, {}
            self._writing = pending
            try:
                await self._store.touch(pending)
            except BaseException:
                self.pending = {**pending, **self.pending}  # newer uses win
                raise
            finally:
                self._writing = {}

    async def start(self) -> None:
        self._loop.start()

    async def stop(self) -> None:
        await self._loop.stop()
        await self.flush()
