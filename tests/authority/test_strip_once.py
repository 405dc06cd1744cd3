"""Tokens sealed for a service principal, single-use strips and the RFC 8693 front door
(SPEC §16), at a real authority on both backends. The discharges come from the test
discharger (plain pymacaroons), carrying the `discharge-id` a 0.7 discharger adds."""

from __future__ import annotations

import asyncio
import os
import time

import pytest

from clients import caveats, offline, tokens

EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
PERMISSION, DISCHARGE, SERVICE = ("urn:sable:token-type:permission", "urn:sable:token-type:discharge",
                                  "urn:sable:token-type:service")


def did() -> str:
    return os.urandom(16).hex()


async def strip(env, pt, dt, **extra):
    return await env.post("/v1/service-tokens", {"tokens": [pt, dt], **extra})


async def test_a_discharge_strips_a_single_use_token_once(authority):
    pt = await authority.mint(["apps web"], strip_once=True)
    raw = authority.discharger.discharge(pt, bind=False, discharge_id=did())
    status, first = await strip(authority, pt, offline.bind(pt, raw))
    assert status == 201, first
    status, again = await strip(authority, pt, offline.bind(pt, raw))
    assert (status, again["error"], again["reason"]) == (409, "conflict", "discharge_used")
    # ...also through an attenuation of the token, the discharge bound to it: the record is the token's
    narrower = offline.attenuate(pt, ["hosts h1"])
    assert (await strip(authority, narrower, offline.bind(narrower, raw)))[0] == 409
    # a fresh discharge strips again
    assert (await strip(authority, pt, authority.discharger.discharge(pt, discharge_id=did())))[0] == 201


async def test_a_token_that_is_not_single_use_strips_as_often_as_asked(authority):
    pt = await authority.mint()
    dt = authority.discharger.discharge(pt, discharge_id=did())
    assert [(await strip(authority, pt, dt))[0] for _ in range(3)] == [201, 201, 201]


async def test_a_single_use_token_needs_the_dischargers_discharge_id(authority):
    pt = await authority.mint(strip_once=True)
    status, body = await strip(authority, pt, authority.discharger.discharge(pt))
    assert (status, body["reason"]) == (403, "discharge_id_missing")
    # a holder can only append: a discharge-id after the discharger's caveats is not believed,
    # so a discharge without one cannot be made single-use-but-fresh by each strip
    for _ in range(2):
        appended = authority.discharger.discharge(pt, extra=[f"discharge-id {did()}"])
        status, body = await strip(authority, pt, appended)
        assert (status, body["reason"]) == (403, "discharge_id_missing")
    first = did()
    assert (await strip(authority, pt, authority.discharger.discharge(pt, discharge_id=first)))[0] == 201
    again = authority.discharger.discharge(pt, discharge_id=first, extra=[f"discharge-id {did()}"])
    assert (await strip(authority, pt, again))[0] == 409


async def test_a_holders_shorter_expiry_does_not_end_the_record_early(authority):
    """The record lasts until the discharger's `expires`, not a holder's earlier one."""
    pt = await authority.mint(strip_once=True)
    once = did()
    soon = caveats.format_time(int(time.time()) + 2)
    short = authority.discharger.discharge(pt, discharge_id=once, extra=[f"expires {soon}"])
    assert (await strip(authority, pt, short))[0] == 201
    await asyncio.sleep(3)
    status, body = await strip(authority, pt, authority.discharger.discharge(pt, discharge_id=once))
    assert (status, body["reason"]) == (409, "discharge_used")


async def test_concurrent_strips_with_one_discharge_make_one_service_token(authority):
    pt = await authority.mint(strip_once=True)
    dt = authority.discharger.discharge(pt, discharge_id=did())
    answers = await asyncio.gather(*(strip(authority, pt, dt) for _ in range(8)))
    assert sorted(s for s, _ in answers) == [201] + [409] * 7


async def test_a_token_for_a_principal_opens_only_with_its_discharge(authority):
    pt = await authority.mint(["apps web"], **{"for": "ci:deploy"})
    tokens_row = await authority.service.store.load_token(tokens.parse(pt).token_id)
    assert tokens_row[0].principal == "ci:deploy" and tokens_row[0].strip_once is True  # the default with for
    for who in ("alice", "ci:other"):
        status, body = await strip(authority, pt, authority.discharger.discharge(pt, user=who, discharge_id=did()))
        assert status == 403 and "ci:deploy" in body["message"], who
        assert not await authority.allowed([pt, authority.discharger.discharge(pt, user=who)], app="web")
    dt = authority.discharger.discharge(pt, user="ci:deploy", discharge_id=did())
    assert await authority.allowed([pt, dt], app="web")
    status, body = await strip(authority, pt, dt)
    assert status == 201 and body["user"] == "ci:deploy"
    row = await authority.service.store.load_token(body["id"])
    assert row[0].created_by == "ci:deploy"


async def test_mint_refuses_a_malformed_principal_and_discharger_caveats(authority):
    await authority.create_org()
    for bad in ({"for": "deploy"}, {"for": "ci:Deploy"}, {"for": 5}, {"strip_once": "yes"},
                {"caveats": ["discharge-id " + "ab" * 16]}):
        status, body = await authority.post("/v1/tokens", {"org": "acme", **bad}, authority.admin)
        assert status == 400, (bad, body)
    status, body = await authority.post("/v1/tokens", {"org": "acme", "for": "ci:deploy", "strip_once": False},
                                        authority.admin)
    assert status == 201 and body["for"] == "ci:deploy" and body["strip_once"] is False


# --- RFC 8693 --------------------------------------------------------------------------------

async def exchange(env, **form):
    resp = await env.client.post("/v1/oauth/token", data=form)
    return resp.status, await resp.json(), resp


def exchange_form(pt, dt, **extra):
    return {"grant_type": EXCHANGE, "subject_token": pt, "subject_token_type": PERMISSION, "actor_token": dt,
            "actor_token_type": DISCHARGE, **extra}


async def test_token_exchange_is_a_strip(authority):
    pt = await authority.mint(["apps web"])
    for bind in (True, False):  # the authority binds an unbound discharge
        dt = authority.discharger.discharge(pt, bind=bind)
        status, body, resp = await exchange(authority, **exchange_form(pt, dt, name="deploy", expires_in="3600"))
        assert status == 200, body
        assert body["issued_token_type"] == SERVICE and body["token_type"] == "Bearer" and body["expires_in"] == 3600
        assert body["access_token"].startswith(tokens.SERVICE)
        assert resp.headers["Cache-Control"] == "no-store"
        assert await authority.allowed([body["access_token"]], app="web")


async def test_token_exchange_of_a_dpop_bound_token_says_dpop(authority):
    jkt = "A" * 43
    pt = await authority.mint([f"cnf-jkt {jkt}"])
    status, body, _ = await exchange(authority, **exchange_form(pt, authority.discharger.discharge(pt)))
    assert status == 200 and body["token_type"] == "DPoP" and "expires_in" not in body


async def test_token_exchange_errors_follow_rfc_6749(authority):
    pt = await authority.mint(strip_once=True)
    dt = authority.discharger.discharge(pt, discharge_id=did())
    other = await authority.mint()
    cases = [
        ({"grant_type": "client_credentials"}, "unsupported_grant_type"),
        ({}, "invalid_request"),
        (exchange_form(pt, dt, subject_token_type=SERVICE), "unsupported_token_type"),
        (exchange_form(pt, dt, actor_token_type="urn:ietf:params:oauth:token-type:jwt"), "unsupported_token_type"),
        (exchange_form(pt, dt, requested_token_type="urn:ietf:params:oauth:token-type:access_token"), "invalid_request"),
        (exchange_form(pt, dt, audience="https://x"), "invalid_target"),
        (exchange_form(pt, dt, scope="read"), "invalid_target"),
        (exchange_form(pt, dt, resource="https://x"), "invalid_target"),
        (exchange_form(pt, dt, expires_in="soon"), "invalid_request"),
        (exchange_form(pt, dt, expires_in="\u0661\u0662"), "invalid_request"),  # Arabic-Indic digits
        (exchange_form(dt, pt), "invalid_grant"),  # each token in the other's field
        (exchange_form(pt, ""), "invalid_request"),
        (exchange_form(pt, "garbage"), "invalid_grant"),
        (exchange_form(other, dt), "invalid_grant"),  # a discharge for another token
        (exchange_form(pt, dt[:-6] + "AAAAAA"), "invalid_grant"),  # tampered
    ]
    for form, error in cases:
        status, body, _ = await exchange(authority, **form)
        assert (status, body.get("error")) == (400, error), (form.keys(), body)
        assert body["error_description"]
    assert (await exchange(authority, **exchange_form(pt, dt)))[0] == 200
    status, body, _ = await exchange(authority, **exchange_form(pt, dt))
    assert (status, body["error"], body["reason"]) == (400, "invalid_grant", "discharge_used")
    resp = await authority.client.post("/v1/oauth/token", json=exchange_form(pt, dt))
    assert resp.status == 400 and (await resp.json())["error"] == "invalid_request"  # a form, not JSON
    resp = await authority.client.post("/v1/oauth/token", data=exchange_form(pt, dt, name="x" * 70_000))
    body = await resp.json()
    assert resp.status == 413 and body["error"] == "invalid_request" and body["error_description"]


async def test_metadata_names_the_token_endpoint(authority):
    resp = await authority.client.get("/.well-known/oauth-authorization-server")
    body = await resp.json()
    base = authority.config.public_url.rstrip("/")
    assert body["issuer"] == authority.config.public_url
    assert body["token_endpoint"] == f"{base}/v1/oauth/token"
    assert body["grant_types_supported"] == [EXCHANGE] and body["response_types_supported"] == []
    assert body["token_endpoint_auth_methods_supported"] == ["none"]


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
async def test_two_replicas_share_the_used_discharges(authority, aiohttp_client):
    from authority.app import create_app
    other = await aiohttp_client(create_app(authority.config))
    pt = await authority.mint(strip_once=True)
    dt = authority.discharger.discharge(pt, discharge_id=did())
    body = {"tokens": [pt, dt]}
    answers = await asyncio.gather(*(c.post("/v1/service-tokens", json=body)
                                     for c in (authority.client, other, authority.client, other)))
    assert sorted(r.status for r in answers) == [201, 409, 409, 409]
