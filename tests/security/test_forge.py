"""Attacker goal: forge a token or signature the authority accepts."""

import pytest
from pymacaroons import MACAROON_V2, Macaroon

from clients import macaroon, tokens
from tests.support.attacks import expect, flip, raw_of, regions, resign, with_payload
from tests.support.fakes import pm_to_string


@pytest.mark.parametrize("region", ["identifier", "caveat", "vid", "ticket", "signature"])
async def test_bit_flip_in_each_region_with_a_fixed_checksum(authority, region):
    pt = await authority.mint(["apps orders"])
    raw = raw_of(pt)
    bad = with_payload(tokens.PERMISSION, flip(raw, regions(pt)[region]))
    dt = authority.discharger.discharge(pt)
    status, body = await authority.verify([bad, dt], app="orders")
    # Tampered bytes either no longer parse (400) or no longer verify (403): never an allow.
    assert (status, body.get("error")) in ((400, "malformed_token"), (403, "denied")), body


async def test_bit_flip_in_the_checksum(authority):
    pt = await authority.mint()
    bad = pt[:-1] + ("0" if pt[-1] != "0" else "1")
    body = expect(await authority.verify([bad]), 400, "malformed_token")
    assert "checksum" in body["message"]


async def test_bit_flip_in_the_discharge_signature(authority):
    pt = await authority.mint()
    dt = authority.discharger.discharge(pt)
    sig = tokens.parse(dt).signature
    bad = resign(dt, signature=bytes([sig[0] ^ 0x80]) + sig[1:])
    expect(await authority.verify([pt, bad]), 403, "denied")


async def test_all_zero_signature(authority):
    pt = await authority.mint()
    expect(await authority.verify([resign(pt, signature=bytes(32)), authority.discharger.discharge(pt)]), 403, "denied")


async def test_token_signed_with_a_guessed_root_key(authority):
    pt = await authority.mint()
    m = Macaroon(location=authority.config.public_url, identifier=tokens.parse(pt).identifier, key=b"\x00" * 32,
                 version=MACAROON_V2)
    m.add_first_party_caveat("org acme")
    expect(await authority.verify([pm_to_string(tokens.SERVICE, m)]), 403, "denied")


async def test_discharge_made_without_the_caveat_key(authority):
    pt = await authority.mint()
    ticket = authority.discharger.ticket(pt).cid
    m = Macaroon(location=authority.discharger.location, identifier=ticket, key=b"guess", version=MACAROON_V2)
    m.add_first_party_caveat("user alice")
    from clients import offline
    forged = offline.bind(pt, pm_to_string(tokens.DISCHARGE, m))
    expect(await authority.verify([pt, forged]), 403, "denied")


async def test_service_token_minted_from_a_permission_tokens_signature(authority):
    """The signature of a permission token is not a key for a service token of the same id."""
    pt = await authority.mint()
    tok = tokens.parse(pt)
    first_only = tok.caveats[:1]
    sig = tok.signature
    fake = tokens.Token(tokens.SERVICE, tok.location, tok.identifier, first_only, macaroon.first_party(sig, b"org acme"))
    expect(await authority.verify([fake.encode()]), 403, "denied")


async def test_revoke_by_value_with_a_forged_signature(authority):
    pt = await authority.mint()
    expect(await authority.post("/v1/revoke", {"tokens": [resign(pt, signature=bytes(32))]}), 403, "denied")
