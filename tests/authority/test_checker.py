"""The `Checker`: verify for requests, with records from a real store, denials audited and
uses recorded; and the parse cache in front of it."""

from __future__ import annotations

import os
import time

import pytest

from authority.audit import DenialLog
from authority.minting import build
from authority.records import TokenCache
from authority.root_keys import RootKeys
from authority.store import TokenRow, open_store
from authority.usage import Usage
from authority.verification import Checker, ParseCache, parse_presentation
from clients import tokens
from clients.caveats import Access
from clients.errors import BadRequest, Denial, TokenFormatError, Unavailable
from server.audit import AuditRecord, Caller
from tests.support import audited

HERE = "http://authority.test"
KEYS = RootKeys(bytes(32))
CALLER = Caller("127.0.0.1", "rid-1")


@pytest.fixture
async def env(store):
    usage = Usage(store, DenialLog(), last_used_interval=60)
    checker = Checker(HERE, frozenset(), TokenCache(store, KEYS), usage, usage.denials)
    return store, checker


async def service(store, caveats=("org acme",)) -> tuple[str, str]:
    token_id = os.urandom(16).hex()
    tok, sealed = build(KEYS, tokens.SERVICE, HERE, token_id, list(caveats))
    row = TokenRow(token_id, "service", None, "acme", None, "alice", len(caveats), sealed, int(time.time()))
    assert await store.insert_token(row, AuditRecord("strip"))
    return tok.encode(), token_id


async def test_allowed_check_records_the_use(env):
    store, checker = env
    from clients.caveats import format_time
    text, token_id = await service(store, ("org acme", f"expires {format_time(int(time.time()) + 60)}"))
    v = await checker.check(checker.parse([text]), Access("acme", "r"), CALLER)
    assert len(checker.chains) == 1  # the verified chain is cached for the next check
    assert (v.record.id, v.user) == (token_id, "alice")
    assert checker.usage.pending == {token_id: v.record.last_used_at}
    assert checker.denials.buffer == []


async def test_denied_check_is_audited_with_its_reason(env):
    store, checker = env
    text, token_id = await service(store)
    with pytest.raises(Denial):
        await checker.check(checker.parse([text]), Access("other", "r"), CALLER)
    (record,) = checker.denials.buffer
    assert (record.event, record.outcome, record.token_id, record.org) == ("verify_denied", "denied", token_id, "acme")
    assert (record.client, record.request_id) == ("127.0.0.1", "rid-1")
    assert "does not allow org 'other'" in record.detail["reason"]
    assert checker.usage.pending == {}


async def test_unknown_token_is_audited_without_an_org(env):
    store, checker = env
    tok, _ = build(KEYS, tokens.SERVICE, HERE, os.urandom(16).hex(), ["org acme"])
    with pytest.raises(Denial, match="^unknown token$"):
        await checker.check([tok], Access("acme", "r"), CALLER)
    assert checker.denials.buffer[0].org is None


async def test_presentation_shape(env):
    _, checker = env
    with pytest.raises(BadRequest, match="exactly one permission or service token"):
        await checker.check([], Access("acme", "r"), CALLER)


def test_parse_cache_empties_when_full():
    cache = ParseCache(max_entries=2)
    for n in range(3):
        cache.parse(build(KEYS, tokens.SERVICE, HERE, f"{n + 7:032x}", ["org acme"])[0].encode())
    assert len(cache) == 1


async def test_permission_token_needs_a_trusted_discharger(tmp_path):
    from tests.support.fakes import FakeDischarger
    d = FakeDischarger()
    store = await open_store(str(tmp_path / "b.db"))
    try:
        await store.create_org("acme", 0, AuditRecord("org_create"))
        token_id = os.urandom(16).hex()
        tok, sealed = build(KEYS, tokens.PERMISSION, HERE, token_id, ["org acme"], d.trust, "acme")
        row = TokenRow(token_id, "permission", None, "acme", None, None, len(tok.caveats), sealed, 0)
        assert await store.insert_token(row, AuditRecord("mint"))
        usage = Usage(store, DenialLog())
        presented = [tok, tokens.parse(d.discharge(tok.encode()))]
        trusting = Checker(HERE, frozenset([d.location]), TokenCache(store, KEYS), usage, usage.denials)
        assert (await trusting.check(presented, Access("acme", "r"), CALLER)).user == "alice"
        wary = Checker(HERE, frozenset(), TokenCache(store, KEYS), usage, usage.denials)
        with pytest.raises(Denial, match="not addressed to a trusted discharger"):
            await wary.check(presented, Access("acme", "r"), CALLER)
    finally:
        await store.close()


def test_parse_cache_parses_each_string_once_and_is_bounded():
    tok, _ = build(KEYS, tokens.SERVICE, HERE, "ab" * 16, ["org acme"])
    cache = ParseCache(max_entries=2)
    text = tok.encode()
    assert cache.parse(text) is cache.parse(text) and cache.parse(text) == tok
    for n in range(3):
        cache.parse(build(KEYS, tokens.SERVICE, HERE, f"{n:032x}", ["org acme"])[0].encode())
    assert len(cache) <= 2
    with pytest.raises(TokenFormatError):
        cache.parse("sable_st_nope")
    assert len(cache) <= 2


def test_parse_presentation_limits():
    tok, _ = build(KEYS, tokens.SERVICE, HERE, "ab" * 16, ["org acme"])
    assert parse_presentation([tok.encode()]) == [tok]
    with pytest.raises(BadRequest, match="^tokens must be a non-empty list of strings$"):
        parse_presentation([])
    assert len(parse_presentation([tok.encode()] * tokens.MAX_PRESENTATION)) == tokens.MAX_PRESENTATION
    with pytest.raises(BadRequest, match=f"^at most {tokens.MAX_PRESENTATION} tokens per presentation$"):
        parse_presentation([tok.encode()] * (tokens.MAX_PRESENTATION + 1))
    with pytest.raises(TokenFormatError):
        parse_presentation(["garbage"])


def test_checker_parse_uses_its_cache():
    tok, _ = build(KEYS, tokens.SERVICE, HERE, "cd" * 16, ["org acme"])
    checker = Checker(HERE, frozenset(), None, None, None)  # type: ignore[arg-type]  # parse only
    first = checker.parse([tok.encode()])[0]
    assert checker.parse([tok.encode()])[0] is first and len(checker.parsed) == 1


async def test_a_stale_revocation_view_is_unavailable_not_a_decision(env):
    store, checker = env
    text, _ = await service(store)
    stale = Checker(HERE, frozenset(), checker.records, checker.usage, checker.denials, fresh=lambda: False)
    with pytest.raises(Unavailable) as e:
        await stale.check(stale.parse([text]), Access("acme", "r"), CALLER)
    assert e.value.message == "the revocation feed has not been read for 5 s (database unreachable?)"
    assert e.value.retry_after == 1 and e.value.code == "unavailable"
    assert (await checker.check(checker.parse([text]), Access("acme", "r"), CALLER)).record.org == "acme"


# --- DPoP proofs (SPEC §14) --------------------------------------------------------------------


@pytest.fixture
def signer(dpop_keys):
    return dpop_keys[0]


def proof_for(signer, text, htu="https://w.example/x"):
    from clients.proof_check import ProofRequest

    return ProofRequest(signer.proof("GET", htu, text), "GET", htu)


async def test_a_proof_gives_its_key_to_cnf_jkt_and_is_used_up_once_allowed(env, signer):
    store, checker = env
    text, _ = await service(store, ("org acme", f"cnf-jkt {signer.jkt}"))
    with pytest.raises(Denial, match="needs a DPoP proof"):
        await checker.check(checker.parse([text]), Access("acme", "r"), CALLER)
    proof = proof_for(signer, text)
    v = await checker.check(checker.parse([text]), Access("acme", "r"), CALLER, proof)
    assert v.caveats[-1].text == f"cnf-jkt {signer.jkt}"
    assert len(checker.replay) == 1
    with pytest.raises(Denial, match="already used"):
        await checker.check(checker.parse([text]), Access("acme", "r"), CALLER, proof)
    assert len(checker.replay) == 1  # the replay did not release the first claim
    assert checker.denials.buffer[-1].detail == {"reason": "DPoP proof was already used (replayed jti)"}


async def test_a_denied_request_releases_its_proof(env, signer):
    store, checker = env
    text, _ = await service(store, ("org acme", f"cnf-jkt {signer.jkt}"))
    proof = proof_for(signer, text)
    with pytest.raises(Denial, match="does not allow org"):
        await checker.check(checker.parse([text]), Access("other", "r"), CALLER, proof)
    assert len(checker.replay) == 0
    await checker.check(checker.parse([text]), Access("acme", "r"), CALLER, proof)


async def test_a_bad_proof_is_an_audited_denial(env, signer):
    store, checker = env
    text, _ = await service(store)
    other, _ = await service(store)
    with pytest.raises(Denial, match="another token"):
        await checker.check(checker.parse([text]), Access("acme", "r"), CALLER, proof_for(signer, other))
    assert checker.denials.buffer[-1].event == "verify_denied" and len(checker.replay) == 0


async def test_strip_ignores_a_proof(env, signer):
    store, checker = env
    text, _ = await service(store, ("org acme", f"cnf-jkt {signer.jkt}"))
    v = await checker.check(checker.parse([text]), None, CALLER, proof_for(signer, text))  # access None: strip
    assert len(checker.replay) == 0 and v.caveats[-1].text == f"cnf-jkt {signer.jkt}"


async def test_past_the_revoked_attenuation_cap_the_store_judges(store):
    """A record holding none of its revoked attenuations (past the cap) still denies each one."""
    from clients import macaroon, offline

    usage = Usage(store, DenialLog(), last_used_interval=60)
    checker = Checker(HERE, frozenset(), TokenCache(store, KEYS, max_revoked=1), usage, usage.denials)
    text, token_id = await service(store)
    narrow = [offline.attenuate(text, [f"hosts h{i}"]) for i in range(3)]
    for t in narrow[:2]:
        fp = macaroon.fingerprint(tokens.parse(t).signature)
        await store.revoke_attenuation(token_id, fp, int(time.time()), audited(AuditRecord("revoke")))
    rec = await checker.records.get(token_id)
    assert rec.revoked_fps is None
    for i, t in enumerate(narrow[:2]):
        with pytest.raises(Denial, match="this attenuation of the token is revoked"):
            await checker.check(checker.parse([t]), Access("acme", "r", host=f"h{i}"), CALLER)
    assert checker.denials.buffer[-1].detail == {"reason": "this attenuation of the token is revoked"}
    v = await checker.check(checker.parse([narrow[2]]), Access("acme", "r", host="h2"), CALLER)
    assert v.record is rec and rec.cleared == {macaroon.fingerprint(tokens.parse(narrow[2]).signature)}


async def test_a_caller_factory_is_called_only_for_a_denial(env):
    store, checker = env
    text, _ = await service(store)
    made = []

    def make() -> Caller:
        made.append(1)
        return CALLER

    await checker.check(checker.parse([text]), Access("acme", "r"), make)
    assert made == []  # an allowed verify builds no caller
    with pytest.raises(Denial):
        await checker.check(checker.parse([text]), Access("other", "r"), make)
    assert made == [1] and checker.denials.buffer[-1].client == CALLER.client


async def test_an_unbound_discharge_counts_only_when_the_caller_binds_it(store):
    """Strip and verify take bound discharges only; token exchange (SPEC §16) binds one itself."""
    from tests.support.fakes import FakeDischarger

    d = FakeDischarger()
    usage = Usage(store, DenialLog(), last_used_interval=60)
    checker = Checker(HERE, frozenset({d.location}), TokenCache(store, KEYS), usage, usage.denials)
    token_id = os.urandom(16).hex()
    tok, sealed = build(KEYS, tokens.PERMISSION, HERE, token_id, ["org acme"], d.trust, "acme")
    row = TokenRow(token_id, "permission", None, "acme", None, None, len(tok.caveats), sealed, int(time.time()))
    assert await store.insert_token(row, AuditRecord("mint"))
    pt = tok.encode()
    unbound = d.discharge(pt, bind=False)
    with pytest.raises(Denial, match="not bound to this token"):
        await checker.check(checker.parse([pt, unbound]), None, CALLER)
    assert (await checker.check(checker.parse([pt, unbound]), None, CALLER, bind=True)).user == "alice"
    other = d.discharge(pt, bind=False, user="mallory")
    forged = other[:-8] + ("A" * 8 if not other.endswith("A" * 8) else "B" * 8)
    with pytest.raises((Denial, TokenFormatError)):
        await checker.check(checker.parse([pt, forged]), None, CALLER, bind=True)
