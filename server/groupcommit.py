"""Group commit, shared by both storage backends: calls that arrive while a batch is being
written wait and then go together as `run(items)` (one transaction, one durable commit),
which returns one result per item. Many writers share one fsync or WAL flush."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def _settle(future: asyncio.Future, result: Any) -> None:
    if not future.done():  # its caller may have been cancelled; the write stands regardless
        future.set_result(result)


def _fail(future: asyncio.Future, error: BaseException) -> None:
    if not future.done():
        future.set_exception(error)


class GroupCall(Generic[T, R]):
    """If a batch fails, its items run again one at a time, so only the bad one fails;
    except for the exceptions in `fail_all` (the database unreachable), which fail the
    whole batch at once. `limit` caps a batch (None: no cap). Up to `parallel` batches are
    written at once (each in its own transaction): an item arriving while one is being
    written then starts at once instead of waiting for it, which halves its wait when the
    database, not this process, is what a batch waits for."""

    def __init__(self, run: Callable[[list[T]], Awaitable[list[R]]], limit: int | None = None,
                 fail_all: tuple[type[BaseException], ...] = (), parallel: int = 1):
        self._run = run
        self._limit = limit
        self._fail_all = fail_all
        self._parallel = parallel
        self._queue: list[tuple[T, asyncio.Future]] = []
        self._tasks: set[asyncio.Task] = set()

    async def __call__(self, item: T) -> R:
        future = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        self._tasks = {t for t in self._tasks if not t.done()}
        if len(self._tasks) < self._parallel:
            self._tasks.add(asyncio.create_task(self._drain()))
        return await future

    async def drained(self) -> None:
        """Wait for the writes queued so far (before closing the database)."""
        while self._tasks:
            await asyncio.shield(asyncio.gather(*self._tasks))
            self._tasks = {t for t in self._tasks if not t.done()}

    async def _drain(self) -> None:
        while self._queue:
            cut = len(self._queue) if self._limit is None else self._limit
            batch, self._queue = self._queue[:cut], self._queue[cut:]
            try:
                results = await self._run([item for item, _ in batch])
            except self._fail_all as e:
                for _, future in batch:
                    _fail(future, e)
                continue
            except Exception:
                for item, future in batch:  # isolate the failure: one transaction each
                    try:
                        _settle(future, (await self._run([item]))[0])
                    except Exception as e:
                        _fail(future, e)
                continue
            for (_, future), result in zip(batch, results):
                _settle(future, result)
