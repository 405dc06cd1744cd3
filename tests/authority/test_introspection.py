"""RFC 7662 introspection at the authority (SPEC §17): who may ask, what an active answer says,
and that anything else is exactly {"active": false}."""

from __future__ import annotations

import time

import nacl.utils
import pytest

from clients import offline, tokens
from tests.support import service_token

INACTIVE = {"active": False}


@pytest.fixture
async def reader(authority):
    """An introspect-only credential for org acme, as `sable admin create --introspect-only --org acme` makes."""
    credential = tokens.encode(tokens.ADMIN, nacl.utils.random(32))
    await authority.service.store.add_introspector(tokens.secret_digest(credential), ["acme"], int(time.time()))
    return {"Authorization": f"Bearer {credential}"}


async def introspect(authority, headers, **form):
    resp = await authority.client.post("/v1/introspect", data=form, headers=headers)
    return resp.status, await resp.json(), resp


async def test_an_active_service_token(authority):
    before = int(time.time())
    token = await service_token(authority)  # apps orders, hosts worker-7
    status, body, resp = await introspect(authority, authority.admin, token=token)
    assert status == 200 and resp.headers["Cache-Control"] == "no-store"
    assert body["active"] is True and body["token_type"] == "Bearer" and body["sable_kind"] == "service"
    assert body["org"] == "acme" and body["sub"] == "alice" and len(body["jti"]) == 32
    assert before - 1 <= body["iat"] <= time.time() + 1 and "exp" not in body
    assert "apps orders" in body["sable_caveats"] and "hosts worker-7" in body["sable_caveats"]


async def test_a_permission_token_is_active_only_with_its_discharge(authority):
    pt = await authority.mint(["apps orders", "not-before 2020-01-01T00:00:00Z"], expires_in=3600)
    assert (await introspect(authority, authority.admin, token=pt))[1] == INACTIVE
    dt = authority.discharger.discharge(pt)
    status, body, _ = await introspect(authority, authority.admin, token=f"{pt},{dt}")
    assert body["active"] is True and body["sable_kind"] == "permission" and body["sub"] == "alice"
    # exp: the earliest expires of the token and its discharge (the discharge's, in 300 s)
    assert time.time() < body["exp"] <= time.time() + 301
    assert body["nbf"] == 1577836800


async def test_with_access_fields_active_means_allowed(authority):
    token = await service_token(authority)
    ok = {"org": "acme", "action": "r", "app": "orders", "host": "worker-7"}
    assert (await introspect(authority, authority.admin, token=token, **ok))[1]["active"] is True
    for change in ({"app": "admin"}, {"host": "worker-8"}, {"org": "globex"}):
        assert (await introspect(authority, authority.admin, token=token, **{**ok, **change}))[1] == INACTIVE
    status, body, _ = await introspect(authority, authority.admin, token=token, app="orders")  # no org, action
    assert status == 400 and body["error"] == "invalid_request" and body["error_description"]


async def test_bound_tokens_say_dpop_and_their_key(authority, dpop_keys):
    host, _ = dpop_keys
    bound = offline.attenuate(await service_token(authority), [f"cnf-jkt {host.jkt}"])
    body = (await introspect(authority, authority.admin, token=bound))[1]
    assert body["token_type"] == "DPoP" and body["cnf"] == {"jkt": host.jkt}
    # a request-dependent caveat is returned, never judged, without access fields
    assert f"cnf-jkt {host.jkt}" in body["sable_caveats"]


async def test_anything_not_valid_is_exactly_inactive(authority):
    token = await service_token(authority)
    expired = offline.attenuate(token, ["expires 2020-01-01T00:00:00Z"])
    pt = await authority.mint()
    user_token = (await authority.post("/v1/user-tokens", {"org": "acme"}))[1]["token"]
    tampered = token[:-6] + ("AAAAAA" if not token.endswith("AAAAAA") else "BBBBBB")
    for presented in (expired, pt, user_token, tampered, "garbage", "sable_st_", token + "," + token,
                      authority.discharger.discharge(pt)):
        status, body, _ = await introspect(authority, authority.admin, token=presented)
        assert (status, body) == (200, INACTIVE), presented[:40]
    await authority.post("/v1/revoke", {"tokens": [token]})
    assert (await introspect(authority, authority.admin, token=token))[1] == INACTIVE
    status, body, _ = await introspect(authority, authority.admin)
    assert status == 400 and body["error"] == "invalid_request"


async def test_who_may_introspect(authority, reader):
    token = await service_token(authority)
    status, body, _ = await introspect(authority, {}, token=token)
    assert status == 401 and body["error"] == "invalid_client" and body["error_description"]
    status, _, _ = await introspect(authority, {"Authorization": f"Bearer {token}"}, token=token)
    assert status == 401  # a token is not a credential
    forged = {"Authorization": f"Bearer {tokens.encode(tokens.ADMIN, nacl.utils.random(32))}"}
    assert (await introspect(authority, forged, token=token))[0] == 401
    assert (await introspect(authority, reader, token=token))[1]["active"] is True


async def test_an_introspect_only_credential_can_do_nothing_else(authority, reader):
    await authority.create_org("globex")
    other = await authority.mint(org="globex")
    theirs = f"{other},{authority.discharger.discharge(other)}"
    assert (await introspect(authority, authority.admin, token=theirs))[1]["active"] is True
    assert (await introspect(authority, reader, token=theirs))[1] == INACTIVE  # another org's: not seen
    for method, path, body in (("POST", "/v1/orgs", {"name": "x"}), ("GET", "/v1/orgs", None),
                               ("POST", "/v1/tokens", {"org": "acme"}), ("GET", "/v1/tokens?org=acme", None),
                               ("POST", "/v1/tokens/revoke", {"user": "alice"})):
        resp = await authority.client.request(method, path, json=body, headers=reader)
        assert resp.status == 403, (method, path)
        assert "introspect" in (await resp.json())["message"]


async def test_metadata_names_introspection(authority):
    body = await (await authority.client.get("/.well-known/oauth-authorization-server")).json()
    base = authority.config.public_url.rstrip("/")
    assert body["introspection_endpoint"] == f"{base}/v1/introspect"
    assert body["introspection_endpoint_auth_methods_supported"] == ["bearer"]
