"""Rate limiting: a sliding-window counter per key, and the key a client address counts as."""

from __future__ import annotations

import ipaddress
import time
from collections import OrderedDict


def throttle_key(address: str) -> str:
    """The unit a rate limit counts: the address, or its /64 for IPv6 (one host's usual share)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if ip.version == 4:
        return str(ip)
    if ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ipaddress.ip_network(f"{ip}/64", strict=False))


class SlidingCounter:
    """Counts events per key within a window, with bounded memory (oldest keys dropped)."""

    def __init__(self, limit: int, window: float, max_keys: int = 100_000):
        self.limit = limit
        self.window = window
        self.max_keys = max_keys
        self._hits: OrderedDict[str, list[float]] = OrderedDict()

    def _live(self, key: str, now: float) -> list[float]:
        hits = self._hits.get(key)
        if hits is None:
            return []
        cutoff = now - self.window
        while hits and hits[0] <= cutoff:
            hits.pop(0)
        return hits

    def retry_after(self, key: str, now: float | None = None) -> int | None:
        """Seconds to wait if `key` is over the limit, else None."""
        now = time.monotonic() if now is None else now
        hits = self._live(key, now)
        if len(hits) >= self.limit:
            return max(1, int(hits[0] + self.window - now) + 1)
        return None

    def add(self, key: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        hits = self._live(key, now)
        hits.append(now)
        self._hits[key] = hits
        self._hits.move_to_end(key)
        while len(self._hits) > self.max_keys:
            self._hits.popitem(last=False)

    def clear(self, key: str) -> None:
        self._hits.pop(key, None)
