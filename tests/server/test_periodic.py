"""`server.periodic.Periodic`: the one background loop the services' periodic work runs on."""

from __future__ import annotations

import asyncio

import structlog

from server.periodic import Periodic


async def test_steps_on_the_period_on_waking_and_through_failures():
    calls: list[str] = []

    async def step():
        calls.append("step")
        if len(calls) == 2:
            raise RuntimeError("a bad step")

    loop = Periodic("test", step, every=0.05)
    with structlog.testing.capture_logs() as logs:
        loop.start()
        await asyncio.sleep(0.18)
        assert 2 <= len(calls) <= 4  # about every 50 ms, none at start
        assert any(e["event"] == "test_failed" for e in logs)  # logged, and the loop went on
        before = len(calls)
        await asyncio.sleep(0.08)
        assert len(calls) > before
    await loop.stop()
    assert loop.task is None


async def test_wake_runs_the_next_step_now_and_at_start_runs_one_first():
    calls: list[float] = []
    loop = Periodic("test", lambda: calls.append(asyncio.get_running_loop().time()), every=10, at_start=True)
    loop.start()
    await asyncio.sleep(0.02)
    assert len(calls) == 1  # at start
    loop.wake()
    await asyncio.sleep(0.02)
    assert len(calls) == 2  # woken, long before the 10 s period
    await loop.stop()
    await loop.stop()  # twice is fine
    loop.start()  # and it starts again
    await asyncio.sleep(0.02)
    assert len(calls) == 3
    await loop.stop()
