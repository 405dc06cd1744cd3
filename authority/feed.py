"""The revocation feed: follows the revocations table and wakes long-polling readers.

Every process polls the table (cheap: one indexed range read) so a revocation made by any
worker reaches this worker's caches and feed readers within one poll interval. A local
revocation pokes the poller so it is seen at once.
"""

from __future__ import annotations

import asyncio
import contextlib

import structlog

from authority.records import TokenCache
from authority.store import AuthorityStore

log = structlog.get_logger("sable.feed")
MAX_ENTRIES = 1000


class RevocationFeed:
    def __init__(self, store: AuthorityStore, cache: TokenCache, interval: float = 0.2):
        self._store = store
        self._cache = cache
        self._interval = interval
        self.head = 0
        self._changed = asyncio.Condition()
        self._poke = asyncio.Event()
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        self.head = await self._store.revocation_head()
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def poke(self) -> None:
        self._poke.set()

    async def poll(self) -> None:
        while True:
            rows = await self._store.revocations_after(self.head, MAX_ENTRIES)
            if not rows:
                return
            self._cache.apply(rows)
            self.head = rows[-1].seq
            async with self._changed:
                self._changed.notify_all()

    async def _run(self) -> None:
        while True:
            try:
                await self.poll()
            except Exception:
                log.exception("feed_poll_failed")
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._poke.wait(), self._interval)
            self._poke.clear()

    async def wait_past(self, cursor: int, timeout: float) -> None:
        """Return once the head is past `cursor`, or after `timeout` seconds."""
        if self.head > cursor or timeout <= 0:
            return
        async with self._changed:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._changed.wait_for(lambda: self.head > cursor), timeout)
