"""The authority's HTTP API (SPEC §4). Handlers parse input, call one `Authority` method
and shape the reply."""

from __future__ import annotations

import os
import re

from aiohttp import web

from clients.tickets import b64e
from clients.web import (
    MAX_BODY, healthz, REQUEST_ID, ServiceError, SlidingCounter, client_address, read_json, request_middleware,
    require_admin, throttle_key,
)

from authority import __version__
from authority.config import AuthorityConfig
from authority.service import Authority, Caller
from authority.verification import Denial

AUTHORITY = web.AppKey("authority", Authority)
REVOKE_LIMIT = web.AppKey("revoke_limit", SlidingCounter)
_TOKEN_ID = re.compile(r"[0-9a-f]{32}")
routes = web.RouteTableDef()


def _authority(request: web.Request) -> Authority:
    return request.app[AUTHORITY]


def _caller(request: web.Request) -> Caller:
    return Caller(client_address(request), request[REQUEST_ID])


async def _admin(request: web.Request) -> None:
    await require_admin(request, _authority(request).store.is_admin)


@routes.get("/v1/info")
async def info(request: web.Request) -> web.Response:
    a = _authority(request)
    return web.json_response({
        "service": "sable-authority",
        "version": __version__,
        "worker": os.getpid(),
        "location": a.config.public_url,
        "dischargers": [
            {"location": d.location, "public_keys": [{"kid": k, "key": b64e(v)} for k, v in d.public_keys]}
            for d in a.config.dischargers
        ],
    })


@routes.post("/v1/orgs")
async def create_org(request: web.Request) -> web.Response:
    await _admin(request)
    body = await read_json(request)
    return web.json_response(await _authority(request).create_org(body.get("name"), _caller(request)), status=201)


@routes.get("/v1/orgs")
async def list_orgs(request: web.Request) -> web.Response:
    await _admin(request)
    return web.json_response(await _authority(request).list_orgs())


@routes.post("/v1/tokens")
async def mint(request: web.Request) -> web.Response:
    await _admin(request)
    body = await read_json(request)
    return web.json_response(await _authority(request).mint(body, _caller(request)), status=201)


@routes.get("/v1/tokens")
async def list_tokens(request: web.Request) -> web.Response:
    await _admin(request)
    return web.json_response(await _authority(request).list_tokens(request.query.get("org")))


@routes.post("/v1/tokens/{id}/revoke")
async def revoke_id(request: web.Request) -> web.Response:
    await _admin(request)
    token_id = request.match_info["id"]
    if not _TOKEN_ID.fullmatch(token_id):
        raise ServiceError("not_found", "no token with that id")
    return web.json_response(await _authority(request).revoke_id(token_id, _caller(request)))


@routes.post("/v1/verify")
async def verify(request: web.Request) -> web.Response:
    body = await read_json(request)
    try:
        result = await _authority(request).verify(body, _caller(request))
    except Denial as e:
        return web.json_response({"allowed": False, "error": "denied", "message": str(e)}, status=403)
    return web.json_response(result)


@routes.post("/v1/service-tokens")
async def strip(request: web.Request) -> web.Response:
    body = await read_json(request)
    return web.json_response(await _authority(request).strip(body, _caller(request)), status=201)


@routes.post("/v1/revoke")
async def revoke_value(request: web.Request) -> web.Response:
    limiter = request.app[REVOKE_LIMIT]
    client = throttle_key(client_address(request))
    wait = limiter.retry_after(client)
    if wait is not None:
        raise ServiceError("rate_limited", "too many revocations from this address", retry_after=wait)
    limiter.add(client)
    body = await read_json(request)
    return web.json_response(await _authority(request).revoke_value(body, _caller(request)))


@routes.get("/v1/revocations")
async def revocations(request: web.Request) -> web.Response:
    after, wait = request.query.get("after"), request.query.get("wait", "0")
    try:
        after_n = None if after is None else int(after)
        wait_s = float(wait)
    except ValueError:
        raise ServiceError("bad_request", "after must be an integer and wait a number of seconds") from None
    if (after_n is not None and not 0 <= after_n < 2**63) or not 0 <= wait_s <= 60:
        raise ServiceError("bad_request", "after must be a cursor (>= 0) and wait from 0 to 60")
    return web.json_response(await _authority(request).revocations(after_n, wait_s))


def create_app(config: AuthorityConfig) -> web.Application:
    app = web.Application(middlewares=[request_middleware], client_max_size=MAX_BODY)
    app[REVOKE_LIMIT] = SlidingCounter(config.revoke_per_minute, 60.0)

    async def lifecycle(app: web.Application):
        authority = await Authority.open(config)
        app[AUTHORITY] = authority
        await authority.start()
        yield
        await authority.close()

    app.cleanup_ctx.append(lifecycle)
    app.router.add_get("/healthz", healthz)
    app.add_routes(routes)
    return app
