"""Unit tests for the authority's SQLite store (`authority.store.sqlite`), through
`authority.store.open_store` on a real file: orgs, tokens, revocation cascades and the feed."""

from __future__ import annotations

import asyncio
import os

import pytest

from authority.store import RevocationRow, TokenRow
from server.audit import AuditRecord
from tests.conftest import BACKENDS
from tests.support import audited


@pytest.fixture(params=(*BACKENDS, "pgbouncer"))
def backend(request) -> str:
    """These contract tests run through a transaction pooler too (SPEC §19)."""
    return request.param


def new_id() -> str:
    return os.urandom(16).hex()


def token(org: str = "acme", parent: str | None = None, created_at: int = 100, **fields) -> TokenRow:
    kind = "service" if parent else "permission"
    return TokenRow(new_id(), kind, fields.pop("name", None), org, parent, fields.pop("user", None),
                    fields.pop("caveat_count", 0), os.urandom(72), created_at, **fields)


def mint() -> AuditRecord:
    return AuditRecord("mint")


async def insert(store, *rows: TokenRow, lineage=()) -> None:
    for row in rows:
        assert await store.insert_token(row, mint(), lineage)


async def revoked_at(store, token_id: str) -> int | None:
    row, _ = await store.load_token(token_id)
    return row.revoked_at


# --- orgs --------------------------------------------------------------------------------------


async def test_orgs_create_duplicate_list_exists(store):
    assert await store.create_org("beta", 20, AuditRecord("org_create", org="beta"))
    assert not await store.create_org("beta", 30, AuditRecord("org_create", org="beta"))
    assert [(o.name, o.created_at) for o in await store.list_orgs()] == [("acme", 1), ("beta", 20)]
    assert await store.org_exists("beta")
    assert not await store.org_exists("gamma")
    assert [r.org for r in await store.audit_rows("org_create")] == ["acme", "beta"]  # no row for the duplicate


# --- tokens ------------------------------------------------------------------------------------


async def test_insert_and_load_round_trip(store):
    row = token(name="ci", user="alice", caveat_count=3, created_at=1234)
    await insert(store, row)
    loaded, fps = await store.load_token(row.id)
    assert loaded == row
    assert fps == frozenset()
    assert await store.load_token(new_id()) is None
    (audit,) = await store.audit_rows("mint")
    assert audit.event == "mint"


async def test_child_of_a_revoked_parent_is_refused(store):
    parent = token()
    await insert(store, parent)
    await store.revoke_token(parent.id, 200, audited(AuditRecord("revoke")))
    child = token(parent=parent.id)
    assert not await store.insert_token(child, mint())
    assert await store.load_token(child.id) is None
    assert len(await store.audit_rows("mint")) == 1  # the refused insert wrote no audit row


async def test_child_of_an_unknown_parent_is_refused(store):
    assert not await store.insert_token(token(parent=new_id()), mint())


async def test_child_with_a_revoked_lineage_fingerprint_is_refused(store):
    parent = token()
    await insert(store, parent)
    fp = os.urandom(32)
    assert await store.revoke_attenuation(parent.id, fp, 200, audited(AuditRecord("revoke"))) == []
    assert not await store.insert_token(token(parent=parent.id), mint(), [os.urandom(32), fp])
    assert await store.insert_token(token(parent=parent.id), mint(), [os.urandom(32)])


async def test_concurrent_inserts_each_get_their_own_outcome(store):
    """Inserts arriving together commit as one batch (group commit); a refused or failing one
    must not take the others down with it, and each result must reach its own caller."""
    parent, revoked = token(), token()
    await insert(store, parent, revoked)
    await store.revoke_token(revoked.id, 200, audited(AuditRecord("revoke")))
    fp = os.urandom(32)
    assert await store.revoke_attenuation(parent.id, fp, 200, audited(AuditRecord("revoke"))) == []
    good = [token(parent=parent.id) for _ in range(20)]
    lineages = [[os.urandom(32) for _ in range(i % 4)] for i in range(20)]
    refused = [token(parent=revoked.id), token(parent=parent.id)]
    broken = token(org="no-such-org")  # violates the orgs foreign key
    calls = [store.insert_token(row, mint(), lin) for row, lin in zip(good, lineages)]
    calls[5:5] = [store.insert_token(refused[0], mint()), store.insert_token(refused[1], mint(), [fp])]
    results = await asyncio.gather(*calls[:12])  # one batch: refusals are answers, not failures
    more = await asyncio.gather(*calls[12:], store.insert_token(broken, mint()), return_exceptions=True)
    assert isinstance(more.pop(), Exception)  # a failing one: the batch reruns one by one
    results += more
    assert results[5:7] == [False, False]
    del results[5:7]
    assert results == [True] * 20
    for row in good:
        assert (await store.load_token(row.id))[0] == row
    for row in [*refused, broken]:
        assert await store.load_token(row.id) is None
    # Every stored lineage fingerprint leads its revocation to the right token.
    for row, lin in zip(good, lineages):
        for i, f in enumerate(lin):  # the first revokes it; the rest find it revoked already
            assert await store.revoke_attenuation(parent.id, f, 300, audited(AuditRecord("revoke"))) == ([] if i else [row.id])
    assert len(await store.audit_rows("mint")) == 2 + 20


async def test_touch_sets_last_used(store):
    a, b = token(), token()
    await insert(store, a, b)
    await store.touch({a.id: 500})
    await store.touch({})
    assert (await store.load_token(a.id))[0].last_used_at == 500
    assert (await store.load_token(b.id))[0].last_used_at is None


async def test_list_tokens_filters_by_org(store):
    await store.create_org("beta", 1, AuditRecord("org_create"))
    first, second, other = token(created_at=10), token(created_at=20), token(org="beta")
    await insert(store, second, other, first)
    assert [r.id for r in await store.list_tokens("acme")] == [first.id, second.id]
    assert [r.id for r in await store.list_tokens("beta")] == [other.id]
    assert await store.list_tokens("nobody") == []


async def test_insert_tokens_bulk_loads_and_feeds_revoked_ones(store):
    live, gone = token(org="imported"), token(org="imported", revoked_at=77)
    await store.insert_tokens([live, gone])
    assert await store.org_exists("imported")
    assert (await store.load_token(live.id))[0] == live
    assert (await store.load_token(gone.id))[0].revoked_at == 77
    assert [(r.token_id, r.scope, r.at) for r in await store.revocations_after(0, 10)] == [(gone.id, "token", 77)]


# --- revocation --------------------------------------------------------------------------------


async def test_revoke_token_cascades_to_descendants(store):
    root, other = token(), token()
    child = token(parent=root.id)
    grandchild = token(parent=child.id)
    await insert(store, root, other, child, grandchild)

    audit = AuditRecord("revoke", detail={"why": "test"})
    assert sorted(await store.revoke_token(root.id, 300, audited(audit))) == sorted([root.id, child.id, grandchild.id])
    for t in (root, child, grandchild):
        assert await revoked_at(store, t.id) == 300
    assert await revoked_at(store, other.id) is None
    (row,) = await store.audit_rows("revoke")
    assert row.detail["why"] == "test" and sorted(row.detail["changed"]) == sorted([root.id, child.id, grandchild.id])


async def test_revoke_token_returns_only_newly_revoked(store):
    root = token()
    child = token(parent=root.id)
    grandchild = token(parent=child.id)
    await insert(store, root, child, grandchild)

    assert sorted(await store.revoke_token(child.id, 300, audited(AuditRecord("revoke")))) == sorted([child.id, grandchild.id])
    assert await store.revoke_token(root.id, 400, audited(AuditRecord("revoke"))) == [root.id]
    assert await revoked_at(store, child.id) == 300  # the first revocation time stands
    assert await store.revoke_token(root.id, 500, audited(AuditRecord("revoke"))) == []
    assert await store.revoke_token(new_id(), 500, audited(AuditRecord("revoke"))) is None
    assert len(await store.audit_rows("revoke")) == 2  # the domain's None writes no row


async def test_revoke_attenuation_revokes_tokens_stripped_from_it(store):
    parent = token()
    fp, other_fp = os.urandom(32), os.urandom(32)
    stripped, unrelated = token(parent=parent.id), token(parent=parent.id)
    grandchild = token(parent=stripped.id)
    await insert(store, parent)
    await insert(store, stripped, lineage=[other_fp, fp])
    await insert(store, unrelated, lineage=[other_fp])
    await insert(store, grandchild)

    revoked = await store.revoke_attenuation(parent.id, fp, 300, audited(AuditRecord("revoke_attenuation")))
    assert sorted(revoked) == sorted([stripped.id, grandchild.id])
    assert await revoked_at(store, parent.id) is None
    assert await revoked_at(store, unrelated.id) is None
    assert await revoked_at(store, grandchild.id) == 300
    assert (await store.load_token(parent.id))[1] == frozenset({fp})
    assert await store.revoke_attenuation(parent.id, fp, 400, audited(AuditRecord("revoke_attenuation"))) is None


async def test_revocation_feed_is_ordered_exclusive_and_limited(store):
    a, b = token(), token()
    await insert(store, a, b)
    assert await store.revocation_head() == 0
    fp = os.urandom(32)
    await store.revoke_token(a.id, 10, audited(AuditRecord("revoke")))
    await store.revoke_attenuation(b.id, fp, 20, audited(AuditRecord("revoke_attenuation")))
    await store.revoke_token(b.id, 30, audited(AuditRecord("revoke")))

    feed = await store.revocations_after(0, 100)
    assert [r.seq for r in feed] == sorted(r.seq for r in feed)
    assert [(r.token_id, r.scope, r.at, r.fingerprint) for r in feed] == [
        (a.id, "token", 10, None), (b.id, "attenuation", 20, fp), (b.id, "token", 30, None),
    ]
    assert all(isinstance(r, RevocationRow) for r in feed)
    assert await store.revocation_head() == feed[-1].seq
    assert await store.revocations_after(feed[0].seq, 100) == feed[1:]
    assert await store.revocations_after(0, 2) == feed[:2]
    assert await store.revocations_after(feed[-1].seq, 100) == []


async def test_end_console_sessions_of_one_user(store):
    from authority.store import ConsoleSessionRow

    for i, user in enumerate(("alice", "alice", "bob")):
        await store.create_console_session(bytes([i]) * 32, ConsoleSessionRow(user, "acme", "member", 10**10), 1,
                                           AuditRecord("console_login", user=user))
    assert await store.end_console_sessions("alice", audited(AuditRecord("console_logout", user="alice"))) == 2
    assert await store.console_session(bytes([0]) * 32, 2) is None and await store.console_session(bytes([1]) * 32, 2) is None
    assert (await store.console_session(bytes([2]) * 32, 2)).username == "bob"
    (row,) = await store.audit_rows("console_logout")
    assert row.user == "alice" and row.detail == {"changed": 2}
    assert await store.end_console_sessions("alice", audited(AuditRecord("console_logout", user="alice"))) == 0
    assert len(await store.audit_rows("console_logout")) == 1  # nothing ended, nothing recorded


async def test_a_sign_in_is_taken_once(store):
    await store.add_signin(b"s" * 32, b"sealed", 100, 1)
    taken = await asyncio.gather(*[store.take_signin(b"s" * 32, 2) for _ in range(5)])
    assert taken.count(b"sealed") == 1 and taken.count(None) == 4
    await store.add_signin(b"t" * 32, b"late", 100, 1)
    assert await store.take_signin(b"t" * 32, 100) is None  # at its expiry instant: gone
    assert await store.take_signin(b"t" * 32, 2) is None  # and taken by that try


async def test_a_discharge_strips_a_single_use_token_once(store):
    from authority.store import DischargeUsed

    parent = token(strip_once=True, principal="ci:deploy")
    await insert(store, parent)
    loaded, _ = await store.load_token(parent.id)
    assert (loaded.principal, loaded.strip_once) == ("ci:deploy", True)
    once = ("ab" * 16, 500)
    answers = await asyncio.gather(*[store.insert_token(token(parent=parent.id, created_at=100), mint(), (), once)
                                     for _ in range(5)], return_exceptions=True)
    assert answers.count(True) == 1 and sum(isinstance(a, DischargeUsed) for a in answers) == 4
    assert len([r for r in await store.list_tokens("acme") if r.parent == parent.id]) == 1  # nothing half written
    assert await store.insert_token(token(parent=parent.id, created_at=100), mint(), (), ("cd" * 16, 500))
    # kept until the discharge expires, then forgotten (its discharge no longer verifies anyway)
    with pytest.raises(DischargeUsed):
        await store.insert_token(token(parent=parent.id, created_at=499), mint(), (), once)
    assert await store.insert_token(token(parent=parent.id, created_at=500), mint(), (), once)
    # the expired records of every token go, not only this one's
    other = token(strip_once=True)
    await insert(store, other)
    assert await store.insert_token(token(parent=other.id, created_at=100), mint(), (), ("12" * 16, 200))
    assert await store.insert_token(token(parent=parent.id, created_at=300), mint(), (), ("34" * 16, 900))
    assert await store.insert_token(token(parent=other.id, created_at=300), mint(), (), ("12" * 16, 900))
    # a revoked parent refuses before the discharge is counted
    await store.revoke_token(parent.id, 600, lambda ids: None)
    assert not await store.insert_token(token(parent=parent.id, created_at=601), mint(), (), ("ef" * 16, 900))


# --- leaks (SPEC §18) --------------------------------------------------------------------------


async def test_a_revoked_credential_is_listed_until_it_expires(store):
    assert await store.revoke_credential("ut:a", 100, 50, AuditRecord("revoke", token_id="a"))
    assert not await store.revoke_credential("ut:a", 100, 50, AuditRecord("revoke", token_id="a"))  # not new
    assert await store.credential_revoked("ut:a") and not await store.credential_revoked("ut:b")
    assert len([r for r in await store.audit_rows("revoke") if r.token_id == "a"]) == 1
    await store.revoke_credential("ut:b", 300, 101, AuditRecord("revoke"))  # a later write forgets the lapsed
    assert not await store.credential_revoked("ut:a") and await store.credential_revoked("ut:b")


async def test_public_revocations_are_counted_per_address_and_hour(store):
    assert [await store.count_public_revocation("1.2.3.4", 10, 2) for _ in range(3)] == [True, True, False]
    assert await store.count_public_revocation("5.6.7.8", 10, 2)
    assert await store.count_public_revocation("1.2.3.4", 11, 2)  # the next hour


async def test_a_queued_report_is_held_by_one_claimant_until_its_lease_ends(store):
    await store.queue_leak_report(b"sealed a", "1.2.3.4", 100)
    await store.queue_leak_report(b"sealed b", None, 100)
    first = await store.claim_leak_reports(100, 60, 1)
    assert [(c, who) for _, c, who in first] == [(b"sealed a", "1.2.3.4")]
    second = await store.claim_leak_reports(100, 60, 10)
    assert [c for _, c, _ in second] == [b"sealed b"]
    assert await store.claim_leak_reports(159, 60, 10) == []
    await store.finish_leak_report(second[0][0])
    again = await store.claim_leak_reports(160, 60, 10)  # the first claimant died: its lease ended
    assert [c for _, c, _ in again] == [b"sealed a"] and await store.leak_queue_depth() == 1
