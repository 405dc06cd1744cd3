"""The aiohttp middleware in front of the example workload, with the real authority."""

import pytest

from clients.verifier import Verifier
from examples.workload.app import create_app
from tests.support import authority_url, service_token
from tests.support.attacks import last_char_changed


@pytest.fixture
async def workload(aiohttp_client, authority, monkeypatch):
    monkeypatch.setenv("SABLE_HOST", "worker-7")
    verifier = Verifier(authority_url(authority))
    await verifier.start()
    client = await aiohttp_client(create_app(verifier))
    yield client
    await verifier.close()


async def test_missing_credentials_get_401(workload):
    resp = await workload.get("/orders")
    assert resp.status == 401 and (await resp.json())["error"] == "unauthorized"
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    resp = await workload.get("/orders", headers={"Authorization": "Basic abc"})
    assert resp.status == 401


async def test_malformed_credentials_get_401(workload, authority):
    ht = await service_token(authority)
    for value in ("Bearer garbage", "Bearer " + last_char_changed(ht), "Bearer ,", "Bearer " + ",".join([ht] * 33)):
        resp = await workload.get("/orders", headers={"Authorization": value})
        assert resp.status == 401, value
        assert ht[9:40] not in await resp.text()


async def test_wrong_host_gets_403_with_the_reason(workload, authority, monkeypatch):
    ht = await service_token(authority)
    monkeypatch.setenv("SABLE_HOST", "worker-8")
    resp = await workload.get("/orders", headers={"Authorization": f"Bearer {ht}"})
    assert resp.status == 403
    body = await resp.json()
    assert body["error"] == "denied" and "hosts worker-7" in body["message"]


async def test_right_host_gets_200_and_the_decision(workload, authority):
    ht = await service_token(authority)
    resp = await workload.get("/orders", headers={"Authorization": f"Bearer {ht}"})
    assert resp.status == 200
    body = await resp.json()
    assert body["user"] == "alice" and len(body["token"]) == 32
    # Writing needs the w action, which the token allows (it carries no actions caveat).
    resp = await workload.post("/orders", headers={"Authorization": f"Bearer {ht}"})
    assert resp.status == 200


async def test_health_is_exempt(workload):
    assert (await workload.get("/healthz")).status == 200


async def test_permission_token_with_discharge_in_one_header(workload, authority):
    pt = await authority.mint(["apps orders"])
    dt = authority.discharger.discharge(pt)
    resp = await workload.get("/orders", headers={"Authorization": f"Bearer {pt} , {dt}"})
    assert resp.status == 200


async def test_an_unreachable_authority_is_503_not_a_denial(aiohttp_client, monkeypatch):
    from authority.minting import build
    from authority.root_keys import RootKeys
    from clients import tokens
    from tests.support import free_port

    monkeypatch.setenv("SABLE_HOST", "worker-7")
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens here
    verifier = Verifier(url)
    client = await aiohttp_client(create_app(verifier))
    tok, _ = build(RootKeys(bytes(32)), tokens.SERVICE, url, "ab" * 16, ["org acme"])
    resp = await client.get("/orders", headers={"Authorization": f"Bearer {tok.encode()}"})
    assert resp.status == 503 and resp.headers["Retry-After"] == "1"
    body = await resp.text()
    assert "127.0.0.1" not in body and "Error" not in body  # no internal URL or exception name
    await verifier.close()
