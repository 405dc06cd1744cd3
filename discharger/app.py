"""The discharger's HTTP API (SPEC §5). Handlers read the body, call one domain method and
shape the reply; `discharger.schemas` does the mapping and `server.http` the errors."""

from __future__ import annotations

from aiohttp import web

from discharger import __version__, schemas
from discharger.config import DischargerConfig
from discharger.service import Discharger
from server.audit import Caller
from server.http import REQUEST_ID, bearer, client_address, new_app, read_json, require_admin

DISCHARGER = web.AppKey("discharger", Discharger)
routes = web.RouteTableDef()


def _d(request: web.Request) -> Discharger:
    return request.app[DISCHARGER]


def _caller(request: web.Request) -> Caller:
    return Caller(client_address(request), request[REQUEST_ID])


async def _admin(request: web.Request) -> Discharger:
    d = _d(request)
    await require_admin(request, d.store.is_admin)
    return d


@routes.get("/v1/info")
async def info(request: web.Request) -> web.Response:
    d = _d(request)
    await d.keys.refresh(max_age=1.0)  # a rotation shows at once; a flood costs one read a second
    return web.json_response({
        "service": "sable-discharger", "version": __version__, "location": d.config.public_url,
        "public_keys": d.keys.public_keys(),
    })


@routes.post("/v1/users")
async def create_user(request: web.Request) -> web.Response:
    d = await _admin(request)
    new = schemas.new_user(await read_json(request))
    return web.json_response(schemas.user(await d.users.create(new, _caller(request))), status=201)


@routes.post("/v1/users/{username}/orgs")
async def set_orgs(request: web.Request) -> web.Response:
    d = await _admin(request)
    membership = schemas.membership(request.match_info["username"], await read_json(request))
    return web.json_response(schemas.user(await d.users.set_orgs(membership, _caller(request))))


@routes.post("/v1/users/{username}/disable")
async def disable(request: web.Request) -> web.Response:
    d = await _admin(request)
    username = request.match_info["username"]
    await d.users.disable(username, _caller(request))
    return web.json_response({"username": username, "disabled": True})


@routes.post("/v1/sessions")
async def login(request: web.Request) -> web.Response:
    creds = schemas.credentials(await read_json(request))
    return web.json_response(schemas.session(await _d(request).sessions.login(creds, _caller(request))), status=201)


@routes.delete("/v1/sessions/current")
async def logout(request: web.Request) -> web.Response:
    await _d(request).sessions.logout(bearer(request))
    return web.Response(status=204)


@routes.post("/v1/discharges")
async def discharge(request: web.Request) -> web.Response:
    d = _d(request)
    username = await d.sessions.user(bearer(request))  # 401 before the body is read
    ticket = schemas.ticket(await read_json(request))
    return web.json_response(schemas.discharge(await d.discharges.issue(username, ticket, _caller(request))),
                             status=201)


async def _ready(app: web.Application) -> bool:
    return await app[DISCHARGER].store.ping()


def create_app(config: DischargerConfig) -> web.Application:
    app = new_app(_ready)

    async def lifecycle(app: web.Application):
        discharger = await Discharger.open(config)
        app[DISCHARGER] = discharger
        yield
        await discharger.close()

    app.cleanup_ctx.append(lifecycle)
    app.add_routes(routes)
    return app
