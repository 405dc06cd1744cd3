"""One background loop for everything a service does on a period (the feed poll, the
last-used flush, key refreshes, the metrics refresh): started and stopped with the service,
woken early on demand, and never ended by a failing step (it is logged; the next one tries
again)."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import Awaitable, Callable

import structlog

from clients.errors import SableError

log = structlog.get_logger("sable")


class Periodic:
    """Call `step()` (plain or async) every `every` seconds, or as soon as `wake()` is called;
    with `at_start`, once right away too."""

    def __init__(self, name: str, step: Callable[[], Awaitable[object] | object], every: float,
                 at_start: bool = False):
        self.name = name
        self.every = every
        self._step = step
        self._at_start = at_start
        self._wake = asyncio.Event()
        self.task: asyncio.Task | None = None

    def start(self) -> None:
        if self.task is None or self.task.done():
            self.task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        task, self.task = self.task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def wake(self) -> None:
        """Run the next step now rather than at the end of the period."""
        self._wake.set()

    async def _run(self) -> None:
        if self._at_start:
            await self._once()
        while True:
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancel that lands as
            # a wake-up arrives (frequent with NOTIFY), and stop() then waits forever.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.every):
                    await self._wake.wait()
            self._wake.clear()
            await self._once()

    async def _once(self) -> None:
        try:
            done = self._step()
            if inspect.isawaitable(done):
                await done
        except SableError as e:  # an expected failure (a database outage, named where it happened)
            log.warning(f"{self.name}_failed", error=e.message)
        except Exception:
            log.exception(f"{self.name}_failed")
