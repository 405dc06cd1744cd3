"""The caching verifier against the real authority on loopback."""

import asyncio
import os
import time

from clients import caveats
from clients.verifier import Verifier
from tests.support import SABLE, authority_url, service_token, strip

ACCESS = {"org": "acme", "action": "r", "app": "orders", "host": "worker-7"}


async def wait_for_cursor(v: Verifier) -> None:
    for _ in range(100):
        if v.cursor is not None:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the verifier never reached the feed")


async def test_miss_then_hit_give_the_same_decision(authority):
    ht = await service_token(authority)
    async with Verifier(authority_url(authority)) as v:
        await wait_for_cursor(v)
        first = await v.check([ht], ACCESS)
        second = await v.check([ht], ACCESS)
        assert first.allowed and second.allowed
        assert (first.id, first.user, first.caveats) == (second.id, second.user, second.caveats)
        assert not first.cached and second.cached
        assert (v.stats.misses, v.stats.hits) == (1, 1)


async def test_denials_are_not_cached(authority):
    ht = await service_token(authority)
    async with Verifier(authority_url(authority)) as v:
        await wait_for_cursor(v)
        for _ in range(2):
            d = await v.check([ht], {**ACCESS, "host": "worker-8"})
            assert not d.allowed and "hosts worker-7" in d.reason and d.error == "denied"
        assert v.stats.misses == 2 and len(v) == 0


async def test_revocation_drops_the_cached_allow_within_a_second(authority):
    ht = await service_token(authority)
    async with Verifier(authority_url(authority)) as v:
        await wait_for_cursor(v)
        assert (await v.check([ht], ACCESS)).allowed
        assert len(v) == 1
        # `sable revoke` as an operator would run it, against this authority.
        proc = await asyncio.create_subprocess_exec(
            SABLE, "revoke", ht, env={**os.environ, "SABLE_AUTHORITY_URL": authority_url(authority)},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await proc.communicate()
        assert proc.returncode == 0 and b"revoked attenuation" in out, err
        started = time.monotonic()
        while len(v):
            assert time.monotonic() - started < 1.0, "cached allow survived the revocation"
            await asyncio.sleep(0.01)
        d = await v.check([ht], ACCESS)
        assert not d.allowed and "revoked" in d.reason


async def test_expiry_is_rechecked_on_every_hit(authority):
    soon = caveats.format_time(int(time.time()) + 2)
    ht = await service_token(authority, f"expires {soon}")
    async with Verifier(authority_url(authority)) as v:
        await wait_for_cursor(v)
        assert (await v.check([ht], ACCESS)).allowed
        assert (await v.check([ht], ACCESS)).cached
        await asyncio.sleep(max(0, caveats.parse_time(soon) - time.time()) + 0.05)
        d = await v.check([ht], ACCESS)
        assert not d.allowed and "expired" in d.reason


async def test_authority_down_cached_allows_last_until_stale_after(authority):
    ht = await service_token(authority)
    other = await service_token(authority)
    async with Verifier(authority_url(authority), stale_after=1.0) as v:
        await wait_for_cursor(v)
        assert (await v.check([ht], ACCESS)).allowed
        await authority.client.close()  # the authority goes away
        assert (await v.check([ht], ACCESS)).cached  # still inside stale_after
        d = await v.check([other], ACCESS)  # never cached: fails closed at once
        assert not d.allowed and d.error == "unavailable" and "failing closed" in d.reason
        await asyncio.sleep(1.3)
        d = await v.check([ht], ACCESS)
        assert not d.allowed and d.error == "unavailable"
        assert v.stats.fail_closed == 2 and v.stats.feed_errors >= 1 and v.stats.feed_lag > 1.0


async def test_lru_is_bounded(authority):
    pt = await authority.mint(["apps orders"])
    st = (await strip(authority, pt))["token"]
    async with Verifier(authority_url(authority), max_entries=3) as v:
        await wait_for_cursor(v)
        for i in range(5):
            assert (await v.check([st], {**ACCESS, "host": f"h{i}"})).allowed
        assert len(v) == 3 and v.stats.evictions == 2
        status, body = await authority.post(f"/v1/tokens/{tokens_id(st)}/revoke", {}, authority.admin)
        for _ in range(100):
            if not len(v):
                break
            await asyncio.sleep(0.01)
        assert len(v) == 0 and v._by_id == {}


def tokens_id(token: str) -> str:
    from clients import tokens
    return tokens.parse(token).token_id


async def test_malformed_tokens_are_denied_not_cached(authority):
    async with Verifier(authority_url(authority)) as v:
        d = await v.check(["sable_st_garbage"], ACCESS)
        assert not d.allowed and d.error == "malformed_token"
