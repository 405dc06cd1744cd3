"""Attacker goal: confuse or crash the parser with malformed input."""

import pytest

from clients import offline, tokens
from tests.support.attacks import append_raw, expect, raw_of, with_payload


@pytest.mark.parametrize("bad", [
    "",
    "   ",
    "sable_pt_",
    "sable_pt_AAAA",
    "SABLE_PT_" + "A" * 60,
    "sable_pt_" + "A" * 60 + "=" + "000000",
    "sable_pt_\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9",
    "sable_pt_" + "\x00" * 20,
])
async def test_garbage_token_strings(authority, bad):
    # A control character anywhere in a text field is refused before parsing (SPEC §4).
    control = any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in bad)
    expect(await authority.verify([bad]), 400, "bad_request" if control else "malformed_token")


async def test_every_truncation_of_a_token(authority):
    pt = await authority.mint()
    raw = raw_of(pt)
    for n in range(0, len(raw), 7):
        expect(await authority.verify([with_payload(tokens.PERMISSION, raw[:n])]), 400, "malformed_token")


async def test_trailing_bytes(authority):
    pt = await authority.mint()
    expect(await authority.verify([with_payload(tokens.PERMISSION, raw_of(pt) + b"\x00\x00")]), 400, "malformed_token")


async def test_token_of_16_kib_plus_one(authority):
    big = "sable_pt_" + "A" * (tokens.MAX_TOKEN_CHARS - len("sable_pt_") + 1)
    assert len(big) == tokens.MAX_TOKEN_CHARS + 1
    body = expect(await authority.verify([big]), 400, "malformed_token")
    assert "longer" in body["message"]


async def test_65_caveats(authority):
    pt = await authority.mint()
    tok = tokens.parse(pt)
    many = offline.attenuate(tok, [f"hosts h{i}" for i in range(tokens.MAX_CAVEATS - len(tok.caveats))])
    assert len(tokens.parse(many).caveats) == 64
    expect(await authority.verify([append_raw(many, b"hosts x")]), 400, "malformed_token")


async def test_body_of_64_kib_plus_one(authority):
    resp = await authority.client.post("/v1/verify", data=b" " * (64 * 1024 + 1))
    assert resp.status == 413 and (await resp.json())["error"] == "bad_request"


@pytest.mark.parametrize("body", [
    {"tokens": None, "access": {"org": "acme", "action": "r"}},
    {"tokens": {"a": 1}, "access": {"org": "acme", "action": "r"}},
    {"tokens": [["nested"]], "access": {"org": "acme", "action": "r"}},
    {"tokens": [True], "access": {"org": "acme", "action": "r"}},
    {"tokens": ["x"], "access": ["org", "acme"]},
    {"tokens": ["x"], "access": {"org": 1, "action": "r"}},
    {"tokens": ["x"], "access": {"org": "acme", "action": ["r"]}},
    {"tokens": ["x"], "access": {"org": "acme", "action": "r", "host": 7}},
])
async def test_json_of_the_wrong_types(authority, body):
    pt = await authority.mint()
    body = {**body, "tokens": [pt] if body["tokens"] == ["x"] else body["tokens"]}
    expect(await authority.post("/v1/verify", body), 400, "bad_request")


@pytest.mark.parametrize("path, body", [
    ("/v1/tokens", {"org": ["acme"]}),
    ("/v1/tokens", {"org": "acme", "expires_in": 1.5}),
    ("/v1/tokens", {"org": "acme", "expires_in": True}),
    ("/v1/tokens", {"org": "acme", "caveats": [1]}),
    ("/v1/orgs", {"name": None}),
    ("/v1/service-tokens", {"tokens": "x"}),
    ("/v1/revoke", {"tokens": 5}),
])
async def test_wrong_types_on_other_endpoints(authority, path, body):
    await authority.create_org()
    expect(await authority.post(path, body, authority.admin), 400, "bad_request")


async def test_json_that_is_not_an_object(authority):
    for raw in (b"[]", b"null", b'"x"', b"1e999999", b"{\"a\":", b"\xff\xfe"):
        resp = await authority.client.post("/v1/verify", data=raw)
        assert resp.status == 400 and (await resp.json())["error"] == "bad_request", raw
