"""`server.groupcommit.GroupCall`: calls that arrive while a batch is written go together;
with `parallel=2`, one arriving while a batch is written starts at once."""

from __future__ import annotations

import asyncio

from server.groupcommit import GroupCall


async def test_calls_arriving_during_a_write_go_together_and_parallel_starts_one_at_once():
    for parallel, expected in ((1, [[1], [2, 3, 4]]), (2, [[1], [2], [3, 4]])):
        batches: list[list[int]] = []
        release = asyncio.Event()

        async def run(items: list[int], batches=batches, release=release) -> list[int]:
            batches.append(items)
            await release.wait()
            return [i * 10 for i in items]

        group = GroupCall(run, parallel=parallel)
        calls = []
        for i in (1, 2, 3, 4):
            calls.append(asyncio.create_task(group(i)))
            await asyncio.sleep(0)  # each call reaches the group before the next
            await asyncio.sleep(0)
        release.set()
        assert await asyncio.gather(*calls) == [10, 20, 30, 40]
        await group.drained()
        assert batches == expected, (parallel, batches)


async def test_a_failing_batch_is_retried_one_item_at_a_time():
    async def run(items: list[int]) -> list[int]:
        if 2 in items:
            raise ValueError("bad item")
        return items

    group = GroupCall(run, parallel=2)
    results = await asyncio.gather(*(group(i) for i in (1, 2, 3)), return_exceptions=True)
    assert results[0] == 1 and isinstance(results[1], ValueError) and results[2] == 3
