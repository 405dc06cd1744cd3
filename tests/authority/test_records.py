"""Unit tests for `authority.records.TokenCache`: loading records from a real store, the
master key check, the LRU bound, invalidation and applying feed entries.

A cached record is served as is, so "still cached" shows as a stale `revoked=False` after the
token was revoked in the store behind the cache's back."""

from __future__ import annotations

import os

from authority.keystore import KeyStore
from authority.records import TokenCache
from authority.store import RevocationRow, TokenRow
from server.audit import AuditRecord

MASTER = os.urandom(32)


async def stored_token(store, keys: KeyStore = KeyStore(MASTER)) -> tuple[str, bytes]:
    """A permission token in the store: its id and initial signature."""
    token_id = os.urandom(16).hex()
    sealed, sig0 = keys.new_token_key(token_id, b"\x01" + bytes.fromhex(token_id))
    row = TokenRow(token_id, "permission", None, "acme", None, "alice", 2, sealed, 100, last_used_at=50)
    assert await store.insert_token(row, AuditRecord("mint"))
    return token_id, sig0


async def revoke_behind_the_cache(store, token_id: str) -> None:
    assert await store.revoke_token(token_id, 200, AuditRecord("revoke")) == [token_id]


async def test_unknown_id_is_none_and_not_cached(store):
    cache = TokenCache(store, KeyStore(MASTER))
    assert await cache.get(os.urandom(16).hex()) is None
    assert len(cache) == 0


async def test_record_carries_the_tokens_initial_signature(store):
    token_id, sig0 = await stored_token(store)
    cache = TokenCache(store, KeyStore(MASTER))
    rec = await cache.get(token_id)
    assert rec.sig0 == sig0
    assert (rec.id, rec.kind, rec.org, rec.user, rec.parent, rec.caveat_count) == (
        token_id, "permission", "acme", "alice", None, 2)
    assert (rec.revoked, rec.revoked_fps, rec.last_used_at) == (False, set(), 50)
    assert await cache.get(token_id) is rec
    assert len(cache) == 1


async def test_wrong_master_key_gives_no_signature(store):
    token_id, _ = await stored_token(store)
    rec = await TokenCache(store, KeyStore(os.urandom(32))).get(token_id)
    assert rec is not None and rec.sig0 is None


async def test_cache_is_a_bounded_lru(store):
    a, b, c = [(await stored_token(store))[0] for _ in range(3)]
    cache = TokenCache(store, KeyStore(MASTER), max_entries=2)
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
    cache = TokenCache(store, KeyStore(MASTER))
    before = await cache.get(token_id)
    await revoke_behind_the_cache(store, token_id)
    assert (await cache.get(token_id)).revoked is False
    cache.invalidate([token_id, os.urandom(16).hex()])
    after = await cache.get(token_id)
    assert after is not before and after.revoked is True


async def test_apply_drops_revoked_tokens_and_adds_fingerprints_in_place(store):
    revoked_id, _ = await stored_token(store)
    attenuated_id, _ = await stored_token(store)
    cache = TokenCache(store, KeyStore(MASTER))
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
