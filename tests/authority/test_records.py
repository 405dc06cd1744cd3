"""Unit tests for `authority.records.TokenCache`: loading records from a real store, the
master key check, the LRU bound, invalidation and applying feed entries.

A cached record is served as is, so "still cached" shows as a stale `revoked=False` after the
token was revoked in the store behind the cache's back."""

from __future__ import annotations

import os

from authority.records import TokenCache
from authority.root_keys import RootKeys
from authority.store import RevocationRow, TokenRow
from server.audit import AuditRecord
from tests.support import audited

MASTER = os.urandom(32)


async def stored_token(store, keys: RootKeys = RootKeys(MASTER)) -> tuple[str, bytes]:
    """A permission token in the store: its id and initial signature."""
    token_id = os.urandom(16).hex()
    sealed, sig0 = keys.new_token_key(token_id, b"\x01" + bytes.fromhex(token_id))
    row = TokenRow(token_id, "permission", None, "acme", None, "alice", 2, sealed, 100, last_used_at=50)
    assert await store.insert_token(row, AuditRecord("mint"))
    return token_id, sig0


async def revoke_behind_the_cache(store, token_id: str) -> None:
    assert await store.revoke_token(token_id, 200, audited(AuditRecord("revoke"))) == [token_id]


async def test_unknown_id_is_none_and_not_cached(store):
    cache = TokenCache(store, RootKeys(MASTER))
    assert await cache.get(os.urandom(16).hex()) is None
    assert len(cache) == 0


async def test_record_carries_the_tokens_initial_signature(store):
    token_id, sig0 = await stored_token(store)
    cache = TokenCache(store, RootKeys(MASTER))
    rec = await cache.get(token_id)
    assert rec.sig0 == sig0
    assert (rec.id, rec.kind, rec.org, rec.user, rec.parent, rec.caveat_count) == (
        token_id, "permission", "acme", "alice", None, 2)
    assert (rec.revoked, rec.revoked_fps, rec.last_used_at) == (False, set(), 50)
    assert await cache.get(token_id) is rec
    assert len(cache) == 1


async def test_wrong_master_key_gives_no_signature(store):
    token_id, _ = await stored_token(store)
    rec = await TokenCache(store, RootKeys(os.urandom(32))).get(token_id)
    assert rec is not None and rec.sig0 is None


async def test_cache_is_a_bounded_lru(store):
    a, b, c = [(await stored_token(store))[0] for _ in range(3)]
    cache = TokenCache(store, RootKeys(MASTER), max_entries=2)
    await cache.get(a)
    await cache.get(b)
    await cache.get(a)  # now b is the least recently used
    await cache.get(c)
    assert len(cache) == 2

    for token_id in (a, b, c):
        await revoke_behind_the_cache(store, token_id)
    assert (await cache.get(a)).revoked is False  # still cached
    assert (await cache.get(b)).revoked is True  # was evicted, so reloaded


async def test_invalidate_drops_the_record(store):
    token_id, _ = await stored_token(store)
    cache = TokenCache(store, RootKeys(MASTER))
    before = await cache.get(token_id)
    await revoke_behind_the_cache(store, token_id)
    assert (await cache.get(token_id)).revoked is False
    cache.invalidate([token_id, os.urandom(16).hex()])
    after = await cache.get(token_id)
    assert after is not before and after.revoked is True


async def test_apply_drops_revoked_tokens_and_adds_fingerprints_in_place(store):
    revoked_id, _ = await stored_token(store)
    attenuated_id, _ = await stored_token(store)
    cache = TokenCache(store, RootKeys(MASTER))
    await cache.get(revoked_id)
    attenuated = await cache.get(attenuated_id)
    await revoke_behind_the_cache(store, revoked_id)

    fp, uncached_fp = os.urandom(32), os.urandom(32)
    cache.apply([
        RevocationRow(1, revoked_id, "token", 200),
        RevocationRow(2, attenuated_id, "attenuation", 200, fp),
        RevocationRow(3, os.urandom(16).hex(), "attenuation", 200, uncached_fp),  # not cached: ignored
    ])
    assert len(cache) == 1
    assert (await cache.get(revoked_id)).revoked is True
    assert await cache.get(attenuated_id) is attenuated  # not reloaded
    assert attenuated.revoked_fps == {fp}  # the store does not have it: it was added in place


# --- one token's revoked attenuations: bounded in memory, judged by the store past the cap ----


async def revoke_attenuations(store, token_id: str, n: int) -> list[bytes]:
    fps = [os.urandom(32) for _ in range(n)]
    for fp in fps:
        assert await store.revoke_attenuation(token_id, fp, 200, audited(AuditRecord("revoke"))) == []
    return fps


async def test_store_reports_too_many_fingerprints_as_none(store):
    token_id, _ = await stored_token(store)
    fps = await revoke_attenuations(store, token_id, 3)
    assert (await store.load_token(token_id))[1] == frozenset(fps)
    assert (await store.load_token(token_id, 3))[1] == frozenset(fps)
    assert (await store.load_token(token_id, 2))[1] is None
    assert await store.attenuation_revoked(token_id, [os.urandom(32), fps[1]])
    assert not await store.attenuation_revoked(token_id, [os.urandom(32)])
    assert not await store.attenuation_revoked(token_id, [])
    other, _ = await stored_token(store)  # a fingerprint counts only for its own token
    assert not await store.attenuation_revoked(other, fps)


async def test_past_the_cap_a_record_keeps_no_fingerprints_and_the_store_judges(store):
    token_id, _ = await stored_token(store)
    cache = TokenCache(store, RootKeys(MASTER), max_revoked=4)
    fps = await revoke_attenuations(store, token_id, 4)
    rec = await cache.get(token_id)
    assert rec.revoked_fps == set(fps)  # at the cap: all in memory

    more = await revoke_attenuations(store, token_id, 1)
    cache.revoke_attenuation(token_id, more[0])  # the fifth: over the cap
    assert rec.revoked_fps is None
    assert await cache.attenuation_revoked(rec, (fps[0],))
    assert await cache.attenuation_revoked(rec, (os.urandom(32), more[0]))

    cache.invalidate([token_id])  # a reload past the cap holds none either
    rec = await cache.get(token_id)
    assert rec.revoked_fps is None
    assert await cache.attenuation_revoked(rec, (fps[3],))


async def test_past_the_cap_clear_answers_are_remembered_until_revoked(store):
    token_id, _ = await stored_token(store)
    cache = TokenCache(store, RootKeys(MASTER), max_revoked=4)
    await revoke_attenuations(store, token_id, 5)
    rec = await cache.get(token_id)
    clear = (os.urandom(32), os.urandom(32))
    assert not await cache.attenuation_revoked(rec, clear)
    assert rec.cleared == set(clear)

    # Revoked in the store behind the cache's back: the remembered answer still stands...
    await store.revoke_attenuation(token_id, clear[1], 300, audited(AuditRecord("revoke")))
    assert not await cache.attenuation_revoked(rec, clear)
    # ...until the revocation reaches the cache (directly or through the feed).
    cache.apply([RevocationRow(9, token_id, "attenuation", 300, clear[1])])
    assert rec.cleared == {clear[0]}
    assert await cache.attenuation_revoked(rec, clear)


async def test_the_clear_set_is_bounded(store):
    token_id, _ = await stored_token(store)
    cache = TokenCache(store, RootKeys(MASTER), max_revoked=4)
    await revoke_attenuations(store, token_id, 5)
    rec = await cache.get(token_id)
    for _ in range(20):
        assert not await cache.attenuation_revoked(rec, (os.urandom(32), os.urandom(32)))
        assert len(rec.cleared) <= 4


async def test_a_clear_answer_that_raced_a_revocation_is_not_kept(store):
    token_id, _ = await stored_token(store)
    cache = TokenCache(store, RootKeys(MASTER), max_revoked=4)
    await revoke_attenuations(store, token_id, 5)
    rec = await cache.get(token_id)
    fp = os.urandom(32)
    real = store.attenuation_revoked

    async def answer_then_revoke(token_id_, fps):
        answer = await real(token_id_, fps)  # read before the revocation commits
        await store.revoke_attenuation(token_id, fp, 300, audited(AuditRecord("revoke")))
        cache.revoke_attenuation(token_id, fp)
        return answer

    store.attenuation_revoked = answer_then_revoke
    try:
        assert not await cache.attenuation_revoked(rec, (fp,))  # this one verify raced it
    finally:
        del store.attenuation_revoked
    assert fp not in rec.cleared
    assert await cache.attenuation_revoked(rec, (fp,))
