"""Attacker goal: widen what a token allows by adding, changing or confusing caveats."""

import pytest

from clients import offline, tokens
from tests.support import strip
from tests.support.attacks import append_raw, expect, holder_third_party, resign


async def service(authority, caveats=("apps orders", "actions r")) -> str:
    pt = await authority.mint(list(caveats))
    return (await strip(authority, pt))["token"]


async def test_second_org_caveat(authority):
    st = append_raw(await service(authority), b"org other")
    expect(await authority.verify([st], org="other", app="orders"), 403, "denied")
    expect(await authority.verify([st], org="acme", app="orders"), 403, "denied")


async def test_wider_actions_after_narrow(authority):
    st = append_raw(await service(authority), b"actions rwcdC")
    body = expect(await authority.verify([st], app="orders", action="rw"), 403, "denied")
    assert "actions r" in body["message"]


@pytest.mark.parametrize("predicate", [
    b"apps *",
    b"apps orders,*",
    b"admin true",
    b"apps orders\xff",
    b"apps ord\x00ers",
    b"hosts " + b"a" * 129,
    b"apps " + b"x" * 5000,
    b"ORG acme",
    b"apps  orders",
    b"apps orders ",
])
async def test_unparseable_caveats_deny(authority, predicate):
    st = append_raw(await service(authority), predicate)
    expect(await authority.verify([st], app="orders", host="a"), 403, "denied")


async def test_permission_token_used_as_a_service_token(authority):
    pt = await authority.mint()
    expect(await authority.verify([resign(pt, prefix=tokens.SERVICE)]), 403, "denied")


async def test_strip_of_a_service_token(authority):
    st = await service(authority)
    pt = await authority.mint()
    expect(await authority.post("/v1/service-tokens", {"tokens": [st, authority.discharger.discharge(pt)]}),
           400, "bad_request")


async def test_strip_with_an_extra_third_party_caveat(authority):
    pt = await authority.mint()
    pt2 = holder_third_party(pt, authority.discharger.location, b"extra", b"k" * 32)
    expect(await authority.post("/v1/service-tokens", {"tokens": [pt2, authority.discharger.discharge(pt2)]}),
           400, "bad_request")


async def test_strip_drops_nothing_the_holder_added(authority):
    pt = await authority.mint(["apps orders"])
    narrow = offline.attenuate(pt, ["hosts ci-1"])
    status, body = await authority.post("/v1/service-tokens", {"tokens": [narrow, authority.discharger.discharge(narrow)]})
    assert status == 201 and "hosts ci-1" in body["caveats"]
    expect(await authority.verify([body["token"]], app="orders", host="other"), 403, "denied")


async def test_user_field_cannot_be_claimed(authority):
    st = await service(authority)
    expect(await authority.verify([st], app="orders", user="root"), 403, "denied")
