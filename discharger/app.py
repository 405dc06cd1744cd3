"""The discharger's HTTP API (SPEC §5). Handlers read the body, call one domain method and
shape the reply; `discharger.schemas` does the mapping and `server.http` the errors."""

from __future__ import annotations

from aiohttp import web

from clients.errors import GrantPending, NotFound, RateLimited, Unauthorized
from discharger import __version__, pages, schemas
from discharger.config import DischargerConfig
from discharger.metrics import DischargerMetrics
from discharger.pages import DISCHARGER, PAGES
from discharger.service import Discharger
from server import secret_scanning as secret_scanning_kit
from server.http import (
    TRUSTED_PROXIES,
    bearer,
    caller,
    client_address,
    json_response,
    new_app,
    oauth_errors,
    parse_networks,
    read_json,
    require_admin,
)
from server.pagekit import Pages
from server.ratelimit import SlidingCounter, throttle_key

FLOW_STARTS = web.AppKey("flow_starts", SlidingCounter)
DEVICE_STARTS = web.AppKey("device_starts", SlidingCounter)
ID_TOKEN_REFUSALS = web.AppKey("id_token_refusals", SlidingCounter)
SCANNING_KEYS = web.AppKey("secret_scanning_keys", secret_scanning_kit.GitHubKeys)
REFUSALS_PER_MINUTE = 120
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
routes = web.RouteTableDef()


def _d(request: web.Request) -> Discharger:
    return request.app[DISCHARGER]


async def _admin(request: web.Request) -> Discharger:
    d = _d(request)
    await require_admin(request, d.store.is_admin)
    return d


@routes.get("/v1/info")
async def info(request: web.Request) -> web.Response:
    d = _d(request)
    await d.keys.refresh(max_age=1.0)  # a rotation shows at once; a flood costs one read a second
    return json_response({
        "service": "sable-discharger", "version": __version__, "location": d.config.public_url,
        "public_keys": d.keys.public_keys(),
    })


@routes.post("/v1/users")
async def create_user(request: web.Request) -> web.Response:
    d = await _admin(request)
    new = schemas.new_user(await read_json(request))
    return json_response(schemas.user(await d.users.create(new, caller(request))), status=201)


@routes.post("/v1/users/{username}/orgs")
async def set_orgs(request: web.Request) -> web.Response:
    d = await _admin(request)
    membership = schemas.membership(request.match_info["username"], await read_json(request))
    return json_response(schemas.user(await d.users.set_orgs(membership, caller(request))))


@routes.post("/v1/users/{username}/links")
async def link_identity(request: web.Request) -> web.Response:
    d = await _admin(request)
    idp, sub = schemas.link(await read_json(request))
    await d.users.link(request.match_info["username"], idp, sub, caller(request))
    return json_response(schemas.links(await d.users.links(request.match_info["username"])), status=201)


@routes.get("/v1/users/{username}/links")
async def list_links(request: web.Request) -> web.Response:
    d = await _admin(request)
    return json_response(schemas.links(await d.users.links(request.match_info["username"])))


@routes.delete("/v1/users/{username}/factors")
async def reset_factors(request: web.Request) -> web.Response:
    d = await _admin(request)
    username = request.match_info["username"]
    await d.users.get(username)  # 404 for an unknown user
    removed = await d.sessions.factors.remove(username, caller(request), by="admin")
    return json_response({"username": username, "removed": removed})


@routes.get("/v1/orgs/{org}/policy")
async def get_policy(request: web.Request) -> web.Response:
    d = await _admin(request)
    return json_response(schemas.policy(await d.store.org_policy(schemas.org_name(request.match_info["org"]))))


@routes.put("/v1/orgs/{org}/policy")
async def set_policy(request: web.Request) -> web.Response:
    d = await _admin(request)
    policy = schemas.new_policy(schemas.org_name(request.match_info["org"]), await read_json(request))
    return json_response(schemas.policy(await d.policies.set(policy, caller(request))))


@routes.get("/v1/users")
async def list_users(request: web.Request) -> web.Response:
    d = await _admin(request)
    return json_response({"users": [schemas.user_row(u) for u in await d.users.list()]})


@routes.get("/v1/users/{username}")
async def get_user(request: web.Request) -> web.Response:
    d = await _admin(request)
    return json_response(schemas.user_row(await d.users.get(request.match_info["username"])))


@routes.post("/v1/users/{username}/enable")
async def enable(request: web.Request) -> web.Response:
    d = await _admin(request)
    username = request.match_info["username"]
    await d.users.disable(username, caller(request), disabled=False)
    return json_response({"username": username, "disabled": False})


@routes.post("/v1/users/{username}/password")
async def set_password(request: web.Request) -> web.Response:
    d = await _admin(request)
    username = request.match_info["username"]
    await d.users.set_password(username, schemas.password(await read_json(request)), caller(request))
    return json_response({"username": username})


@routes.post("/v1/users/{username}/disable")
async def disable(request: web.Request) -> web.Response:
    d = await _admin(request)
    username = request.match_info["username"]
    await d.users.disable(username, caller(request))
    return json_response({"username": username, "disabled": True})


@routes.post("/v1/principals")
async def create_principal(request: web.Request) -> web.Response:
    d = await _admin(request)
    name, org, role = schemas.new_principal(await read_json(request))
    return json_response(schemas.principal(await d.principals.create(name, org, role, caller(request))), status=201)


@routes.get("/v1/principals")
async def list_principals(request: web.Request) -> web.Response:
    d = await _admin(request)
    org = request.query.get("org")
    found = await d.principals.list(schemas.org_name(org) if org is not None else None)
    return json_response({"principals": [schemas.principal(p) for p in found]})


@routes.get("/v1/principals/{name}")
async def get_principal(request: web.Request) -> web.Response:
    d = await _admin(request)
    return json_response(schemas.principal(await d.principals.get(request.match_info["name"])))


@routes.delete("/v1/principals/{name}")
async def remove_principal(request: web.Request) -> web.Response:
    d = await _admin(request)
    await d.principals.remove(request.match_info["name"], caller(request))
    return web.Response(status=204)


@routes.post("/v1/principals/{name}/{change:disable|enable}")
async def disable_principal(request: web.Request) -> web.Response:
    d = await _admin(request)
    disabled = request.match_info["change"] == "disable"
    return json_response(schemas.principal(await d.principals.set_disabled(request.match_info["name"], disabled,
                                                                            caller(request))))


@routes.post("/v1/principals/{name}/policies")
async def trust(request: web.Request) -> web.Response:
    d = await _admin(request)
    issuer, audience, claims, max_age = schemas.trust_policy_request(await read_json(request))
    policy = await d.principals.trust(request.match_info["name"], issuer, audience, claims, max_age, caller(request))
    return json_response(schemas.trust_policy(policy), status=201)


@routes.delete("/v1/principals/{name}/policies/{id}")
async def untrust(request: web.Request) -> web.Response:
    d = await _admin(request)
    await d.principals.untrust(request.match_info["name"], request.match_info["id"], caller(request))
    return web.Response(status=204)


@routes.get("/.well-known/oauth-authorization-server")
async def oauth_metadata(request: web.Request) -> web.Response:
    return json_response(schemas.oauth_metadata(_d(request).config.public_url))


@routes.post("/v1/sessions")
async def login(request: web.Request) -> web.Response:
    creds = schemas.credentials(await read_json(request))
    return json_response(schemas.session(await _d(request).sessions.login(creds, caller(request))), status=201)


@routes.get("/v1/sessions/current")
async def current_session(request: web.Request) -> web.Response:
    user, session = await _d(request).sessions.current(bearer(request))
    return json_response(schemas.current_session(user.username, user.roles, session.expires_at, session.auth_method))


@routes.delete("/v1/sessions/current")
async def logout(request: web.Request) -> web.Response:
    await _d(request).sessions.logout(bearer(request))
    return web.Response(status=204)


@routes.post("/v1/discharges")
async def discharge(request: web.Request) -> web.Response:
    d = _d(request)
    if bearer(request) is None:  # no session: a CI's ID token (SPEC §16), or an interactive discharge
        body = await read_json(request)
        if "id_token" in body:
            return await _discharge_for_id_token(request, d, body)
        return await _start_flow(request, d, body)
    session = await d.sessions.find(bearer(request))  # 401 before the body is read
    ticket = schemas.ticket(await read_json(request))
    issued = await d.discharges.issue(session.username, ticket, caller(request), session.auth_method)
    return json_response(schemas.discharge(issued), status=201)


async def _discharge_for_id_token(request: web.Request, d: Discharger, body: dict) -> web.Response:
    """SPEC §16. Refusals are counted per address: a leaked CI secret cannot drive unbounded
    signature checks and audit writes (a CI's own jobs are rarely refused)."""
    counter, key = request.app[ID_TOKEN_REFUSALS], throttle_key(client_address(request))
    wait = counter.retry_after(key)
    if wait is not None:
        raise RateLimited("too many refused ID tokens from this address; try again later", retry_after=wait)
    try:
        issued = await d.principals.discharge(schemas.ticket(body), schemas.id_token(body), caller(request))
    except Unauthorized:
        counter.add(key)
        raise
    return json_response(schemas.discharge(issued), status=201)


async def _start_flow(request: web.Request, d: Discharger, body: dict) -> web.Response:
    counter, key = request.app[FLOW_STARTS], throttle_key(client_address(request))
    wait = counter.retry_after(key)
    if wait is not None:
        raise RateLimited("too many sign-in requests from this address; try again later", retry_after=wait)
    if body.get("interactive") is not True:
        await d.sessions.user(None)  # 401: a session is required
    counter.add(key)
    ticket, return_to = schemas.ticket(body), schemas.return_to(body)
    started = await d.flows.start(ticket, return_to, caller(request))
    return json_response({"user_url": started.user_url, "poll_url": started.poll_url,
                              "expires_in": started.expires_in}, status=202)


@routes.get("/v1/flows/{secret}")
async def poll_flow(request: web.Request) -> web.Response:
    d = _d(request)
    code = request.headers.get("Sable-Flow-Code")
    got = await d.flows.poll(request.match_info["secret"], code, caller(request))
    if got is None:
        return json_response({"status": "pending"}, status=202)
    return json_response(schemas.discharge(got))


@routes.post("/v1/device/authorize")
@oauth_errors
async def device_authorize(request: web.Request) -> web.Response:
    d = _d(request)
    counter, key = request.app[DEVICE_STARTS], throttle_key(client_address(request))
    wait = counter.retry_after(key)  # each start is a durable row: limited like flow starts
    if wait is not None:
        raise RateLimited("too many device logins from this address; try again later", retry_after=wait)
    body = await schemas.read_form_or_json(request)
    counter.add(key)
    auth = await d.device.authorize(schemas.client_name(body), caller(request))
    base = d.config.public_url.rstrip("/")
    return json_response({
        "device_code": auth.device_code, "user_code": auth.user_code, "verification_uri": f"{base}/device",
        "verification_uri_complete": f"{base}/device?user_code={auth.user_code}", "expires_in": auth.expires_in,
        "interval": auth.interval}, headers={"Cache-Control": "no-store"})


@routes.post("/v1/device/token")
@oauth_errors
async def device_token(request: web.Request) -> web.Response:
    d = _d(request)
    body = await schemas.read_form_or_json(request)
    grant_type = body.get("grant_type")
    if grant_type is not None and grant_type != DEVICE_GRANT:
        raise GrantPending("unsupported_grant_type", f"grant_type must be {DEVICE_GRANT}")
    device_code = body.get("device_code")
    if not isinstance(device_code, str) or not 0 < len(device_code) <= 128:
        raise GrantPending("invalid_request", "device_code is required")
    session, username = await d.device.token(device_code, caller(request))
    return json_response(schemas.device_session(session, username), headers={"Cache-Control": "no-store"})


async def _ready(app: web.Application) -> bool:
    return await app[DISCHARGER].store.ping()


@routes.post("/v1/secret-scanning/github")
async def secret_scanning(request: web.Request) -> web.Response:
    """GitHub's secret-scanning partner endpoint for the discharger's own secrets (SPEC §18)."""
    keys = request.app.get(SCANNING_KEYS)
    if keys is None:
        raise NotFound("secret scanning is off here (secret_scanning_keys_url is empty)")
    items = await secret_scanning_kit.read_report(request, keys)
    genuine = await request.app[DISCHARGER].leaks.report(items, caller(request))
    return json_response(secret_scanning_kit.answer(items, genuine))


def create_app(config: DischargerConfig) -> web.Application:
    metrics = DischargerMetrics()
    app = new_app(_ready, metrics, metrics_route=not config.metrics_port)

    async def lifecycle(app: web.Application):
        discharger = await Discharger.open(config)
        app[DISCHARGER] = discharger
        discharger.hasher.observe = metrics.password_hash.observe
        await metrics.start()
        yield
        await metrics.stop()
        await discharger.close()

    app.cleanup_ctx.append(lifecycle)
    app[PAGES] = Pages(pages.FOLDER, config.secure)
    app[FLOW_STARTS] = SlidingCounter(30, 60.0)
    app[DEVICE_STARTS] = SlidingCounter(30, 60.0)
    app[ID_TOKEN_REFUSALS] = SlidingCounter(REFUSALS_PER_MINUTE, 60.0)
    app[pages.SIGN_IN_TRIES] = SlidingCounter(60, 60.0)
    app[TRUSTED_PROXIES] = parse_networks(config.trusted_proxies)
    if config.secret_scanning_keys_url:
        app[SCANNING_KEYS] = secret_scanning_kit.GitHubKeys(config.secret_scanning_keys_url)
    app.add_routes(routes)
    app.add_routes(pages.routes)
    return app
