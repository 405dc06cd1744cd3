"""The discharger's HTTP API (SPEC §5). Handlers parse input, call one `Discharger`
method and shape the reply."""

from __future__ import annotations

from aiohttp import web

from clients.web import MAX_BODY, REQUEST_ID, healthz, bearer, client_address, read_json, request_middleware, require_admin

from discharger import __version__
from discharger.config import DischargerConfig
from discharger.service import Discharger

DISCHARGER = web.AppKey("discharger", Discharger)
routes = web.RouteTableDef()


def _d(request: web.Request) -> Discharger:
    return request.app[DISCHARGER]


def _who(request: web.Request) -> tuple[str, str]:
    return client_address(request), request[REQUEST_ID]


async def _admin(request: web.Request) -> None:
    await require_admin(request, _d(request).store.is_admin)


@routes.get("/v1/info")
async def info(request: web.Request) -> web.Response:
    d = _d(request)
    d.keys.reload()
    return web.json_response({
        "service": "sable-discharger", "version": __version__, "location": d.config.public_url,
        "public_keys": d.keys.public_keys(),
    })


@routes.post("/v1/users")
async def create_user(request: web.Request) -> web.Response:
    await _admin(request)
    body = await read_json(request)
    return web.json_response(await _d(request).create_user(body, *_who(request)), status=201)


@routes.post("/v1/users/{username}/orgs")
async def set_orgs(request: web.Request) -> web.Response:
    await _admin(request)
    body = await read_json(request)
    return web.json_response(await _d(request).set_orgs(request.match_info["username"], body, *_who(request)))


@routes.post("/v1/users/{username}/disable")
async def disable(request: web.Request) -> web.Response:
    await _admin(request)
    return web.json_response(await _d(request).disable(request.match_info["username"], *_who(request)))


@routes.post("/v1/sessions")
async def login(request: web.Request) -> web.Response:
    body = await read_json(request)
    return web.json_response(await _d(request).login(body, *_who(request)), status=201)


@routes.delete("/v1/sessions/current")
async def logout(request: web.Request) -> web.Response:
    await _d(request).logout(bearer(request))
    return web.Response(status=204)


@routes.post("/v1/discharges")
async def discharge(request: web.Request) -> web.Response:
    username = await _d(request).session_user(bearer(request))  # 401 before the body is read
    body = await read_json(request)
    return web.json_response(await _d(request).discharge(username, body, *_who(request)), status=201)


def create_app(config: DischargerConfig) -> web.Application:
    app = web.Application(middlewares=[request_middleware], client_max_size=MAX_BODY)

    async def lifecycle(app: web.Application):
        discharger = await Discharger.open(config)
        app[DISCHARGER] = discharger
        yield
        await discharger.close()

    app.cleanup_ctx.append(lifecycle)
    app.router.add_get("/healthz", healthz)
    app.add_routes(routes)
    return app
