"""Opening a service's database from a command: one helper, so every command closes what it
opened, whatever fails in between."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any


@contextlib.asynccontextmanager
async def opened(open_store: Callable[..., Awaitable[Any]], location: str, **options: Any) -> AsyncIterator[Any]:
    """`async with opened(open_store, location, migrate=False) as store:` the store, closed on exit."""
    store = await open_store(location, **options)
    try:
        yield store
    finally:
        await store.close()
