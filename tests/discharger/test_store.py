"""Unit tests for the discharger's stores, through `discharger.store.open_store` on each
backend (a real SQLite file, a real PostgreSQL database): users, memberships and sessions."""

from __future__ import annotations

import os

import pytest

from discharger.store import UserRow, open_store
from server.audit import AuditRecord

HASH = b"argon2id-hash"


@pytest.fixture
async def store(db_location):
    s = await open_store(db_location("discharger"))
    yield s
    await s.close()


def audit(event: str = "user_create") -> AuditRecord:
    return AuditRecord(event, user="alice")


async def add_alice(store, orgs=("acme", "beta")) -> None:
    assert await store.create_user("alice", HASH, {o: "member" for o in orgs}, 100, audit())


def session_digest() -> bytes:
    return os.urandom(32)


# --- users ---------------------------------------------------------------------------------------


async def test_create_and_get_user(store):
    await add_alice(store)
    assert await store.get_user("alice") == UserRow("alice", HASH, False, {"acme": "member", "beta": "member"})
    assert await store.get_user("bob") is None
    assert len(await store.audit_rows("user_create")) == 1


async def test_duplicate_user_is_refused_and_changes_nothing(store):
    await add_alice(store)
    assert not await store.create_user("alice", b"other", {"gamma": "admin"}, 200, audit())
    assert await store.get_user("alice") == UserRow("alice", HASH, False, {"acme": "member", "beta": "member"})
    assert len(await store.audit_rows("user_create")) == 1


async def test_user_without_orgs(store):
    assert await store.create_user("carol", HASH, {}, 100, audit())
    assert (await store.get_user("carol")).orgs == frozenset()


@pytest.mark.parametrize("roles", [{"gamma": "member"}, {"beta": "admin", "delta": "member"}, {}])
async def test_set_orgs_replaces_memberships(store, roles):
    await add_alice(store)
    assert await store.set_orgs("alice", roles, audit("user_orgs"))
    assert (await store.get_user("alice")).roles == roles
    assert len(await store.audit_rows("user_orgs")) == 1


async def test_set_orgs_of_unknown_user_is_false(store):
    assert not await store.set_orgs("nobody", {"acme": "member"}, audit("user_orgs"))
    assert await store.get_user("nobody") is None
    assert await store.audit_rows("user_orgs") == []


async def test_disable_user(store):
    await add_alice(store)
    assert await store.disable_user("alice", audit("user_disable"))
    user = await store.get_user("alice")
    assert user.disabled is True and user.orgs == frozenset({"acme", "beta"})
    assert not await store.disable_user("nobody", audit("user_disable"))
    assert len(await store.audit_rows("user_disable")) == 1


# --- sessions ------------------------------------------------------------------------------------


async def test_session_lookup_until_expiry(store):
    await add_alice(store)
    digest = session_digest()
    await store.create_session(digest, "alice", expires_at=200, now=100, audit=audit("session_create"))
    assert await store.session_user(digest, 100) == "alice"
    assert await store.session_user(digest, 199) == "alice"
    assert await store.session_user(digest, 200) is None  # expired at expires_at
    assert await store.session_user(session_digest(), 100) is None
    assert len(await store.audit_rows("session_create")) == 1


async def test_new_session_purges_expired_ones(store):
    await add_alice(store)
    old, new = session_digest(), session_digest()
    await store.create_session(old, "alice", expires_at=150, now=100, audit=audit("session_create"))
    await store.create_session(new, "alice", expires_at=300, now=160, audit=audit("session_create"))
    assert await store.session_user(old, 100) is None  # its row is gone, whatever the time asked
    assert await store.session_user(new, 160) == "alice"


async def test_delete_session(store):
    await add_alice(store)
    digest, other = session_digest(), session_digest()
    await store.create_session(digest, "alice", expires_at=200, now=100, audit=audit("session_create"))
    await store.create_session(other, "alice", expires_at=200, now=100, audit=audit("session_create"))
    assert await store.delete_session(digest)
    assert not await store.delete_session(digest)
    assert await store.session_user(digest, 100) is None
    assert await store.session_user(other, 100) == "alice"
