"""Unit tests for `server.http`: errors as JSON with the right status, request ids, the JSON
body reader and /healthz, on a small in-process aiohttp app."""

from __future__ import annotations

import json
import re

import pytest
from aiohttp import web

from clients import errors
from server.http import MAX_BODY, new_app, read_json

SECRET_DETAIL = "do-not-leak-this-detail"

RAISES = {
    "bad_request": errors.BadRequest("bad field"),
    "unauthorized": errors.Unauthorized("who are you"),
    "denied": errors.Forbidden("no access"),
    "not_found": errors.NotFound("no such thing"),
    "conflict": errors.Conflict("exists"),
    "rate_limited": errors.RateLimited("slow down", retry_after=7),
    "unavailable": errors.Unavailable("database down"),
    "malformed_token": errors.MalformedToken("bad token"),
}


def raiser(exc: Exception):
    async def handler(request: web.Request) -> web.Response:
        raise exc
    return handler


async def echo(request: web.Request) -> web.Response:
    return web.json_response(await read_json(request))


async def crash(request: web.Request) -> web.Response:
    raise RuntimeError(SECRET_DETAIL)


def build_app() -> web.Application:
    app = new_app()
    for name, exc in RAISES.items():
        app.router.add_get(f"/raise/{name}", raiser(exc))
    app.router.add_get("/crash", crash)
    app.router.add_post("/echo", echo)
    return app


@pytest.fixture
async def client(aiohttp_client):
    return await aiohttp_client(build_app())


async def post_raw(client, data, **kwargs):
    resp = await client.post("/echo", data=data, headers={"Content-Type": "application/json"}, **kwargs)
    return resp.status, await resp.json()


# --- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "status", "retry_after"), [
    ("bad_request", 400, None),
    ("unauthorized", 401, None),
    ("denied", 403, None),
    ("not_found", 404, None),
    ("conflict", 409, None),
    ("rate_limited", 429, "7"),
    ("unavailable", 503, "1"),
    ("malformed_token", 400, None),
])
async def test_sable_errors_map_to_status_and_code(client, name, status, retry_after):
    resp = await client.get(f"/raise/{name}")
    assert resp.status == status
    assert resp.headers.get("Retry-After") == retry_after
    assert await resp.json() == {"error": name, "message": RAISES[name].message}


async def test_unexpected_exception_is_a_bare_500(client):
    resp = await client.get("/crash")
    text = await resp.text()
    assert resp.status == 500
    assert json.loads(text) == {"error": "internal", "message": "internal error"}
    assert "Traceback" not in text and SECRET_DETAIL not in text and "RuntimeError" not in text


@pytest.mark.parametrize(("method", "path", "status", "code"), [
    ("GET", "/no/such/route", 404, "not_found"),
    ("GET", "/echo", 405, "bad_request"),
])
async def test_aiohttp_errors_are_json_too(client, method, path, status, code):
    resp = await client.request(method, path)
    assert resp.status == status
    assert (await resp.json())["error"] == code


# --- request ids -----------------------------------------------------------------------------


@pytest.mark.parametrize("rid", ["abc-123", "A.b_C-9", "x" * 64])
async def test_valid_request_id_is_echoed(client, rid):
    for path in ("/healthz", "/raise/denied", "/crash"):
        resp = await client.get(path, headers={"X-Request-Id": rid})
        assert resp.headers["X-Request-Id"] == rid


@pytest.mark.parametrize("rid", [None, "", "has space", "x" * 65, "semi;colon", "üñï"])
async def test_invalid_request_id_is_replaced(client, rid):
    headers = {} if rid is None else {"X-Request-Id": rid}
    resp = await client.get("/healthz", headers=headers)
    got = resp.headers["X-Request-Id"]
    assert got != rid
    assert re.fullmatch(r"[0-9a-f]{32}", got)


async def test_generated_request_ids_differ(client):
    ids = {(await client.get("/healthz")).headers["X-Request-Id"] for _ in range(3)}
    assert len(ids) == 3


# --- read_json ---------------------------------------------------------------------------------


async def test_read_json_returns_the_object(client):
    assert await post_raw(client, b'{"a": [1, 2], "b": {"c": null}}') == (200, {"a": [1, 2], "b": {"c": None}})


@pytest.mark.parametrize(("raw", "message"), [
    (b"not json", "body is not valid JSON text"),
    (b"", "body is not valid JSON text"),
    (b"\xff\xfe{}", "body is not valid JSON text"),
    (b"[" * 10_000 + b"]" * 10_000, "body is not valid JSON text"),
    (b'{"a": "\\ud800"}', "body is not valid JSON text"),
    (b"[1, 2]", "body must be a JSON object"),
    (b'"text"', "body must be a JSON object"),
    (b"null", "body must be a JSON object"),
])
async def test_read_json_refuses_bad_bodies(client, raw, message):
    assert await post_raw(client, raw) == (400, {"error": "bad_request", "message": message})


async def test_read_json_accepts_a_surrogate_pair(client):
    assert await post_raw(client, b'{"a": "\\ud83d\\ude00"}') == (200, {"a": "\U0001f600"})


async def test_read_json_refuses_a_utf8_encoded_lone_surrogate(client):
    status, body = await post_raw(client, b'{"a": "\xed\xa0\x80"}')
    assert status == 400, f"accepted: {body!r}"
    assert body["error"] == "bad_request"


def padded_object(size: int) -> bytes:
    """A JSON object of exactly `size` bytes."""
    raw = b'{"a": ""}'
    return raw[:-2] + b"x" * (size - len(raw)) + raw[-2:]


async def test_body_of_exactly_the_limit_is_accepted(client):
    status, body = await post_raw(client, padded_object(MAX_BODY))
    assert status == 200 and len(body["a"]) == MAX_BODY - 9


async def test_body_over_the_limit_is_413(client):
    status, body = await post_raw(client, padded_object(MAX_BODY + 1))
    assert status == 413
    assert body["error"] == "bad_request" and str(MAX_BODY) in body["message"]


async def test_chunked_body_over_the_limit_is_413(client):
    async def chunks():
        for _ in range(5):
            yield b"x" * (MAX_BODY // 4)

    status, body = await post_raw(client, chunks())
    assert (status, body["error"]) == (413, "bad_request")


async def test_healthz(client):
    resp = await client.get("/healthz")
    assert resp.status == 200
    assert await resp.json() == {"status": "ok"}
