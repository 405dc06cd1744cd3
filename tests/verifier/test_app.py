"""The verifier process's API (SPEC §17) in front of a real authority on loopback: what a
gateway's forward-auth request must look like to be believed, how a request becomes an access,
and the answers gateways turn into responses. tests/integration/test_gateways.py puts real
nginx and Caddy in front of it."""

from __future__ import annotations

import asyncio
import time

import pytest

from clients import offline
from server.launcher import FRONT_DOOR
from tests.support import service_token
from tests.support.gateways import ServedApp
from verifier.app import create_app
from verifier.config import VerifierConfig
from verifier.routes import parse_route

pytestmark = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
PUBLIC = "https://api.example.test"
ROUTES = (
    {"host": "api.example.test", "path": "/admin*", "org": "acme", "app": "admin"},
    {"host": "api.example.test", "path": "/orders*", "org": "acme", "app": "orders", "public_url": PUBLIC,
     "actions": {"GET": "r", "POST": "w"}},
)
NGINX = {"X-Original-Method": "GET", "X-Original-Host": "api.example.test", "X-Original-URI": "/orders/7"}


def config(env, **changes) -> VerifierConfig:
    base = dict(authority=str(env.client.make_url("")).rstrip("/"), gateway="nginx", host="worker-7",
                routes=tuple(parse_route(r, n) for n, r in enumerate(ROUTES, 1)), stale_after=30.0)
    return VerifierConfig(**{**base, **changes})


@pytest.fixture(params=["front door", "routed"])
async def verifier(request, authority, aiohttp_client):
    """The app as `sable verifier serve` runs it (forward-auth ahead of the router), and
    routed as any aiohttp app: both answer alike."""
    app = create_app(config(authority))
    client = await aiohttp_client(ServedApp(app) if request.param == "front door" else app)
    deadline = time.monotonic() + 5
    while (await client.get("/readyz")).status != 200:  # the feed's first answer
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    return client


async def ask(client, token=None, scheme="Bearer", headers=None, **original):
    sent = {**NGINX, **{f"X-Original-{k.capitalize()}": v for k, v in original.items()}}
    if token is not None:
        sent["Authorization"] = f"{scheme} {token}"
    sent.update(headers or {})
    return await client.get("/v1/forward-auth", headers=sent)


async def test_an_allowed_request_names_the_token_user_and_org(authority, verifier):
    token = await service_token(authority)
    resp = await ask(verifier, token)
    assert resp.status == 200
    assert resp.headers["Sable-Org"] == "acme" and resp.headers["Sable-User"] == "alice"
    assert len(resp.headers["Sable-Token-Id"]) == 32 and resp.headers["Cache-Control"] == "no-store"
    # the second answer comes from the cache
    assert (await ask(verifier, token)).status == 200
    metrics = await (await verifier.get("/metrics")).text()
    assert 'sable_verifier_decisions_total{result="allowed"} 2.0' in metrics
    assert "sable_verifier_cache_hits_total 1.0" in metrics and "sable_verifier_cache_misses_total 1.0" in metrics


async def test_refusals_say_why(authority, verifier):
    token = await service_token(authority)  # apps orders, hosts worker-7
    resp = await ask(verifier)
    assert resp.status == 401 and resp.headers["WWW-Authenticate"].startswith("Bearer")
    resp = await ask(verifier, "sable_st_garbage")
    assert resp.status == 401
    resp = await ask(verifier, token, uri="/admin")
    assert resp.status == 403 and "apps" in resp.headers["Sable-Denied"]
    resp = await ask(verifier, token, uri="/nowhere")
    assert resp.status == 403 and resp.headers["Sable-Denied"] == "no route matches"
    resp = await ask(verifier, token, method="DELETE")  # the route maps only GET and POST
    assert resp.status == 403 and "no action for method DELETE" in resp.headers["Sable-Denied"]
    resp = await ask(verifier, token, host="other.example.test")
    assert resp.status == 403 and resp.headers["Sable-Denied"] == "no route matches"


@pytest.mark.parametrize("uri", ["/orders/../admin", "/orders/%2e%2e/admin", "//admin", "/orders/.%2E/admin",
                                 "/%61dmin"])
async def test_no_spelling_of_admin_reaches_the_orders_route(authority, verifier, uri):
    token = await service_token(authority)  # good for orders only
    resp = await ask(verifier, token, uri=uri)
    assert resp.status == 403 and "apps" in resp.headers["Sable-Denied"], resp.headers.get("Sable-Denied")


@pytest.mark.parametrize("uri", ["/orders/..%2fadmin", "/orders%2F..%2Fadmin", "/orders/%5c..", "/orders\\x",
                                 "/orders/%00"])
async def test_ambiguous_paths_are_refused(authority, verifier, uri):
    resp = await ask(verifier, await service_token(authority), uri=uri)
    assert resp.status == 403 and resp.headers["Sable-Denied"] == "ambiguous path"


async def test_only_a_trusted_gateway_with_its_own_headers_is_believed(authority, verifier, aiohttp_client):
    token = await service_token(authority)
    headers = {"Authorization": f"Bearer {token}"}
    # Caddy's family is ignored by an nginx verifier: nothing says which request this is
    caddy = {"X-Forwarded-Method": "GET", "X-Forwarded-Host": "api.example.test", "X-Forwarded-Uri": "/orders/7",
             "X-Forwarded-Proto": "https", **headers}
    resp = await verifier.get("/v1/forward-auth", headers=caddy)
    assert resp.status == 403 and resp.headers["Sable-Denied"] == "forward-auth needs a trusted gateway"
    # a repeated header of the family
    resp = await verifier.get("/v1/forward-auth", headers=[*NGINX.items(), ("X-Original-URI", "/admin"),
                                                            *headers.items()])
    assert resp.status == 403 and resp.headers["Sable-Denied"] == "forward-auth needs a trusted gateway"
    # a peer outside trusted_proxy
    far = await aiohttp_client(create_app(config(authority, trusted_proxies=("10.0.0.0/8",))))
    resp = await far.get("/v1/forward-auth", headers={**NGINX, **headers})
    assert resp.status == 403 and resp.headers["Sable-Denied"] == "forward-auth needs a trusted gateway"
    # no gateway configured: forward-auth is off
    off = await aiohttp_client(create_app(config(authority, gateway=None)))
    assert (await off.get("/v1/forward-auth", headers={**NGINX, **headers})).status == 403


async def test_two_authorization_headers_are_refused(authority, verifier):
    token = await service_token(authority)
    resp = await verifier.get("/v1/forward-auth", headers=[*NGINX.items(), ("Authorization", f"Bearer {token}"),
                                                            ("Authorization", "Bearer sable_st_other")])
    assert resp.status == 401


async def test_a_revoked_token_is_refused_within_a_second(authority, verifier):
    token = await service_token(authority)
    assert (await ask(verifier, token)).status == 200
    status, _ = await authority.post("/v1/revoke", {"tokens": [token]})
    assert status == 200
    deadline = time.monotonic() + 1.0
    while (await ask(verifier, token)).status == 200:
        assert time.monotonic() < deadline, "still allowed a second after the revocation"
        await asyncio.sleep(0.05)


async def test_dpop_proofs_name_the_routes_public_url(authority, verifier, dpop_keys):
    host, thief = dpop_keys
    bound = offline.attenuate(await service_token(authority), [f"cnf-jkt {host.jkt}"])
    url = PUBLIC + "/orders/7"
    ok = await ask(verifier, bound, "DPoP", {"DPoP": host.proof("GET", url, bound)})
    assert ok.status == 200
    for proof in (host.proof("GET", "https://elsewhere.test/orders/7", bound),  # another URL
                  host.proof("POST", url, bound),  # another method
                  thief.proof("GET", url, bound)):  # another key
        resp = await ask(verifier, bound, "DPoP", {"DPoP": proof})
        assert resp.status == 401 and resp.headers["WWW-Authenticate"].startswith("DPoP"), proof
    resp = await ask(verifier, bound, "DPoP", {"DPoP": ok.request_info.headers["DPoP"]})  # a replay
    assert resp.status == 401
    # a bound token on a route without public_url is denied (no proof can be checked)
    resp = await ask(verifier, bound, "DPoP", {"DPoP": host.proof("GET", PUBLIC + "/admin", bound)}, uri="/admin")
    assert resp.status in (401, 403)


async def test_check_answers_like_verify(authority, verifier):
    token = await service_token(authority)
    body = {"tokens": [token], "access": {"org": "acme", "action": "r", "app": "orders", "host": "worker-7"}}
    resp = await verifier.post("/v1/check", json=body)
    answer = await resp.json()
    status, direct = await authority.post("/v1/verify", body)
    assert resp.status == status == 200 and answer == direct
    body["access"]["app"] = "admin"
    resp = await verifier.post("/v1/check", json=body)
    assert resp.status == 403 and (await resp.json())["allowed"] is False
    for bad in ({"tokens": "x"}, {"tokens": [token]}, {"tokens": [token], "access": {"org": "acme"}}, []):
        assert (await verifier.post("/v1/check", json=bad)).status == 400, bad


async def test_fails_closed_when_the_authority_is_gone(authority, aiohttp_client):
    client = await aiohttp_client(create_app(config(authority, authority="http://127.0.0.1:9", stale_after=0.5)))
    token = await service_token(authority)
    resp = await ask(client, token)
    assert resp.status == 503 and resp.headers["Retry-After"]
    assert (await client.get("/readyz")).status == 503
    assert (await client.get("/healthz")).status == 200


async def test_forward_auth_is_its_own_path_only(authority, verifier):
    token = await service_token(authority)
    assert (await verifier.get("/v1/forward-auth?probe=1", headers={**NGINX, "Authorization": f"Bearer {token}"})
            ).status == 200
    for path in ("/v1/forward-authz", "/v1/forward-auth/orders"):  # the tail is envoy's alone
        assert (await verifier.get(path, headers={**NGINX, "Authorization": f"Bearer {token}"})).status == 404
    assert (await verifier.get("/healthz")).status == 200


async def test_the_request_and_token_memos_are_bounded_and_change_no_answer(authority, verifier, monkeypatch):
    from verifier.app import ForwardAuth

    monkeypatch.setattr(ForwardAuth, "MEMO", 2)
    token = await service_token(authority)
    for _ in range(2):  # each twice: remembered answers are the answers
        assert (await ask(verifier, token)).status == 200
        assert (await ask(verifier, token, uri="/admin")).status == 403
        assert (await ask(verifier, token, uri="/nowhere")).headers["Sable-Denied"] == "no route matches"
        assert (await ask(verifier, token, method="DELETE")).headers["Sable-Denied"] == "no action for method DELETE"
        assert (await ask(verifier, "sable_st_junk")).status == 401
        assert (await ask(verifier, token, scheme="DPoP")).status == 401  # same tokens, but a proof is owed
        assert (await ask(verifier, token, scheme="Basic")).status == 401
    forward = verifier.server.app[FRONT_DOOR]
    assert len(forward.plans) <= 2 and len(forward.presentations) <= 2
    # long values are answered but not remembered
    monkeypatch.setattr(ForwardAuth, "MEMO_CHARS", 100)
    forward.plans.clear()
    forward.presentations.clear()
    assert (await ask(verifier, token, uri="/orders/" + "x" * 100)).status == 200
    assert (await ask(verifier, token)).status == 200
    assert list(forward.plans) == [("GET", "api.example.test", "/orders/7")] and not forward.presentations


async def test_caddys_family_includes_the_proto_exactly_once(authority, aiohttp_client):
    client = await aiohttp_client(ServedApp(create_app(config(authority, gateway="caddy"))))
    token = await service_token(authority)
    family = [("X-Forwarded-Method", "GET"), ("X-Forwarded-Host", "api.example.test"),
              ("X-Forwarded-Uri", "/orders/7"), ("Authorization", f"Bearer {token}")]
    deadline = time.monotonic() + 5
    while (await client.get("/readyz")).status != 200:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    for proto in ([("X-Forwarded-Proto", "https")], [], [("X-Forwarded-Proto", "https")] * 2):
        resp = await client.get("/v1/forward-auth", headers=[*family, *proto])
        assert resp.status == (200 if len(proto) == 1 else 403), proto
