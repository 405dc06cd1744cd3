"""The verify algorithm (SPEC §3), one rule at a time. Each denial is provoked with every other
rule satisfied, so removing any single check makes its test fail (the mutation run relies on
this file). Pure function calls: no server, no database."""

from __future__ import annotations

import os
import time
from dataclasses import replace

import pytest

from authority.minting import build
from authority.records import TokenRecord
from authority.root_keys import RootKeys
from authority.verification import ChainCache, Denial, authenticate, separate_discharges, verify
from clients import macaroon, offline, tokens
from clients.caveats import Access, format_time
from clients.errors import BadRequest
from clients.tokens import RawCaveat, Token
from tests.support.fakes import FakeDischarger

HERE = "http://authority.test"
KEYS = RootKeys(bytes(32))
D = FakeDischarger()
TRUSTED = frozenset([D.location])
NOW = time.time()
ACCESS = Access(org="acme", action="r", app="orders", host="worker-7")


def _record(tok: Token, sealed: bytes, kind: str, user: str | None = None, **changes) -> TokenRecord:
    sig0 = KEYS.initial_signature(tok.token_id, sealed, tok.identifier)
    rec = TokenRecord(tok.token_id, kind, "acme", user, None, len(tok.caveats), sig0, False, set(), 0)
    for k, v in changes.items():
        setattr(rec, k, v)
    return rec


def service(caveats=("org acme", "apps orders"), **changes) -> tuple[Token, TokenRecord]:
    tok, sealed = build(KEYS, tokens.SERVICE, HERE, os.urandom(16).hex(), list(caveats))
    return tok, _record(tok, sealed, "service", user="alice", **changes)


def permission(caveats=("org acme", "apps orders")) -> tuple[Token, TokenRecord]:
    tok, sealed = build(KEYS, tokens.PERMISSION, HERE, os.urandom(16).hex(), list(caveats), D.trust, "acme")
    return tok, _record(tok, sealed, "permission")


def discharge(tok: Token, **kw) -> Token:
    kw.setdefault("now", NOW)  # every time in this file is relative to NOW, the clock verify is given
    return tokens.parse(D.discharge(tok.encode(), **kw), (tokens.DISCHARGE,))


def check(tok, rec, discharges=(), access=ACCESS, chains=None, trusted=TRUSTED, now=None):
    return verify(tok, list(discharges), rec, access, NOW if now is None else now, HERE, trusted, chains)


def denied(*args, **kw) -> str:
    with pytest.raises(Denial) as e:
        check(*args, **kw)
    return str(e.value)


def with_third_party(tok: Token, cid: bytes, vid: bytes | None = None, location: str = D.location) -> Token:
    """A holder appends a third-party caveat of their own (validly signed)."""
    vid = vid if vid is not None else os.urandom(72)
    return replace(tok, caveats=(*tok.caveats, RawCaveat(cid, vid, location)),
                   signature=macaroon.third_party(tok.signature, vid, cid))


# --- the happy paths ----------------------------------------------------------------------


def test_service_token_is_allowed_with_its_record_user():
    tok, rec = service()
    v = check(tok, rec)
    assert (v.token is tok, v.record is rec, v.user) == (True, True, "alice")
    assert [c.text for c in v.caveats] == ["org acme", "apps orders"]


def test_permission_token_with_bound_discharge_names_the_discharge_user():
    tok, rec = permission()
    dt = discharge(tok, user="bob")
    v = check(tok, rec, [dt])
    assert v.user == "bob"
    assert [c.text for c in v.caveats][:3] == ["org acme", "apps orders", "user bob"]
    assert v.caveats[3].text.startswith("expires ")


def test_authentication_caveat_first_uses_the_initial_signature():
    tok, rec = permission(caveats=())
    assert tok.caveats[0].third_party
    assert check(tok, rec, [discharge(tok)], access=None).user == "alice"


def test_discharge_without_a_user_caveat_names_no_user():
    tok, rec = permission()
    dt = macaroon.discharge(D.discharge_key(tok.encode()), tok.caveats[-1].cid, D.location, ["hosts worker-7"])
    assert check(tok, rec, [macaroon.bind_discharge(tok, dt)]).user is None


def test_holder_third_party_caveat_on_a_service_token_cannot_rename_its_user():
    tok, rec = service(caveats=("org acme",))
    key = os.urandom(32)
    extra = with_third_party(tok, b"holder", macaroon.seal_caveat_key(tok.signature, key))
    mine = macaroon.bind_discharge(extra, macaroon.discharge(key, b"holder", D.location, ["user bob"]))
    assert denied(extra, rec, [mine]) == "discharges name more than one user"


# --- rule 1 -------------------------------------------------------------------------------


def test_location_must_be_this_authority():
    tok, rec = service()
    assert denied(replace(tok, location="http://elsewhere"), rec) == "token location is not this authority"


def test_unknown_token():
    tok, _ = service()
    assert denied(tok, None) == "unknown token"


def test_prefix_must_match_the_recorded_kind():
    tok, rec = service()
    assert denied(replace(tok, prefix=tokens.PERMISSION), rec) == "token prefix does not match its kind"


def test_revoked_token():
    tok, rec = service(revoked=True)
    assert denied(tok, rec) == "token is revoked"


def test_key_that_does_not_open():
    tok, rec = service(sig0=None)
    assert denied(tok, rec) == "token key cannot be opened with this authority's master key"


@pytest.mark.parametrize("index", [0, 15, 31])
def test_final_signature_is_compared(index):
    tok, rec = service()
    sig = bytearray(tok.signature)
    sig[index] ^= 1
    assert denied(replace(tok, signature=bytes(sig)), rec) == "signature does not match"


def test_signature_with_no_caveats():
    tok, rec = service(caveats=())
    assert check(tok, rec, access=None).caveats == []
    assert denied(replace(tok, signature=bytes(32)), rec, access=None) == "signature does not match"


def test_a_changed_caveat_breaks_the_signature():
    tok, rec = service()
    forged = replace(tok, caveats=(tok.caveats[0], RawCaveat(b"apps billing")))
    assert denied(forged, rec) == "signature does not match"


def test_authenticate_returns_every_intermediate_signature():
    tok, rec = service(caveats=("org acme", "apps orders", "hosts a"))
    sigs, first, third = authenticate(tok, rec, HERE)
    assert len(sigs) == 3 and sigs[-1] == tok.signature
    assert first == [b"org acme", b"apps orders", b"hosts a"] and third == []
    assert sigs[0] == macaroon.first_party(rec.sig0, b"org acme")
    rec.revoked = True
    with pytest.raises(Denial, match="revoked"):
        authenticate(tok, rec, HERE)
    assert authenticate(tok, rec, HERE, revoked_ok=True)[0] == sigs


# --- rule 2 -------------------------------------------------------------------------------


def test_revoked_attenuation_and_its_descendants_deny_but_not_its_siblings():
    tok, rec = service()
    narrow = tokens.parse(offline.attenuate(tok, ["hosts worker-7"]))
    narrower = tokens.parse(offline.attenuate(narrow, ["instances i-1"]))
    sibling = tokens.parse(offline.attenuate(tok, ["hosts worker-8"]))
    rec.revoked_fps = {macaroon.fingerprint(narrow.signature)}
    assert denied(narrow, rec) == "this attenuation of the token is revoked"
    assert denied(narrower, rec, access=replace(ACCESS, instance="i-1")) == "this attenuation of the token is revoked"
    assert check(tok, rec).record is rec
    assert check(sibling, rec, access=replace(ACCESS, host="worker-8")).record is rec


def test_revoked_first_attenuation_step():
    tok, rec = service(caveats=())
    narrow = tokens.parse(offline.attenuate(tok, ["org acme"]))
    rec.caveat_count = 0
    rec.revoked_fps = {macaroon.fingerprint(narrow.signature)}
    assert denied(narrow, rec) == "this attenuation of the token is revoked"


def test_past_the_in_memory_cap_the_attenuation_fingerprints_are_left_to_the_caller():
    tok, rec = service()
    narrow = tokens.parse(offline.attenuate(tok, ["hosts worker-7"]))
    narrower = tokens.parse(offline.attenuate(narrow, ["instances i-1"]))
    rec.revoked_fps = None  # too many revoked attenuations to hold: the store judges them
    fp = macaroon.fingerprint
    assert check(narrower, rec, access=replace(ACCESS, instance="i-1")).unjudged == (
        fp(narrow.signature), fp(narrower.signature))  # exactly the attenuation steps
    assert check(tok, rec).unjudged == ()  # as minted: no attenuation to judge
    rec.revoked_fps = set()
    assert check(narrower, rec, access=replace(ACCESS, instance="i-1")).unjudged == ()


# --- rule 3 -------------------------------------------------------------------------------


def test_discharger_must_be_trusted():
    tok, rec = permission()
    reason = denied(tok, rec, [discharge(tok)], trusted=frozenset())
    assert reason == "third-party caveat is not addressed to a trusted discharger"


def test_missing_discharge():
    tok, rec = permission()
    assert denied(tok, rec) == f"no discharge for the third-party caveat of {D.location}"


def test_two_discharges_for_one_caveat():
    tok, rec = permission()
    assert denied(tok, rec, [discharge(tok), discharge(tok)]) == "more than one discharge for one third-party caveat"


def test_one_discharge_for_two_caveats():
    tok, rec = permission()
    cid = tok.caveats[-1].cid
    doubled = with_third_party(tok, cid, tok.caveats[-1].vid)
    dt = tokens.parse(offline.bind(doubled, D.discharge(tok.encode(), bind=False)), (tokens.DISCHARGE,))
    assert denied(doubled, rec, [dt]) == "one discharge used for two caveats"


def test_discharge_location_must_match_its_caveat():
    tok, rec = permission()
    dt = discharge(tok)
    assert denied(tok, rec, [replace(dt, location="http://evil")]) == "discharge location does not match its caveat"


def test_vid_that_does_not_open():
    tok, rec = permission()
    extra = with_third_party(tok, b"holder-ticket")
    fake = macaroon.discharge(os.urandom(32), b"holder-ticket", D.location, ["user alice"])
    bound = [macaroon.bind_discharge(extra, discharge(tok, bind=False)), macaroon.bind_discharge(extra, fake)]
    assert denied(extra, rec, bound) == "third-party caveat cannot be opened"


def test_unbound_discharge():
    tok, rec = permission()
    assert denied(tok, rec, [discharge(tok, bind=False)]) == "discharge is not bound to this token"


def test_discharge_bound_to_another_token():
    tok, rec = permission()
    other = tokens.parse(offline.attenuate(tok, ["hosts worker-7"]))
    dt = discharge(tok)  # bound to tok, presented with its attenuation
    assert denied(other, rec, [dt]) == "discharge is bound to another token or its signature does not match"


def test_discharge_with_a_forged_caveat():
    tok, rec = permission()
    dt = discharge(tok)
    forged = replace(dt, caveats=(RawCaveat(b"user mallory"), *dt.caveats[1:]))
    assert "signature does not match" in denied(tok, rec, [forged])


def test_discharge_signed_with_another_caveat_key():
    tok, rec = permission()
    fake = macaroon.discharge(os.urandom(32), tok.caveats[-1].cid, D.location, ["user alice"])
    assert "signature does not match" in denied(tok, rec, [macaroon.bind_discharge(tok, fake)])


# --- rule 4 -------------------------------------------------------------------------------


def test_leftover_discharge():
    tok, rec = permission()
    other, _ = permission()
    extra = macaroon.bind_discharge(tok, discharge(other, bind=False))
    assert denied(tok, rec, [discharge(tok), extra]) == "a discharge matches no third-party caveat of this token"


def test_discharge_for_a_service_token_is_left_over():
    tok, rec = service()
    p, _ = permission()
    assert denied(tok, rec, [discharge(p)]) == "a discharge matches no third-party caveat of this token"


def test_nested_discharge():
    tok, rec = permission()
    dt = discharge(tok, bind=False)
    nested = with_third_party(dt, b"inner")
    reason = denied(tok, rec, [macaroon.bind_discharge(tok, nested)])
    assert reason == "nested discharge: a discharge may not carry third-party caveats"


def test_holder_discharge_cannot_name_another_user():
    tok, rec = permission()
    key = os.urandom(32)
    vid = macaroon.seal_caveat_key(tok.signature, key)
    extra = with_third_party(tok, b"holder", vid)
    mine = macaroon.discharge(key, b"holder", D.location, ["user mallory"])
    auth = macaroon.discharge(D.discharge_key(tok.encode()), tok.caveats[-1].cid, D.location, ["user alice"])
    bound = [macaroon.bind_discharge(extra, auth), macaroon.bind_discharge(extra, mine)]
    assert denied(extra, rec, bound) == "discharges name more than one user"
    same = macaroon.discharge(key, b"holder", D.location, ["user alice"])
    assert check(extra, rec, [bound[0], macaroon.bind_discharge(extra, same)]).user == "alice"


# --- rule 5 -------------------------------------------------------------------------------


@pytest.mark.parametrize("caveat, access, reason", [
    ("apps billing", ACCESS, "does not allow app 'orders'"),
    ("hosts worker-8", ACCESS, "does not allow host 'worker-7'"),
    ("instances i-1", ACCESS, "needs access.instance"),
    ("actions w", ACCESS, "does not allow action 'r'"),
    ("org other", ACCESS, "does not allow org 'acme'"),
    ("user bob", replace(ACCESS, user="alice"), "does not allow user 'alice'"),
    (f"expires {format_time(int(NOW))}", ACCESS, "has expired"),
    (f"not-before {format_time(int(NOW) + 10)}", ACCESS, "not valid yet"),
    ("bogus x", ACCESS, "is not understood"),
], ids=["apps", "hosts", "instances", "actions", "org", "user", "expires", "not-before", "unknown"])  # no clock in ids:
# every pytest-xdist worker must collect the same names
def test_each_first_party_caveat_is_judged(caveat, access, reason):
    tok, rec = service(caveats=("org acme", caveat))
    assert reason in denied(tok, rec, access=access)


def test_discharge_caveats_are_judged_too():
    tok, rec = permission()
    dt = discharge(tok, extra=["hosts worker-9"])
    assert "does not allow host 'worker-7'" in denied(tok, rec, [dt])
    expired = discharge(tok, ttl=-1)
    assert "has expired" in denied(tok, rec, [expired])


def test_strip_judges_only_time_caveats():
    tok, rec = permission(caveats=("org acme", "apps billing"))
    assert check(tok, rec, [discharge(tok)], access=None).user == "alice"
    late, rec2 = permission(caveats=("org acme", f"expires {format_time(int(NOW) - 1)}"))
    assert "has expired" in denied(late, rec2, [discharge(late)], access=None)


def test_time_is_the_given_clock():
    tok, rec = service(caveats=("org acme", f"expires {format_time(int(NOW) + 60)}"))
    assert check(tok, rec, now=NOW + 59)
    assert "has expired" in denied(tok, rec, now=NOW + 60)


def test_request_user_must_be_the_token_user():
    tok, rec = service()
    assert check(tok, rec, access=replace(ACCESS, user="alice")).user == "alice"
    assert denied(tok, rec, access=replace(ACCESS, user="bob")) == "token belongs to user 'alice', not 'bob'"
    rec.user = None
    assert check(tok, rec, access=replace(ACCESS, user="bob")).user is None


def test_a_cached_chain_is_what_verify_uses():
    tok, rec = service(caveats=("org acme", "apps billing"))
    chains = ChainCache()
    chains.put(tok, ((), []))  # as if this exact token had been verified with no caveats
    assert check(tok, rec, chains=chains).caveats == []
    rec.revoked_fps = {b"f" * 32}  # with revoked attenuations the cache is bypassed
    assert "does not allow app" in denied(tok, rec, chains=chains)


# --- the chain cache ------------------------------------------------------------------------


def test_cached_chain_still_checks_revocation_location_and_kind():
    tok, rec = service()
    chains = ChainCache()
    check(tok, rec, chains=chains)
    assert chains.get(tok) is not None
    assert check(tok, rec, chains=chains).caveats[0].text == "org acme"
    assert denied(replace(tok, location="http://x"), rec, chains=chains) == "token location is not this authority"
    rec.revoked = True
    assert denied(tok, rec, chains=chains) == "token is revoked"


def test_cached_chain_still_judges_caveats_and_discharges():
    tok, rec = permission()
    chains = ChainCache()
    check(tok, rec, [discharge(tok)], chains=chains)
    assert denied(tok, rec, [], chains=chains).startswith("no discharge")
    assert "does not allow app" in denied(tok, rec, [discharge(tok)], access=replace(ACCESS, app="x"),
                                          chains=chains)


def test_tokens_with_revoked_attenuations_are_not_cached():
    tok, rec = service()
    rec.revoked_fps = {b"x" * 32}
    chains = ChainCache()
    check(tok, rec, chains=chains)
    assert chains.get(tok) is None and len(chains) == 0


def test_tokens_past_the_revoked_attenuation_cap_are_not_cached():
    tok, rec = service()
    chains = ChainCache()
    chains.put(tok, ((), []))
    rec.revoked_fps = None
    assert check(tok, rec, chains=chains).caveats[0].text == "org acme"  # walked, not the cached entry
    chains = ChainCache()
    check(tok, rec, chains=chains)
    assert len(chains) == 0


def test_chain_cache_is_bounded():
    chains = ChainCache(max_entries=2)
    for _ in range(3):
        tok, rec = service()
        check(tok, rec, chains=chains)
    assert len(chains) <= 2


def test_forged_token_is_never_cached():
    tok, rec = service()
    chains = ChainCache()
    denied(replace(tok, signature=bytes(32)), rec, chains=chains)
    assert len(chains) == 0


# --- presentations --------------------------------------------------------------------------


def test_split_presentation():
    tok, _ = permission()
    dt = discharge(tok)
    assert separate_discharges([dt, tok]) == (tok, [dt])
    for bad in ([dt], [tok, tok], []):
        with pytest.raises(BadRequest, match="^a presentation holds exactly one permission or service token$"):
            separate_discharges(bad)
