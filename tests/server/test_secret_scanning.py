"""The secret-scanning kit (SPEC §18) on its own: reports as GitHub shapes them, and the keys
document read defensively. The endpoints that use it: tests/authority/test_leaks.py."""

from __future__ import annotations

import hashlib

import pytest

from clients.errors import BadRequest
from server.secret_scanning import GitHubKeys, Reported, TooManyItems, answer, parse_report


def test_a_report_parses_into_items_and_the_answer_names_them_by_hash():
    items = parse_report(b'[{"token": "sable_st_x", "type": "sable", "url": "https://u", "source": "content"},'
                         b' {"token": "y"}]')
    assert items == [Reported("sable_st_x", "sable", "https://u", "content"), Reported("y", "", "", "")]
    out = answer(items, [True, False])
    assert out[0] == {"token_hash": hashlib.sha256(b"sable_st_x").hexdigest(),
                      "token_type": "sable", "label": "true_positive"}
    assert out[1]["label"] == "false_positive" and "y" not in out[1].values()
    assert len(items[0].token_hash) == 64


@pytest.mark.parametrize("body", [b"", b"{}", b"[1]", b'[{"token": ""}]', b'[{"token": "x", "url": 7}]',
                                  b'[{"token": "x", "source": "' + b"s" * 3000 + b'"}]'])
def test_what_is_not_a_report_is_refused(body):
    with pytest.raises(BadRequest):
        parse_report(body)


def test_more_than_a_thousand_items_is_too_many():
    with pytest.raises(TooManyItems):
        parse_report(b"[" + b",".join([b'{"token": "x"}'] * 1001) + b"]")


async def test_an_unusable_keys_document_is_unavailable_not_a_crash(aiohttp_server):
    from aiohttp import web

    from clients.errors import Unauthorized, Unavailable

    documents = iter([b"not json", b'{"public_keys": [{"key": 7}, {"key_identifier": "k", "key": "nope"}]}'])

    async def keys(request):
        return web.Response(body=next(documents), content_type="application/json")
    app = web.Application()
    app.router.add_get("/keys", keys)
    server = await aiohttp_server(app)
    gh = GitHubKeys(str(server.make_url("/keys")))
    with pytest.raises(Unavailable):
        await gh.check(b"[]", "k", "c2ln")
    with pytest.raises(Unavailable):  # a failed fetch is not retried at once
        await gh.check(b"[]", "k", "c2ln")
    gh.failed_at = None  # let it fetch again now
    with pytest.raises(Unauthorized):  # fetched, but no usable key is named k
        await gh.check(b"[]", "k", "c2ln")


async def keys_server(aiohttp_server, handler):
    from aiohttp import web
    app = web.Application()
    app.router.add_get("/keys", handler)
    app.router.add_get("/elsewhere", handler)
    return await aiohttp_server(app)


def signed(body: bytes, key) -> str:
    import base64

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    return base64.b64encode(key.sign(body, ec.ECDSA(hashes.SHA256()))).decode()


async def test_only_p256_keys_from_the_document_itself_verify(aiohttp_server):
    from aiohttp import web
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from clients.errors import Unauthorized, Unavailable

    p256, p384 = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP384R1())

    def pem(k):
        return k.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    mode = {"now": "ok"}

    async def keys(request):
        if mode["now"] == "redirect" and request.path == "/keys":
            raise web.HTTPFound("/elsewhere")
        if mode["now"] == "huge":
            return web.Response(body=b" " * (1 << 20) + b"{}", content_type="application/json")
        if mode["now"] == "500":
            return web.Response(status=500)
        return web.json_response({"public_keys": [
            {"key_identifier": "good", "key": pem(p256), "is_current": True},
            {"key_identifier": "big", "key": pem(p384), "is_current": False},
            {"key_identifier": 7, "key": pem(p256)}]})
    server = await keys_server(aiohttp_server, keys)
    body = b'[{"token": "x"}]'
    gh = GitHubKeys(str(server.make_url("/keys")))
    await gh.check(body, "good", signed(body, p256))
    assert set(gh.keys) == {"good"}  # the P-384 key and the one with a numeric id are left out
    good = signed(body, p256)
    for kid, sig in (("big", signed(body, p384)), ("good", good[:-4] + "!" + good[-4:]), ("good", " " + good),
                     ("good", signed(body + b" ", p256)), ("good", "x" * 1025)):
        with pytest.raises(Unauthorized):
            await gh.check(body, kid, sig)
    for broken in ("redirect", "huge", "500"):  # the keys cannot be read: 503, GitHub retries
        mode["now"] = broken
        fresh = GitHubKeys(str(server.make_url("/keys")))
        with pytest.raises(Unavailable, match="GitHub's secret-scanning keys"):
            await fresh.check(body, "good", signed(body, p256))


async def test_an_unknown_key_id_refetches_at_most_once_a_minute(aiohttp_server, monkeypatch):
    from aiohttp import web
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    import server.secret_scanning as kit
    from clients.errors import Unauthorized

    key = ec.generate_private_key(ec.SECP256R1())
    fetches = []

    async def keys(request):
        fetches.append(1)
        return web.json_response({"public_keys": [{"key_identifier": f"k{len(fetches)}", "is_current": True,
                                                   "key": key.public_key().public_bytes(
                                                       serialization.Encoding.PEM,
                                                       serialization.PublicFormat.SubjectPublicKeyInfo).decode()}]})
    server = await keys_server(aiohttp_server, keys)
    clock = [1000.0]
    monkeypatch.setattr(kit.time, "monotonic", lambda: clock[0])
    gh = GitHubKeys(str(server.make_url("/keys")))
    body = b"[]"
    await gh.check(body, "k1", signed(body, key))
    with pytest.raises(Unauthorized, match="a key GitHub does not publish"):
        await gh.check(body, "k2", signed(body, key))  # within the minute: not fetched again
    clock[0] += 59.9
    with pytest.raises(Unauthorized):
        await gh.check(body, "k2", signed(body, key))
    assert len(fetches) == 1
    clock[0] += 0.1  # a minute since the fetch: fetched again, and k2 is published now
    await gh.check(body, "k2", signed(body, key))
    assert len(fetches) == 2


def test_a_thousand_items_are_allowed_and_messages_say_what_is_wrong():
    assert len(parse_report(b"[" + b",".join([b'{"token": "x"}'] * 1000) + b"]")) == 1000
    with pytest.raises(BadRequest, match="a report is a JSON array"):
        parse_report(b"{}")
    with pytest.raises(BadRequest, match="each item needs a token string"):
        parse_report(b'[{"token": ""}]')
    with pytest.raises(BadRequest, match="at most 2,048 characters"):
        parse_report(b'[{"token": "x", "url": "' + b"u" * 2049 + b'"}]')
    parse_report(b'[{"token": "x", "url": "' + b"u" * 2048 + b'"}]')
    with pytest.raises(TooManyItems, match="at most 1000 items"):
        parse_report(b"[" + b",".join([b'{"token": "x"}'] * 1001) + b"]")
