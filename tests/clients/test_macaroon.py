"""The macaroon construction against plain pymacaroons, function by function."""

from __future__ import annotations

import hashlib
import os

import pytest
from pymacaroons import MACAROON_V2, Macaroon

from clients import macaroon, tokens
from clients.tokens import RawCaveat
from tests.support.fakes import pm_to_string

ROOT = b"root-key-0123456789abcdef0123456"
IDENT = b"\x01" + bytes(range(16))


def reference(caveats=(), third=None) -> Macaroon:
    m = Macaroon(location="http://a", identifier=IDENT, key=ROOT, version=MACAROON_V2)
    for c in caveats:
        m.add_first_party_caveat(c)
    if third is not None:
        m.add_third_party_caveat("http://d", third[0], third[1])
    return m


def sig_of(m: Macaroon) -> bytes:
    return bytes.fromhex(m.signature)


def test_initial_signature_and_first_party_chain():
    sig0 = macaroon.initial_signature(ROOT, IDENT)
    assert sig0 == sig_of(reference())
    tok = macaroon.mint(tokens.SERVICE, "http://a", IDENT, sig0, ["org acme", "apps a"])
    assert tok.encode() == pm_to_string(tokens.SERVICE, reference(["org acme", "apps a"]))
    sigs = macaroon.chain(sig0, tok.caveats)
    assert sigs == [sig_of(reference(["org acme"])), sig_of(reference(["org acme", "apps a"]))]
    assert macaroon.final_signature(sig0, tok.caveats) == tok.signature
    assert macaroon.final_signature(sig0, ()) == sig0 and macaroon.chain(sig0, []) == []


def test_third_party_signature_matches_pymacaroons():
    m = reference(["org acme"], third=(b"caveat-key", b"ticket"))
    cav = m.caveats[-1]
    sig = macaroon.third_party(sig_of(reference(["org acme"])), cav.verification_key_id, b"ticket")
    assert sig == sig_of(m)
    raw = [RawCaveat(b"org acme"), RawCaveat(b"ticket", cav.verification_key_id, "http://d")]
    assert macaroon.chain(macaroon.initial_signature(ROOT, IDENT), raw)[-1] == sig_of(m)


def test_add_third_party_seals_the_caveat_key_under_the_current_signature():
    base = macaroon.mint(tokens.PERMISSION, "http://a", IDENT, macaroon.initial_signature(ROOT, IDENT), ["org a"])
    key = os.urandom(32)
    tok = macaroon.add_third_party(base, key, b"ticket", "http://d")
    cav = tok.caveats[-1]
    assert (cav.cid, cav.location, len(cav.vid)) == (b"ticket", "http://d", 72)
    assert macaroon.open_caveat_key(base.signature, cav.vid) == macaroon.derive_key(key)
    assert macaroon.open_caveat_key(tok.signature, cav.vid) is None
    assert macaroon.open_caveat_key(base.signature, cav.vid[:-1] + bytes([cav.vid[-1] ^ 1])) is None
    assert tok.signature == macaroon.third_party(base.signature, cav.vid, b"ticket")


def test_open_caveat_key_refuses_garbage_and_wrong_lengths():
    sig = os.urandom(32)
    assert macaroon.open_caveat_key(sig, b"short") is None
    import nacl.secret
    boxed = bytes(nacl.secret.SecretBox(sig).encrypt(b"x" * 31))
    assert macaroon.open_caveat_key(sig, boxed) is None
    boxed = bytes(nacl.secret.SecretBox(sig).encrypt(b"x" * 32))
    assert macaroon.open_caveat_key(sig, boxed) == b"x" * 32


def test_discharge_and_binding_match_pymacaroons():
    key = b"caveat-key-0123456789abcdef01234"
    d = Macaroon(location="http://d", identifier=b"ticket", key=key, version=MACAROON_V2)
    d.add_first_party_caveat("user alice")
    ours = macaroon.discharge(key, b"ticket", "http://d", ["user alice"])
    assert ours.encode() == pm_to_string(tokens.DISCHARGE, d)
    assert macaroon.discharge_signature(macaroon.derive_key(key), ours) == ours.signature
    token = reference(["org acme"], third=(key, b"ticket"))
    bound = token.prepare_for_request(d)
    tok = tokens.parse(pm_to_string(tokens.PERMISSION, token))
    assert macaroon.bind_discharge(tok, ours).encode() == pm_to_string(tokens.DISCHARGE, bound)
    assert macaroon.bind(tok.signature, ours.signature) == sig_of(bound)


def test_attenuate_appends_and_resigns():
    tok = tokens.parse(pm_to_string(tokens.SERVICE, reference(["org acme"])))
    out = macaroon.attenuate(tok, ["hosts h", "apps a"])
    assert out.encode() == pm_to_string(tokens.SERVICE, reference(["org acme", "hosts h", "apps a"]))
    assert macaroon.attenuate(tok, []) == tok


def test_equal_and_fingerprint():
    a = os.urandom(32)
    assert macaroon.equal(a, bytes(a)) and not macaroon.equal(a, bytes(32))
    assert macaroon.fingerprint(a) == hashlib.sha256(a).digest() != a


@pytest.mark.parametrize("n", [0, 1, 5])
def test_mint_with_n_caveats_verifies_in_pymacaroons(n):
    from pymacaroons import Verifier
    texts = [f"apps a{i}" for i in range(n)]
    tok = macaroon.mint(tokens.SERVICE, "http://a", IDENT, macaroon.initial_signature(ROOT, IDENT), texts)
    m = Macaroon.deserialize(pm_to_string(tokens.SERVICE, reference(texts))[9:-6] + "")
    v = Verifier()
    v.satisfy_general(lambda p: True)
    assert v.verify(m, ROOT) and sig_of(m) == tok.signature


def test_walk_is_chain_split_by_party():
    sig0 = macaroon.initial_signature(ROOT, IDENT)
    tok = macaroon.mint("sable_pt_", "here", IDENT, sig0, ["org acme"])
    tok = macaroon.add_third_party(tok, bytes(range(32)), b"ticket", "there")
    tok = macaroon.attenuate(tok, ["hosts a"])
    sigs, first, third = macaroon.walk(sig0, tok.caveats, bytes.decode)
    assert sigs == macaroon.chain(sig0, tok.caveats) and sigs[-1] == tok.signature
    assert first == ["org acme", "hosts a"]
    assert third == [(1, tok.caveats[1], sigs[0])]
