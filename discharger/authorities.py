"""The authorities this discharger serves, as far as a discharge needs to know them: which
caveats every one of them understands (the `caveats` of their /v1/info). An authority denies
a caveat it does not know (SPEC §3), so a discharge carries a caveat added after the first
release only once each configured authority lists it (SPEC §16, §19): an upgrade rolls out
authorities first, and nothing breaks on the way."""

from __future__ import annotations

import asyncio
import time

import structlog

from clients.errors import SableAPIError

REFRESH = 60.0  # seconds between reads of the authorities' /v1/info
RETRY = 5.0  # after a failed read: the last answer stands meanwhile
TIMEOUT = 2.0

log = structlog.get_logger("sable.discharger")


class Authorities:
    def __init__(self, urls: tuple[str, ...]):
        self.urls = urls
        self._understood: frozenset[str] = frozenset()
        self._next = 0.0  # monotonic time of the next read
        self._lock = asyncio.Lock()

    async def understood(self) -> frozenset[str]:
        """The caveats every configured authority lists: none without a configured authority,
        or until each has answered once. Read before the first discharge, then at most every
        60 s; a failed read keeps what the last one found."""
        if not self.urls:
            return frozenset()
        if time.monotonic() >= self._next:
            async with self._lock:  # one read at a time; the others take its answer
                if time.monotonic() >= self._next:
                    await self._read()
        return self._understood

    async def _read(self) -> None:
        from clients.sdk import AuthorityClient  # aiohttp: only once a discharge is asked for

        found: frozenset[str] | None = None
        try:
            for url in self.urls:
                async with AuthorityClient(url, timeout=TIMEOUT, retries=0) as authority:
                    listed = (await authority.info()).get("caveats")
                names = frozenset(n for n in listed if isinstance(n, str)) if isinstance(listed, list) else frozenset()
                found = names if found is None else found & names
        except SableAPIError as e:
            log.warning("authority_info_failed", error=e.message)
            self._next = time.monotonic() + RETRY
            return
        if found != self._understood:
            log.info("authority_caveats", understood=sorted(found or ()))
        self._understood = found or frozenset()
        self._next = time.monotonic() + REFRESH
