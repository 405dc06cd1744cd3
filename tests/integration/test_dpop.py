"""Proof of possession through the real authority (SPEC §14): `/v1/verify` with a `proof`,
from the side of someone who copied a bound token but not its key."""

from __future__ import annotations

import time

import pytest

from clients import offline, tokens
from tests.support import service_token

URL = "https://orders.example/v1/orders"
HOST = {"app": "orders", "host": "worker-7"}


@pytest.fixture
def keys(dpop_keys):
    return dpop_keys


async def verify(authority, token, proof=None, **access):
    body = {"tokens": [token], "access": {"org": "acme", "action": "r", **HOST, **access}}
    if proof is not None:
        body["proof"] = proof
    return await authority.post("/v1/verify", body)


def proof_for(signer, token, htm="GET", htu=URL, **kw):
    return {"dpop": signer.proof(htm, htu, token, **kw), "htm": htm, "htu": htu}


async def test_a_bound_token_needs_a_proof_made_with_its_key(authority, keys):
    host, thief = keys
    bound = offline.attenuate(await service_token(authority), [f"cnf-jkt {host.jkt}"])

    status, body = await verify(authority, bound)  # stolen token, no key
    assert status == 403 and "needs a DPoP proof" in body["message"]
    status, body = await verify(authority, bound, proof_for(thief, bound))  # stolen token, own key
    assert status == 403 and "another key" in body["message"]
    status, body = await verify(authority, bound, proof_for(host, bound))
    assert status == 200 and body["allowed"] is True, body
    assert f"cnf-jkt {host.jkt}" in body["caveats"]


async def test_each_proof_is_good_for_one_allowed_request(authority, keys):
    host, _ = keys
    bound = offline.attenuate(await service_token(authority), [f"cnf-jkt {host.jkt}"])
    proof = proof_for(host, bound)
    status, body = await verify(authority, bound, proof, host="worker-8")  # denied: not used up
    assert status == 403 and "hosts" in body["message"]
    assert (await verify(authority, bound, proof))[0] == 200
    status, body = await verify(authority, bound, proof)
    assert status == 403 and body["message"] == "DPoP proof was already used (replayed jti)"
    assert (await verify(authority, bound, proof_for(host, bound)))[0] == 200  # a fresh one is fine


async def test_a_proof_for_another_request_token_or_time(authority, keys):
    host, _ = keys
    st = await service_token(authority)
    bound = offline.attenuate(st, [f"cnf-jkt {host.jkt}"])
    other_bound = offline.attenuate(st, [f"cnf-jkt {host.jkt}", "instances i-1"])
    cases = {
        "another HTTP method": {**proof_for(host, bound, htm="POST"), "htm": "GET"},
        "another URL": {**proof_for(host, bound, htu=URL + "/x"), "htu": URL},
        "another token": proof_for(host, other_bound),
        "too old": proof_for(host, bound, now=time.time() - 120),  # well past 60 s, however slow the run
        "in the future": proof_for(host, bound, now=time.time() + 120),
    }
    for reason, proof in cases.items():
        status, body = await verify(authority, bound, proof)
        assert status == 403 and reason in body["message"], (reason, body)


async def test_an_unbound_token_with_a_bad_proof_is_denied(authority, keys):
    host, _ = keys
    st = await service_token(authority)
    assert (await verify(authority, st, proof_for(host, st)))[0] == 200  # a good proof does no harm
    status, body = await verify(authority, st, {"dpop": "not.a.jws", "htm": "GET", "htu": URL})
    assert status == 403 and "DPoP proof" in body["message"]


@pytest.mark.parametrize("proof", [
    "a string", [], {"dpop": "x"}, {"dpop": "x", "htm": "GET", "htu": 5},
    {"dpop": "x", "htm": "GET", "htu": URL, "extra": 1}, {"dpop": None, "htm": "GET", "htu": URL},
])
async def test_a_malformed_proof_field_is_a_400(authority, proof):
    status, body = await verify(authority, await service_token(authority), proof)
    assert status == 400 and body["error"] == "bad_request"


async def test_garbage_proofs_are_4xx_never_5xx(authority, keys):
    host, _ = keys
    bound = offline.attenuate(await service_token(authority), [f"cnf-jkt {host.jkt}"])
    good = proof_for(host, bound)["dpop"]
    for dpop in ("", "..", "x" * 5000, good[:-5], good + "A", good.replace(".", "..", 1), "é.é.é", good[::-1]):
        status, _ = await verify(authority, bound, {"dpop": dpop, "htm": "GET", "htu": URL})
        assert status == 403, dpop[:40]


async def test_strip_copies_cnf_jkt_and_revoke_by_value_needs_no_proof(authority, keys):
    host, _ = keys
    pt = offline.attenuate(await authority.mint(["apps orders"]), [f"cnf-jkt {host.jkt}"])
    status, body = await authority.post("/v1/service-tokens", {"tokens": [pt, authority.discharger.discharge(pt)]})
    assert status == 201, body
    assert f"cnf-jkt {host.jkt}" in body["caveats"]
    st = body["token"]
    assert (await verify(authority, st, proof_for(host, st), host=None))[0] == 200
    assert (await verify(authority, st, host=None))[0] == 403
    status, body = await authority.post("/v1/revoke", {"tokens": [st]})
    assert status == 200 and body["revoked"][0]["scope"] == "token"
    assert (await verify(authority, st, proof_for(host, st), host=None))[0] == 403


async def test_two_cnf_jkt_caveats_need_both_keys_so_none_is_enough(authority, keys):
    host, thief = keys
    both = offline.attenuate(await service_token(authority), [f"cnf-jkt {host.jkt}", f"cnf-jkt {thief.jkt}"])
    for signer in keys:
        assert (await verify(authority, both, proof_for(signer, both)))[0] == 403
    assert tokens.parse(both)  # still a well-formed token
