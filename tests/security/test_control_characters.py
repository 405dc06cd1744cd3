"""Control characters (U+0000-U+001F, U+007F) in text fields and query parameters: 400 naming
the field, on both backends, before any lookup (SPEC §4). PostgreSQL refuses NUL in text,
which answered 500 before the edge checked."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from tests.discharger.test_device import authorize, csrf_of, sign_in

BAD = ["\x00", "\x01", "\t", "\n", "\r", "\x1b", "\x1f", "\x7f"]


@pytest.mark.parametrize("ch", BAD)
async def test_authority_json_fields_and_queries(authority, ch):
    env = authority
    await env.create_org()
    for path, body, field in (("/v1/tokens", {"org": "acme", "name": f"ci{ch}x"}, "name"),
                              ("/v1/tokens", {"org": "acme", "caveats": [f"apps a{ch}"]}, "caveats[0]"),
                              ("/v1/orgs", {"name": f"beta{ch}"}, "name"),
                              ("/v1/tokens/revoke", {"user": f"al{ch}ice"}, "user"),
                              ("/v1/user-tokens", {"org": f"ac{ch}me"}, "org"),
                              ("/v1/verify", {"tokens": ["x"], "access": {"org": f"a{ch}", "action": "r"}},
                               "access.org")):
        status, got = await env.post(path, body, env.admin)
        assert status == 400 and got["error"] == "bad_request", (path, got)
        assert field in got["message"] and "control character" in got["message"], (path, got)
    resp = await env.client.get(f"/v1/tokens?org=ac{quote(ch)}me", headers=env.admin)
    got = await resp.json()
    assert resp.status == 400 and "org" in got["message"] and "control character" in got["message"]
    resp = await env.client.get(f"/v1/revocations?after=1{quote(ch)}")
    assert resp.status == 400 and "after" in (await resp.json())["message"]
    resp = await env.client.post(f"/v1/tokens/{'a' * 31}{quote(ch)}/revoke", headers=env.admin)
    assert resp.status == 400 and "{id}" in (await resp.json())["message"]


@pytest.mark.parametrize("ch", ["\x00", "\n", "\x7f"])
async def test_discharger_json_form_and_pages(real_discharger, ch):
    env = real_discharger
    await env.user()
    for path, body, field in (("/v1/users", {"username": f"bob{ch}", "password": "long enough"}, "username"),
                              ("/v1/sessions", {"username": f"alice{ch}", "password": "x"}, "username"),
                              ("/v1/sessions", {"username": "alice", "password": f"correct{ch}horse"}, "password"),
                              ("/v1/device/authorize", {"client_name": f"cli{ch}"}, "client_name")):
        status, got, _ = await env.post(path, body, env.admin)
        assert status == 400 and field in got["message"] and "control character" in got["message"], (path, got)
    resp = await env.client.post(f"/v1/users/al{quote(ch)}ice/disable", headers=env.admin)
    assert resp.status == 400 and "{username}" in (await resp.json())["message"]
    resp = await env.client.post("/v1/device/token", data={"device_code": f"abc{ch}"})
    assert resp.status == 400 and "device_code" in (await resp.json())["message"]
    # Pages answer with a page, not JSON: a typed code, a link's code, a login form.
    got = await authorize(env)
    await sign_in(env)
    resp = await env.client.get(f"/device?user_code={quote(got['user_code'] + ch)}")
    assert resp.status == 400 and "user_code" in await resp.text() and resp.content_type == "text/html"
    page = await (await env.client.get("/device")).text()
    resp = await env.client.post("/device", data={"csrf": csrf_of(page), "user_code": got["user_code"] + ch,
                                                  "action": "approve"})
    assert resp.status == 400 and "user_code" in await resp.text()
    status, body, _ = await env.post("/v1/device/token", {"device_code": got["device_code"]})
    assert body["error"] == "authorization_pending"  # nothing was approved


async def test_a_deeply_nested_body_is_checked_without_recursion(authority):
    """orjson accepts nesting up to 1,024 deep; the check walks it with a loop (a recursive
    walk ran out of stack and answered 500)."""
    for inner in ('"x\\u0000"', '"x"'):
        body = '{"tokens": ["x"], "access": ' + "[" * 1000 + inner + "]" * 1000 + "}"
        resp = await authority.client.post("/v1/verify", data=body, headers={"Content-Type": "application/json"})
        assert resp.status == 400, await resp.text()
