"""Unit tests for the discharger's stores, through `discharger.store.open_store` on each
backend (a real SQLite file, a real PostgreSQL database): the contract `DischargerStore` states."""

from __future__ import annotations

import asyncio
import dataclasses
import os

import pytest

from discharger.store import GrantRow, Link, UserRow, open_store
from server.audit import AuditRecord
from tests.conftest import BACKENDS

HASH = b"argon2id-hash"


@pytest.fixture(params=(*BACKENDS, "pgbouncer"))
def backend(request) -> str:
    """These contract tests run through a transaction pooler too (SPEC §19)."""
    return request.param


@pytest.fixture
async def store(db_location, backend):
    s = await open_store(db_location("discharger"), pooler=backend == "pgbouncer")
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


async def test_a_password_change_ends_every_session_of_the_user(store):
    await add_alice(store)
    await store.create_user("bob", HASH, {"acme": "member"}, 100, audit())
    api, browser, bobs = session_digest(), session_digest(), session_digest()
    await store.create_session(api, "alice", 10**10, 100, audit("session_create"))
    await store.create_browser_session(browser, "alice", 10**10, 100, audit("browser_login"))
    await store.create_session(bobs, "bob", 10**10, 100, audit("session_create"))
    assert await store.set_password("alice", b"new-hash", audit("user_passwd"))
    assert await store.session_user(api, 100) is None and await store.browser_session(browser, 100) is None
    assert await store.session_user(bobs, 100) == "bob"
    assert not await store.set_password("nobody", b"x", audit("user_passwd"))
    assert len(await store.audit_rows("user_passwd")) == 1  # a refused write records nothing


# --- grants, keys and the throttle: each step taken once, across replicas ------------------------


def grant(lookup: str = "ABCD-EFGH") -> GrantRow:
    return GrantRow(os.urandom(32), "device", lookup, {"org": "acme"}, "pending", 100, 10**10)


async def test_a_grant_changes_state_once(store):
    row = grant()
    assert await store.add_grant(row, 100)
    approved = dataclasses.replace(row, status="approved", username="alice")
    done = await asyncio.gather(*[store.update_grant(approved, "pending", audit("device_approve")) for _ in range(5)])
    assert done.count(True) == 1
    assert len(await store.audit_rows("device_approve")) == 1
    assert (await store.get_grant("device", lookup=row.lookup)).status == "approved"


async def test_a_lookup_names_one_grant(store):
    first = grant()
    assert await store.add_grant(first, 100)
    assert not await store.add_grant(grant(first.lookup), 100)
    assert (await store.get_grant("device", lookup=first.lookup)).hash == first.hash


async def test_the_first_keys_are_made_once_and_the_last_is_never_retired(store):
    made = await asyncio.gather(*[store.add_keys_if_none([(f"k{i}", b"sealed")], 100, audit("keys_create"))
                                  for i in range(5)])
    assert made.count(True) == 1 and len(await store.list_keys()) == 1
    assert len(await store.audit_rows("keys_create")) == 1
    (kid, _), = await store.list_keys()
    await store.add_key("newer", b"sealed2", 200, audit("key_rotate"))
    assert [k for k, _ in await store.list_keys()] == ["newer", kid]  # newest first
    assert await store.retire_key("nope", audit("key_retire")) == "unknown"
    assert await store.retire_key(kid, audit("key_retire")) == "ok"
    assert await store.retire_key("newer", audit("key_retire")) == "last"
    assert len(await store.audit_rows("key_retire")) == 1


async def test_the_throttle_counts_no_attempt_past_its_limit(store):
    waits = await asyncio.gather(*[store.login_attempt([("user:alice", 5)], 1000.0, 60.0) for _ in range(12)])
    assert waits.count(None) == 5 and all(w is not None and 0 < w <= 60 for w in waits if w is not None)


# --- identities at OpenID providers (SPEC §15) ---------------------------------------------------


async def test_an_identity_links_one_user_once(store):
    await add_alice(store)
    await store.create_user("bob", HASH, {}, 100, audit())
    link = Link("https://idp.example", "sub-1", "acme")
    done = await asyncio.gather(*[store.link_identity(u, link, 100, audit("user_link")) for u in ("alice", "bob") * 3])
    assert done.count(True) == 1
    owner = await store.linked_user(link.issuer, link.sub)
    assert owner in ("alice", "bob") and await store.links(owner) == [link]
    assert len(await store.audit_rows("user_link")) == 1
    assert not await store.link_identity("nobody", Link(link.issuer, "sub-2", "acme"), 100, audit("user_link"))
    assert await store.linked_user(link.issuer, "sub-2") is None


async def test_a_user_made_at_first_sign_in_is_made_with_its_link_or_not_at_all(store):
    await add_alice(store)
    link = Link("https://idp.example", "sub-1", "acme")
    assert await store.link_identity("alice", link, 100, audit("user_link"))
    # The identity is taken: the new user is not made either.
    assert not await store.create_user("carol", b"", {"acme": "member"}, 100, audit(), link=link)
    assert await store.get_user("carol") is None
    other = Link(link.issuer, "sub-9", "acme")
    assert await store.create_user("dave", b"", {"acme": "member"}, 100, audit(), idp="acme", link=other)
    assert (await store.get_user("dave")).idp == "acme" and await store.linked_user(other.issuer, other.sub) == "dave"


async def test_a_state_is_claimed_once(store):
    claimed = await asyncio.gather(*[store.claim_state(b"s" * 32, 200, 100) for _ in range(5)])
    assert claimed.count(True) == 1
    assert await store.claim_state(b"s" * 32, 300, 200)  # expired at 200: gone, so new again


async def test_sessions_say_how_they_were_made(store):
    await add_alice(store)
    api, browser = session_digest(), session_digest()
    await store.create_session(api, "alice", 10**10, 100, audit("session_create"), "idp:acme")
    await store.create_browser_session(browser, "alice", 10**10, 100, audit("browser_login"))
    assert (await store.session(api, 100)).auth_method == "idp:acme"
    assert (await store.browser_session(browser, 100)).auth_method == "password"


async def test_a_totp_step_and_a_recovery_code_are_used_once(store):
    await add_alice(store)
    assert await store.begin_totp("alice", b"sealed", 100)
    assert not await store.use_totp_step("alice", 5)  # not confirmed yet
    recovery = [b"r" * 32, b"s" * 32]
    assert not await store.confirm_totp("alice", 4, recovery, audit("mfa_enrol"), b"a restarted seed")
    assert await store.confirm_totp("alice", 4, recovery, audit("mfa_enrol"), b"sealed")
    assert not await store.begin_totp("alice", b"other", 100)  # confirmed: no restart
    used = await asyncio.gather(*[store.use_totp_step("alice", 5) for _ in range(5)])
    assert used.count(True) == 1
    assert not await store.use_totp_step("alice", 4)  # older steps too
    used = await asyncio.gather(*[store.use_recovery_code("alice", b"r" * 32, 100) for _ in range(5)])
    assert used.count(True) == 1 and await store.recovery_left("alice") == 1
    assert await store.remove_factors("alice", audit("mfa_reset"))
    assert await store.totp("alice") is None and await store.recovery_left("alice") == 0
    assert not await store.remove_factors("alice", audit("mfa_reset"))
    assert len(await store.audit_rows("mfa_reset")) == 1


async def test_a_passkeys_counter_must_grow_unless_it_keeps_none(store):
    from discharger.store import PasskeyRow

    await add_alice(store)
    assert await store.add_passkey(PasskeyRow(b"c1", "alice", b"pk", 5), 100, audit("mfa_enrol"))
    assert not await store.add_passkey(PasskeyRow(b"c1", "alice", b"other", 0), 100, audit("mfa_enrol"))
    assert await store.use_passkey(b"c1", 6) and not await store.use_passkey(b"c1", 6)
    assert not await store.use_passkey(b"c1", 3)  # went backwards: a clone
    assert await store.add_passkey(PasskeyRow(b"c2", "alice", b"pk", 0), 100, audit("mfa_enrol"))
    assert await store.use_passkey(b"c2", 0) and await store.use_passkey(b"c2", 0)  # keeps no counter
    assert [p.credential_id for p in await store.passkeys_of("alice")] == [b"c1", b"c2"]
    assert (await store.passkey(b"c1")).sign_count == 6
    assert await store.remove_factors("alice", audit("mfa_reset"))
    assert await store.passkeys_of("alice") == []


async def test_change_orgs_touches_only_the_orgs_it_names(store):
    await add_alice(store, orgs=("acme", "beta"))
    assert await store.change_orgs("alice", {"acme": "admin", "dev": "member", "gone": None}, audit("user_orgs"))
    assert (await store.get_user("alice")).roles == {"acme": "admin", "beta": "member", "dev": "member"}
    assert not await store.change_orgs("alice", {"acme": "admin"}, audit("user_orgs"))  # nothing changed
    assert await store.change_orgs("alice", {"acme": None}, audit("user_orgs"))
    assert (await store.get_user("alice")).roles == {"beta": "member", "dev": "member"}
    assert not await store.change_orgs("nobody", {"acme": "admin"}, audit("user_orgs"))
    assert len(await store.audit_rows("user_orgs")) == 2


async def test_a_user_has_one_identity_per_issuer(store):
    await add_alice(store)
    done = await asyncio.gather(*[store.link_identity("alice", Link("https://idp.example", f"sub-{i}", "acme"), 100,
                                                      audit("user_link")) for i in range(4)])
    assert done.count(True) == 1
    assert await store.link_identity("alice", Link("https://other.example", "sub-0", "other"), 100, audit("user_link"))
    assert len(await store.links("alice")) == 2


async def test_an_id_token_is_claimed_once(store):
    claimed = await asyncio.gather(*[store.claim_id_token("https://ci", "j1", 200, 100) for _ in range(5)])
    assert claimed.count(True) == 1
    assert await store.claim_id_token("https://other", "j1", 200, 100)  # per issuer
    assert await store.claim_id_token("https://ci", "j1", 300, 200)  # expired at 200: gone, so new again


async def test_principals_and_their_trust_policies(store):
    from discharger.store import PrincipalRow, TrustPolicy

    row = PrincipalRow("ci:deploy", "acme", "member", False, 100)
    assert await store.create_principal(row, audit("principal_create"))
    assert not await store.create_principal(row, audit("principal_create"))
    assert await store.create_principal(PrincipalRow("ci:ops", "globex", "admin", False, 100), audit("principal_create"))
    policy = TrustPolicy("p1", "https://ci", None, {"repository_id": "1", "ref": "refs/heads/*"}, 600)
    assert await store.add_trust_policy("ci:deploy", policy, 100, audit("principal_trust"))
    assert not await store.add_trust_policy("ci:nobody", policy, 100, audit("principal_trust"))
    got = await store.principal("ci:deploy")
    assert got.policies == (policy,) and got.org == "acme" and not got.disabled
    assert [p.name for p in await store.list_principals("globex")] == ["ci:ops"]
    assert [p.name for p in await store.list_principals()] == ["ci:deploy", "ci:ops"]
    assert await store.set_principal_disabled("ci:deploy", True, audit("principal_disable"))
    assert (await store.principal("ci:deploy")).disabled
    assert not await store.remove_trust_policy("ci:ops", "p1", audit("principal_untrust"))
    assert await store.remove_principal("ci:deploy", audit("principal_remove"))
    assert await store.principal("ci:deploy") is None
    # its policies went with it: a new principal of that name trusts nothing
    assert await store.create_principal(row, audit("principal_create"))
    assert (await store.principal("ci:deploy")).policies == ()
    events = [r.event for r in await store.audit_rows()]
    assert events.count("principal_trust") == 1 and events.count("principal_create") == 3


async def test_a_leaked_secret_is_recorded_once(store):
    assert not await store.leaked(b"d" * 32)
    assert await store.record_leaked(b"d" * 32, "session", 1, AuditRecord("session_end"))
    assert not await store.record_leaked(b"d" * 32, "session", 2, AuditRecord("session_end"))
    assert await store.leaked(b"d" * 32) and not await store.leaked(b"e" * 32)
    assert len(await store.audit_rows("session_end")) == 1
