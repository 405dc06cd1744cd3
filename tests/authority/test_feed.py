"""Unit tests for `authority.feed.RevocationFeed` on a real store: the head, polling into the
cache, long-poll waits and stopping. The poll interval is long (10 s) so that only `start`,
explicit `poll()` calls and pokes move the feed."""

from __future__ import annotations

import asyncio
import os
import time

import pytest

from authority.feed import RevocationFeed
from authority.records import TokenCache
from authority.root_keys import RootKeys
from authority.store import TokenRow
from server.audit import AuditRecord
from tests.support import audited

LONG = 10.0


@pytest.fixture
def cache(store):
    return TokenCache(store, RootKeys(os.urandom(32)))


@pytest.fixture
async def feed(store, cache):
    f = RevocationFeed(store, cache, interval=LONG)
    yield f
    await f.stop()


async def new_token(store) -> str:
    token_id = os.urandom(16).hex()
    row = TokenRow(token_id, "permission", None, "acme", None, None, 0, os.urandom(72), 100)
    assert await store.insert_token(row, AuditRecord("mint"))
    return token_id


async def revoke(store, token_id: str) -> None:
    assert await store.revoke_token(token_id, 200, audited(AuditRecord("revoke"))) == [token_id]


async def test_start_takes_the_stores_head(store, feed):
    for _ in range(3):
        await revoke(store, await new_token(store))
    await feed.start()
    assert feed.head == await store.revocation_head() > 0


async def test_poll_picks_up_a_revocation_and_applies_it(store, cache, feed):
    token_id = await new_token(store)
    await feed.start()
    start_head = feed.head
    assert (await cache.get(token_id)).revoked is False

    await revoke(store, token_id)
    await feed.poll()
    assert feed.head == await store.revocation_head() > start_head
    assert (await cache.get(token_id)).revoked is True  # the cached record was dropped


async def test_wait_past_returns_once_a_poked_revocation_is_polled(store, feed):
    token_id = await new_token(store)
    await feed.start()
    cursor = feed.head
    waiter = asyncio.create_task(feed.wait_past(cursor, timeout=5))
    await asyncio.sleep(0.01)
    assert not waiter.done()

    started = time.monotonic()
    await revoke(store, token_id)
    feed.poke()
    await asyncio.wait_for(waiter, 2)
    assert time.monotonic() - started < 1
    assert feed.head > cursor


async def test_wait_past_times_out_without_revocations(feed):
    await feed.start()
    started = time.monotonic()
    await feed.wait_past(feed.head, timeout=0.1)
    assert 0.09 <= time.monotonic() - started < 1


@pytest.mark.parametrize(("behind", "timeout"), [(1, 5.0), (0, 0.0)])
async def test_wait_past_returns_at_once_when_behind_or_no_timeout(store, feed, behind, timeout):
    await revoke(store, await new_token(store))
    await feed.start()
    started = time.monotonic()
    await feed.wait_past(feed.head - behind, timeout=timeout)
    assert time.monotonic() - started < 0.05


async def test_stop_cancels_the_poller(store, feed):
    await feed.start()
    head = feed.head
    await feed.stop()
    await revoke(store, await new_token(store))
    feed.poke()
    await asyncio.sleep(0.05)
    assert feed.head == head  # nothing polls any more
    await feed.stop()  # stopping twice is harmless


async def test_stop_before_start_is_harmless(store, cache):
    await RevocationFeed(store, cache).stop()
