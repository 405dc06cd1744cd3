"""The authority's PostgreSQL store where replicas and the server itself interfere: lock
cycles, a server turned read-only, values the database refuses (SPEC §19, Failover; §4).
Each test holds locks or changes settings through a second, raw connection: a real server,
nothing simulated."""

from __future__ import annotations

import asyncio
import time

import asyncpg
import pytest

from authority.store import open_store
from clients.errors import BadRequest
from server.audit import AuditRecord
from server.store import StoreError
from tests.authority.test_store import insert, revoked_at, token
from tests.support import audited


@pytest.fixture
async def pg(pg_url):
    store = await open_store(pg_url)
    await store.create_org("acme", 1, AuditRecord("org_create", org="acme"))
    raw = await asyncpg.connect(pg_url, server_settings={"search_path": "authority"})
    yield store, raw
    await raw.close()
    await store.close()


async def test_touch_never_waits_for_a_row_another_transaction_holds(pg):
    """A revocation holds its root's row lock until commit. The last-used flush skips that row
    instead of waiting for it while holding the child's lock (the lock cycle that made a
    revocation deadlock and fail with 500)."""
    store, raw = pg
    root = token()
    child = token(parent=root.id)
    await insert(store, root, child)
    tx = raw.transaction()
    await tx.start()
    await raw.execute("SELECT 1 FROM tokens WHERE id = $1 FOR UPDATE", root.id)  # as revoke_token does
    started = time.monotonic()
    await asyncio.wait_for(store.touch({root.id: 500, child.id: 600}), 2)
    assert time.monotonic() - started < 1.5
    # The revocation goes on: its cascade takes the child's lock, which the flush no longer holds.
    await asyncio.wait_for(raw.execute("UPDATE tokens SET revoked_at = 7 WHERE id = ANY($1::text[])",
                                       [root.id, child.id]), 2)
    await tx.commit()
    loaded = {r: (await store.load_token(r))[0] for r in (root.id, child.id)}
    assert loaded[child.id].last_used_at == 600  # the row it could take was written
    assert loaded[root.id].last_used_at is None  # the held one was skipped, for the next flush
    await store.touch({root.id: 700})
    assert (await store.load_token(root.id))[0].last_used_at == 700


async def test_a_deadlocked_revocation_is_unavailable_and_changes_nothing(pg):
    """Whatever else closes a lock cycle with a revocation, the revocation answers 503 with
    Retry-After (StoreError), never a driver error (500), and leaves nothing half done."""
    store, raw = pg
    root = token()
    child = token(parent=root.id)
    await insert(store, root, child)
    await raw.execute("SET deadlock_timeout = '20s'")  # so the store's side is the one refused
    tx = raw.transaction()
    await tx.start()
    await raw.execute("UPDATE tokens SET last_used_at = 1 WHERE id = $1", child.id)
    revoking = asyncio.create_task(store.revoke_token(root.id, 9, audited(AuditRecord("revoke"))))
    await asyncio.sleep(0.3)  # the revocation holds the root and waits for the child
    closing = asyncio.create_task(raw.execute("UPDATE tokens SET last_used_at = 1 WHERE id = $1", root.id))
    with pytest.raises(StoreError) as caught:
        await asyncio.wait_for(revoking, 10)
    assert caught.value.retry_after and caught.value.code == "unavailable"
    assert "deadlock" in str(caught.value) and "deadlock" not in caught.value.message  # detail for operators
    await asyncio.wait_for(closing, 5)
    await tx.rollback()
    assert await revoked_at(store, root.id) is None and await revoked_at(store, child.id) is None
    assert await store.revoke_token(root.id, 10, audited(AuditRecord("revoke"))) == sorted([root.id, child.id])


async def test_a_read_only_server_is_unavailable(pg_url, pg):
    """A failed-over URL that reaches a standby (read-only) answers 503, not 500."""
    _, raw = pg
    database = await raw.fetchval("SELECT current_database()")
    await raw.execute(f'ALTER DATABASE "{database}" SET default_transaction_read_only = on')
    store = await open_store(pg_url, migrate=False)
    try:
        with pytest.raises(StoreError) as caught:
            await store.create_org("beta", 2, AuditRecord("org_create", org="beta"))
        assert caught.value.retry_after == 1
        assert "postgresql://" not in caught.value.message
    finally:
        await store.close()
        await raw.execute(f'ALTER DATABASE "{database}" RESET default_transaction_read_only')


async def test_a_value_the_database_refuses_is_a_bad_request(pg):
    """NUL has no place in PostgreSQL text: any that reaches the store is 400, not 500 (the
    HTTP edge refuses control characters first; this is the floor under it)."""
    store, _ = pg
    with pytest.raises(BadRequest):
        await store.create_org("a\x00b", 2, AuditRecord("org_create", org="x"))
    assert await store.org_exists("acme")  # the pool's connection is still good


@pytest.mark.parametrize("settle", [0.0, 0.5])
async def test_an_unreachable_database_names_itself_only_to_operators(pg_url, settle):
    """`settle`: 0 meets the pool's dead connection; 0.5 s lets the pool notice it first, so
    its reconnect meets the closed database (that path answered 500 once, in CI)."""
    store = await open_store(pg_url)
    database = pg_url.rsplit("/", 1)[1]
    raw = await asyncpg.connect(pg_url, database="postgres")  # a database may not lock itself out
    try:
        # Refuse new connections too: the pool may have noticed its dead ones already and
        # would reconnect by itself, hiding the outage (CI saw that race).
        await raw.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false')
        await raw.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                          " WHERE datname = $1", database)
        await asyncio.sleep(settle)
        with pytest.raises(StoreError) as caught:
            await store.org_exists("acme")
        assert "127.0.0.1" not in caught.value.message and "postgres" not in caught.value.message
        assert "127.0.0.1" in str(caught.value)  # the operator's CLI and the log say which database
    finally:
        await raw.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')
        await raw.close()
        await store.close()
