"""Mint and verify against the real authority on loopback, from the attacker's side too."""

import time
from dataclasses import replace

import pytest
from pymacaroons import MACAROON_V2, Macaroon

from authority.records import MAX_REVOKED_IN_MEMORY
from clients import caveats, offline, tokens
from tests.support.attacks import holder_third_party, last_char_changed, self_discharge
from tests.support.fakes import pm_to_string, string_to_pm


async def test_mint_then_verify_allows(authority):
    pt = await authority.mint(["apps orders", "actions rw"])
    dt = authority.discharger.discharge(pt, user="alice")
    status, body = await authority.verify([pt, dt], app="orders", action="rw")
    assert status == 200, body
    assert body["allowed"] is True and body["kind"] == "permission" and body["org"] == "acme"
    assert body["user"] == "alice"
    assert body["id"] == tokens.parse(pt).token_id
    assert body["caveats"][:3] == ["org acme", "apps orders", "actions rw"]
    assert any(c.startswith("expires ") for c in body["caveats"])
    assert "user alice" in body["caveats"]


async def test_order_of_tokens_is_free(authority):
    pt = await authority.mint()
    assert await authority.allowed([authority.discharger.discharge(pt), pt])


async def test_mint_response_and_shape(authority):
    await authority.create_org()
    status, body = await authority.post("/v1/tokens", {"org": "acme", "caveats": ["apps a"], "expires_in": 60}, authority.admin)
    assert status == 201
    assert body["caveats"][0] == "org acme" and body["caveats"][1] == "apps a"
    assert body["caveats"][2].startswith("expires ")
    tok = tokens.parse(body["token"])
    assert [c.third_party for c in tok.caveats] == [False, False, False, True]
    assert tok.caveats[-1].location == authority.discharger.location
    assert tok.location == authority.config.public_url


@pytest.mark.parametrize(
    "caveat, good, bad, named",
    [
        ("apps orders", {"app": "orders"}, {"app": "billing"}, "apps orders"),
        ("actions r", {"action": "r"}, {"action": "rw"}, "actions r"),
        ("hosts worker-7", {"host": "worker-7"}, {"host": "worker-8"}, "hosts worker-7"),
        ("instances i-1", {"instance": "i-1"}, {"instance": "i-2"}, "instances i-1"),
        ("apps orders", {"app": "orders"}, {}, "apps orders"),  # missing field denies
    ],
)
async def test_each_caveat_denies_the_wrong_request(authority, caveat, good, bad, named):
    pt = await authority.mint([caveat])
    dt = authority.discharger.discharge(pt)
    assert await authority.allowed([pt, dt], **good)
    status, body = await authority.verify([pt, dt], **bad)
    assert status == 403 and body["error"] == "denied" and body["allowed"] is False
    assert named in body["message"]


async def test_org_caveat_denies_another_org(authority):
    pt = await authority.mint()
    status, body = await authority.verify([pt, authority.discharger.discharge(pt)], org="other")
    assert status == 403 and "org acme" in body["message"]


async def test_time_caveats(authority):
    pt = await authority.mint()
    dt = authority.discharger.discharge(pt)
    past = caveats.format_time(int(time.time()) - 5)
    future = caveats.format_time(int(time.time()) + 3600)
    expired = offline.attenuate(pt, [f"expires {past}"])
    status, body = await authority.verify([expired, authority.discharger.discharge(expired)])
    assert status == 403 and "expired" in body["message"]
    early = offline.attenuate(pt, [f"not-before {future}"])
    status, body = await authority.verify([early, authority.discharger.discharge(early)])
    assert status == 403 and "not valid yet" in body["message"]
    assert await authority.allowed([pt, dt])


async def test_mint_expires_in_is_enforced(authority):
    # Whole seconds: `expires now+2` leaves 1-2 s of life, enough for a slow machine to verify once
    # (with 1 s it could be gone before the first verify: a flaky failure seen in CI).
    pt = await authority.mint(expires_in=2)
    expires_at = caveats.parse_time(next(c.cid.decode()[8:] for c in tokens.parse(pt).caveats
                                         if c.cid.startswith(b"expires ")))
    dt = authority.discharger.discharge(pt)
    assert await authority.allowed([pt, dt])
    time.sleep(max(0.0, expires_at - time.time()) + 0.1)  # wall clock: the authority's clock decides, no leeway
    status, body = await authority.verify([pt, dt])
    assert status == 403 and "expired" in body["message"]


async def test_user_field(authority):
    pt = await authority.mint()
    dt = authority.discharger.discharge(pt, user="alice")
    assert await authority.allowed([pt, dt], user="alice")
    status, body = await authority.verify([pt, dt], user="bob")
    assert status == 403 and "user alice" in body["message"]


# --- tampering and forgery -------------------------------------------------------------------


def resign(token: str, **changes) -> str:
    tok = tokens.parse(token)
    return replace(tok, **changes).encode()


async def test_flipped_signature_bit_is_denied(authority):
    pt = await authority.mint()
    dt = authority.discharger.discharge(pt)
    sig = tokens.parse(pt).signature
    bad = resign(pt, signature=bytes([sig[0] ^ 1]) + sig[1:])
    status, body = await authority.verify([bad, dt])
    assert status == 403 and "signature" in body["message"]


async def test_flipped_payload_bit_without_checksum_fix_is_malformed(authority):
    pt = await authority.mint()
    i = len(tokens.PERMISSION) + 20
    bad = pt[:i] + ("A" if pt[i] != "A" else "B") + pt[i + 1:]
    status, body = await authority.verify([bad])
    assert status == 400 and body["error"] == "malformed_token" and "checksum" in body["message"]


async def test_truncated_and_garbage_tokens_are_malformed(authority):
    pt = await authority.mint()
    for bad in [pt[:-10], pt[: len(pt) // 2], "sable_pt_", "hello", "sable_st_" + "A" * 40, ""]:
        status, body = await authority.verify([bad])
        assert status == 400 and body["error"] == "malformed_token", bad


async def test_caveat_appended_without_the_key_is_denied(authority):
    pt = await authority.mint(["hosts worker-7"])
    tok = tokens.parse(pt)
    # Swap a caveat for a wider one but keep the old signature.
    widened = replace(tok, caveats=(tok.caveats[0], tokens.RawCaveat(b"hosts worker-8"), *tok.caveats[2:])).encode()
    status, body = await authority.verify([widened, authority.discharger.discharge(widened)], host="worker-8")
    assert status == 403 and "signature" in body["message"]
    dropped = replace(tok, caveats=(tok.caveats[0], *tok.caveats[2:])).encode()
    status, body = await authority.verify([dropped, authority.discharger.discharge(dropped)], host="worker-8")
    assert status == 403


async def test_forged_token_with_random_key_is_denied(authority):
    pt = await authority.mint()
    m = Macaroon(location=authority.config.public_url, identifier=tokens.parse(pt).identifier, key=b"guess", version=MACAROON_V2)
    m.add_first_party_caveat("org acme")
    status, body = await authority.verify([pm_to_string(tokens.SERVICE, m)])
    assert status == 403


async def test_unknown_token_id_is_denied(authority):
    m = Macaroon(location=authority.config.public_url, identifier=b"\x01" + bytes(16), key=b"k", version=MACAROON_V2)
    status, body = await authority.verify([pm_to_string(tokens.SERVICE, m)])
    assert status == 403 and "unknown token" in body["message"]


async def test_prefix_swapped_to_service_is_denied(authority):
    pt = await authority.mint()
    tok = tokens.parse(pt)
    as_service = replace(tok, prefix=tokens.SERVICE).encode()
    status, body = await authority.verify([as_service, authority.discharger.discharge(pt)])
    assert status == 403 and "kind" in body["message"]


async def test_wrong_location_is_denied(authority):
    pt = await authority.mint()
    moved = resign(pt, location="http://evil.test")
    status, body = await authority.verify([moved, authority.discharger.discharge(moved)])
    assert status == 403 and "location" in body["message"]


# --- discharge misuse --------------------------------------------------------------------------


async def test_missing_discharge(authority):
    pt = await authority.mint()
    status, body = await authority.verify([pt])
    assert status == 403 and "no discharge" in body["message"]


async def test_unbound_discharge(authority):
    pt = await authority.mint()
    status, body = await authority.verify([pt, authority.discharger.discharge(pt, bind=False)])
    assert status == 403 and "not bound" in body["message"]


async def test_discharge_bound_to_another_token(authority):
    pt = await authority.mint()
    narrower = offline.attenuate(pt, ["apps orders"])
    dt_for_narrower = authority.discharger.discharge(narrower)
    status, body = await authority.verify([pt, dt_for_narrower], app="orders")
    assert status == 403 and "bound to another token" in body["message"]


async def test_discharge_for_another_ticket(authority):
    pt1 = await authority.mint()
    pt2 = await authority.mint()
    status, body = await authority.verify([pt1, authority.discharger.discharge(pt2)])
    assert status == 403 and "no discharge" in body["message"]
    # Re-binding the other ticket's discharge to this token does not help either.
    rebound = offline.bind(pt1, authority.discharger.discharge(pt2, bind=False))
    status, body = await authority.verify([pt1, rebound])
    assert status == 403


async def test_expired_discharge(authority):
    pt = await authority.mint()
    dt = authority.discharger.discharge(pt, now=time.time() - 400)
    status, body = await authority.verify([pt, dt])
    assert status == 403 and "expired" in body["message"]


async def test_discharge_used_twice(authority):
    pt = await authority.mint()
    dt = authority.discharger.discharge(pt)
    status, body = await authority.verify([pt, dt, dt])
    assert status == 403 and "more than one discharge" in body["message"]


async def test_leftover_discharge(authority):
    pt1 = await authority.mint()
    pt2 = await authority.mint()
    extra = authority.discharger.discharge(pt2)
    status, body = await authority.verify([pt1, authority.discharger.discharge(pt1), extra])
    assert status == 403 and "matches no third-party caveat" in body["message"]


def _nested_discharge(authority, pt: str, self_reference: bool) -> str:
    d = authority.discharger
    unbound = string_to_pm(d.discharge(pt, bind=False))
    cid = unbound.identifier_bytes if self_reference else b"another ticket"
    unbound.add_third_party_caveat(d.location, b"k" * 32, cid)
    return offline.bind(pt, pm_to_string(tokens.DISCHARGE, unbound))


async def test_nested_discharge(authority):
    pt = await authority.mint()
    status, body = await authority.verify([pt, _nested_discharge(authority, pt, False)])
    assert status == 403 and "nested" in body["message"]


async def test_self_referencing_discharge_does_not_recurse(authority):
    pt = await authority.mint()
    nested = _nested_discharge(authority, pt, True)
    status, body = await authority.verify([pt, nested])
    assert status == 403
    # Presenting it twice makes it look like its own discharge: still one loop, still denied.
    status, body = await authority.verify([pt, nested, nested])
    assert status == 403


async def test_discharge_with_wrong_location(authority):
    pt = await authority.mint()
    dt = resign(authority.discharger.discharge(pt), location="http://other-discharger.test")
    status, body = await authority.verify([pt, dt])
    assert status == 403 and "location" in body["message"]


async def test_third_party_caveat_to_untrusted_discharger(authority):
    pt = await authority.mint()
    m = string_to_pm(pt)
    m.add_third_party_caveat("http://evil.test", b"k" * 32, b"evil ticket")
    evil = pm_to_string(tokens.PERMISSION, m)
    status, body = await authority.verify([evil, authority.discharger.discharge(evil)])
    assert status == 403 and "trusted discharger" in body["message"]


# --- bad requests --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"tokens": "x", "access": {"org": "acme", "action": "r"}},
        {"tokens": [], "access": {"org": "acme", "action": "r"}},
        {"tokens": [1], "access": {"org": "acme", "action": "r"}},
        {"tokens": ["sable_pt_x"] * 33, "access": {"org": "acme", "action": "r"}},
    ],
)
async def test_bad_verify_bodies_are_400(authority, body):
    status, out = await authority.post("/v1/verify", body)
    assert status == 400 and out["error"] in ("bad_request", "malformed_token")


async def test_bad_access_is_400(authority):
    pt = await authority.mint()
    for access in [{"org": "acme", "action": "x"}, {"org": "acme"}, {"action": "r"}, "nope"]:
        status, body = await authority.post("/v1/verify", {"tokens": [pt], "access": access})
        assert status == 400 and body["error"] == "bad_request"


async def test_two_main_tokens_are_400(authority):
    pt = await authority.mint()
    status, body = await authority.verify([pt, pt])
    assert status == 400


async def test_not_json_and_oversized_bodies(authority):
    resp = await authority.client.post("/v1/verify", data=b"{not json")
    assert resp.status == 400 and (await resp.json())["error"] == "bad_request"
    resp = await authority.client.post("/v1/verify", data=b"[" + b" " * (64 * 1024) + b"]")
    assert resp.status == 413 and (await resp.json())["error"] == "bad_request"


async def test_errors_never_echo_the_token(authority):
    pt = await authority.mint()
    payload = pt[len(tokens.PERMISSION):-6]
    for presented in ([pt], [last_char_changed(pt)], [pt + "AAAA"]):
        resp = await authority.client.post("/v1/verify", json={"tokens": presented, "access": {"org": "acme", "action": "r"}})
        text = await resp.text()
        assert payload[:40] not in text


async def test_deeply_nested_json_is_400(authority):
    resp = await authority.client.post("/v1/verify", data=b"[" * 60000)
    assert resp.status == 400


async def test_long_unknown_caveat_denies_and_is_not_cached(authority):
    from clients import caveats as cav
    pt = await authority.mint()
    long = offline.attenuate(pt, ["hosts " + ",".join(f"h{i}" for i in range(200))])
    status, body = await authority.verify([long, authority.discharger.discharge(long)], host="h199")
    assert status == 200
    assert len(cav._cache) <= cav.CACHE_ENTRIES and not any(len(k) > cav.CACHEABLE for k in cav._cache)


async def test_a_home_made_discharge_cannot_choose_the_user(authority):
    import nacl.utils
    d = authority.discharger
    pt = await authority.mint(["apps orders"])
    key, cid = nacl.utils.random(32), b"holder ticket"
    pt2 = holder_third_party(pt, d.location, cid, key)
    real = d.discharge(pt2, user="mallory", index=0)
    fake = offline.bind(pt2, self_discharge(d.location, cid, key, ["user alice"]))
    for order in ([pt2, fake, real], [pt2, real, fake]):
        status, body = await authority.verify(order, app="orders")
        assert status == 403 and "more than one user" in body["message"], body
    # A holder-added caveat whose discharge names no other user only narrows, and the
    # reported user is still the authenticated one.
    honest = offline.bind(pt2, self_discharge(d.location, cid, key, ["apps orders"]))
    status, body = await authority.verify([pt2, honest, real], app="orders")
    assert status == 200 and body["user"] == "mallory"


async def test_repeated_presentations_use_the_caches_and_agree(authority):
    """The second and later verifies of the same strings skip parsing and the chain; they
    must answer exactly as the first, and a one-byte change must still be caught."""
    pt = await authority.mint(["apps orders"])
    dt = authority.discharger.discharge(pt)
    answers = [await authority.verify([pt, dt], app="orders") for _ in range(3)]
    assert all(a == answers[0] for a in answers) and answers[0][0] == 200
    for _ in range(2):
        status, body = await authority.post("/v1/service-tokens", {"tokens": [pt, dt]})
        assert status == 201
    sig = tokens.parse(pt).signature
    tampered = resign(pt, signature=sig[:-1] + bytes([sig[-1] ^ 1]))
    status, body = await authority.verify([tampered, dt], app="orders")
    assert status == 403 and "signature" in body["message"]
    narrower = offline.attenuate(pt, ["hosts h"])
    await authority.post("/v1/revoke", {"tokens": [narrower]})  # the token now has a revoked attenuation
    assert (await authority.verify([pt, dt], app="orders"))[0] == 200
    further = offline.attenuate(narrower, ["actions r"])
    status, body = await authority.verify([further, authority.discharger.discharge(further)], app="orders", host="h")
    assert status == 403 and "attenuation" in body["message"]


async def test_a_token_with_more_revoked_attenuations_than_memory_holds(authority):
    """Revoke by value is open to any holder, so one token can gather any number of revoked
    attenuations. Past the in-memory cap its record keeps none and the store judges: memory
    stays bounded, and every revoked one, before and after the cap, is still denied."""
    pt = await authority.mint(["apps orders"])
    revoked = [offline.attenuate(pt, [f"hosts h{i}"]) for i in range(MAX_REVOKED_IN_MEMORY + 6)]
    for a in revoked:
        status, body = await authority.post("/v1/revoke", {"tokens": [a]})
        assert status == 200 and body["revoked"][0]["scope"] == "attenuation", body
    rec = await authority.service.records.get(tokens.parse(pt).token_id)
    assert rec.revoked_fps is None  # past the cap: nothing held per revoked attenuation

    async def verify(token, host):
        return await authority.verify([token, authority.discharger.discharge(token)], app="orders", host=host)

    for i in (0, MAX_REVOKED_IN_MEMORY, len(revoked) - 1):
        status, body = await verify(revoked[i], f"h{i}")
        assert status == 403 and body["message"] == "this attenuation of the token is revoked"
        further = offline.attenuate(revoked[i], ["actions r"])
        assert (await verify(further, f"h{i}"))[0] == 403
    status, body = await authority.post("/v1/service-tokens",
                                        {"tokens": [revoked[1], authority.discharger.discharge(revoked[1])]})
    assert status == 403, body

    sibling = offline.attenuate(pt, ["hosts ok"])
    for _ in range(2):  # the second answer comes from the remembered clear fingerprints
        assert (await verify(sibling, "ok"))[0] == 200
    assert (await verify(pt, "anything"))[0] == 200
    assert len(rec.cleared) <= MAX_REVOKED_IN_MEMORY

    await authority.post("/v1/revoke", {"tokens": [sibling]})
    assert (await verify(sibling, "ok"))[0] == 403  # at once, though it had been found clear
    assert (await verify(pt, "anything"))[0] == 200


@pytest.mark.parametrize("caveat", ["user alice", "role admin"])
async def test_the_discharger_s_caveats_cannot_be_minted(authority, caveat):
    """`user` and `role` are the discharger's word about who signed in; a mint may not add them."""
    await authority.create_org()
    status, body = await authority.post("/v1/tokens", {"org": "acme", "caveats": [caveat]}, authority.admin)
    assert status == 400 and body["message"] == f"the {caveat.split()[0]} caveat is added by the discharger, not at mint"
