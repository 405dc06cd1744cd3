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
