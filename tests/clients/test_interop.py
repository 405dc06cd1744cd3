"""Byte compatibility with plain pymacaroons MACAROON_V2, both ways."""

import base64

from pymacaroons import MACAROON_V2, Macaroon, Verifier

from authority.minting import build
from authority.root_keys import RootKeys
from clients import macaroon, offline, tokens
from tests.support.fakes import FakeDischarger, pm_to_string, string_to_pm


class RecordingKeyStore(RootKeys):
    """Keeps the root key so plain pymacaroons can verify with it."""

    def new_token_key(self, token_id, identifier):
        import nacl.utils
        self.root_key = nacl.utils.random(32)
        return b"", macaroon.initial_signature(self.root_key, identifier)


def test_sable_token_verifies_in_pymacaroons_with_its_discharge():
    d = FakeDischarger()
    keys = RecordingKeyStore(bytes(32))
    tok, _ = build(keys, tokens.PERMISSION, "http://auth", "ab" * 16, ["org acme", "apps orders"], d.trust, "acme")
    token = tok.encode()
    discharge = d.discharge(token)  # bound by Sable's offline.bind

    m = string_to_pm(token)
    assert m.location == "http://auth" and m.identifier_bytes == b"\x01" + bytes.fromhex("ab" * 16)
    dm = string_to_pm(discharge)
    v = Verifier()
    v.satisfy_exact("org acme")
    v.satisfy_exact("apps orders")
    v.satisfy_general(lambda p: p.startswith(("user ", "expires ")))
    assert v.verify(m, keys.root_key, [dm])
    # And the bytes are pymacaroons' own: re-serialising changes nothing.
    assert pm_to_string(tokens.PERMISSION, m) == token


def test_pymacaroons_binding_equals_sable_binding():
    d = FakeDischarger()
    keys = RecordingKeyStore(bytes(32))
    tok, _ = build(keys, tokens.PERMISSION, "http://auth", "cd" * 16, ["org acme"], d.trust, "acme")
    unbound = d.discharge(tok.encode(), bind=False)
    ours = offline.bind(tok.encode(), unbound)
    theirs = string_to_pm(tok.encode()).prepare_for_request(string_to_pm(unbound))
    assert pm_to_string(tokens.DISCHARGE, theirs) == ours


def test_caveat_appended_by_pymacaroons_is_parsed_here():
    keys = RecordingKeyStore(bytes(32))
    tok, _ = build(keys, tokens.SERVICE, "http://auth", "ef" * 16, ["org acme"])
    m = string_to_pm(tok.encode())
    m.add_first_party_caveat("hosts worker-7")
    theirs = tokens.parse(pm_to_string(tokens.SERVICE, m))
    assert theirs.caveats[-1].cid == b"hosts worker-7"
    ours = tokens.parse(offline.attenuate(tok, ["hosts worker-7"]))
    assert ours == theirs


def test_pymacaroons_made_token_round_trips_through_sable():
    m = Macaroon(location="http://auth", identifier=b"\x01" + bytes(16), key=b"root", version=MACAROON_V2)
    m.add_first_party_caveat("org acme")
    m.add_third_party_caveat("http://d", b"caveat-key", b"ticket")
    text = pm_to_string(tokens.PERMISSION, m)
    tok = tokens.parse(text)
    assert tok.caveats[1].third_party and tok.caveats[1].location == "http://d"
    assert base64.urlsafe_b64encode(tokens.to_bytes(tok)).decode().rstrip("=") == m.serialize()
