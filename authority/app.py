"""The authority's HTTP API (SPEC §4). Handlers read the body, call one domain method and
shape the reply; `authority.schemas` does the mapping and `server.http` the errors."""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable

from aiohttp import web

from authority import __version__, pages, schemas
from authority.config import AuthorityConfig
from authority.metrics import AuthorityMetrics
from authority.pages import AUTHORITY, PAGES
from authority.selfservice import Member
from authority.service import Authority
from clients import tokens
from clients.caveats import NAME_RE
from clients.errors import (
    BadRequest,
    Conflict,
    Denial,
    Forbidden,
    GrantPending,
    MalformedToken,
    NotFound,
    RateLimited,
    Unauthorized,
)
from server import secret_scanning as secret_scanning_kit
from server.audit import Caller
from server.http import (
    REQUEST_ID,
    TRUSTED_PROXIES,
    bearer,
    caller,
    client_address,
    json_response,
    new_app,
    oauth_errors,
    parse_networks,
    read_json,
    read_raw,
)
from server.pagekit import Pages, read_form
from server.ratelimit import SlidingCounter, throttle_key

REVOKE_LIMIT = web.AppKey("revoke_limit", SlidingCounter)
VERIFY_METRICS = web.AppKey("verify_metrics", AuthorityMetrics)  # the same object as server.http.METRICS
USER_TOKEN_LIMIT = web.AppKey("user_token_limit", SlidingCounter)
SCANNING_KEYS = web.AppKey("secret_scanning_keys", secret_scanning_kit.GitHubKeys)
_TOKEN_ID = re.compile(r"[0-9a-f]{32}")
routes = web.RouteTableDef()


def _authority(request: web.Request) -> Authority:
    return request.app[AUTHORITY]


async def _admin(request: web.Request) -> Authority:
    a = _authority(request)
    await _require_admin(request, a)
    return a


async def _require_admin(request: web.Request, a: Authority) -> None:
    """The admin credential, or 401; an introspect-only credential is known, so 403 (SPEC §17)."""
    credential = bearer(request)
    if await a.store.is_admin(credential):
        return
    if await _introspector(a, credential) is not None:
        raise Forbidden("this credential may only introspect (POST /v1/introspect)")
    raise Unauthorized("an admin credential (Bearer sable_adm_...) is required")


async def _introspector(a: Authority, credential: str | None) -> tuple[str, ...] | None:
    if not credential or not credential.startswith(tokens.ADMIN):
        return None
    return await a.store.introspector(tokens.secret_digest(credential))


async def _member(request: web.Request, action: str) -> Member | None:
    """None for the admin credential; else the member a user token and its discharge prove
    (`Authorization: Bearer sable_ut_...,sable_dt_...`, or the discharge in `Sable-Discharge`)."""
    a = _authority(request)
    value = bearer(request) or ""
    if not value.startswith(tokens.USER):
        await _require_admin(request, a)
        return None
    presented = tokens.split_presentation(value) + tokens.split_presentation(request.headers.get("Sable-Discharge", ""))
    return await a.selfservice.member(presented, action, caller(request))


@routes.post("/v1/user-tokens")
async def user_token(request: web.Request) -> web.Response:
    limiter, client = request.app[USER_TOKEN_LIMIT], throttle_key(client_address(request))
    wait = limiter.retry_after(client)
    if wait is not None:
        raise RateLimited("too many user tokens from this address", retry_after=wait)
    org, role = schemas.user_token_request(await read_json(request))
    limiter.add(client)
    minted = _authority(request).minting.mint_user(org, role, caller(request))
    return json_response(schemas.user_token(minted), status=201)


@routes.get("/v1/info")
async def info(request: web.Request) -> web.Response:
    a = _authority(request)
    return json_response(schemas.info(a.config, a.trust, __version__, os.getpid()))


@routes.post("/v1/orgs")
async def create_org(request: web.Request) -> web.Response:
    a = await _admin(request)
    name = schemas.org_name(await read_json(request))
    return json_response(schemas.org(await a.orgs.create(name, caller(request))), status=201)


@routes.get("/v1/orgs")
async def list_orgs(request: web.Request) -> web.Response:
    a = await _admin(request)
    return json_response({"orgs": [schemas.org(o) for o in await a.orgs.list()]})


@routes.post("/v1/tokens")
async def mint(request: web.Request) -> web.Response:
    member = await _member(request, "c")
    a = _authority(request)
    req = schemas.mint_request(await read_json(request))
    if member is None:
        minted = await a.minting.mint(req, caller(request))
    else:
        minted = await a.selfservice.mint(member, req, caller(request))
    return json_response(schemas.minted(minted), status=201)


@routes.get("/v1/tokens")
async def list_tokens(request: web.Request) -> web.Response:
    member = await _member(request, "r")
    a = _authority(request)
    org = request.query.get("org")
    if member is not None:
        rows = await a.selfservice.tokens(member, org or None)
    elif not org:
        raise BadRequest("the org query parameter is required")
    elif not await a.store.org_exists(org):
        raise NotFound(f"org {org!r} does not exist")
    else:
        rows = await a.listing.tokens(org)
    return json_response({"tokens": [schemas.token(r) for r in rows]})


@routes.get("/v1/tokens/{id}")
async def show_token(request: web.Request) -> web.Response:
    """One token by id (SPEC §19: `sable token show`): the admin any; a member those of their org."""
    member = await _member(request, "r")
    a = _authority(request)
    token_id = request.match_info["id"]
    row = None
    if _TOKEN_ID.fullmatch(token_id):
        row = await (a.listing.token(token_id) if member is None else a.selfservice.token(member, token_id))
    if row is None:
        raise NotFound("no token with that id")
    return json_response(schemas.token(row))


@routes.post("/v1/tokens/revoke")
async def revoke_user(request: web.Request) -> web.Response:
    a = await _admin(request)
    username = (await read_json(request)).get("user")
    if not isinstance(username, str) or not NAME_RE.fullmatch(username):
        raise BadRequest("user is required and must be a username")
    return json_response({"revoked": await a.revocation.revoke_user(username, caller(request))})


@routes.post("/v1/tokens/{id}/revoke")
async def revoke_id(request: web.Request) -> web.Response:
    member = await _member(request, "d")
    a = _authority(request)
    token_id = request.match_info["id"]
    if not _TOKEN_ID.fullmatch(token_id):
        raise NotFound("no token with that id")
    if member is not None:
        return json_response({"revoked": await a.selfservice.revoke(member, token_id, caller(request))})
    return json_response({"revoked": await a.revocation.revoke_id(token_id, caller(request))})


@routes.post("/v1/tokens/{id}/regenerate")
async def regenerate(request: web.Request) -> web.Response:
    """A new permission token like this one; this one revoked in the same transaction (SPEC §18)."""
    member = await _member(request, "d")
    a = _authority(request)
    token_id = request.match_info["id"]
    if not _TOKEN_ID.fullmatch(token_id):
        raise NotFound("no token with that id")
    if member is not None:
        await _member(request, "c")  # it mints as well as revokes: a user token must allow both
        await a.selfservice.revocable(member, token_id)  # whoever may revoke it
    minted, revoked = await a.regeneration.regenerate(token_id, caller(request),
                                                      "@admin" if member is None else member.username)
    return json_response({**schemas.minted(minted), "revoked": revoked}, status=201)


@routes.post("/v1/verify")
async def verify(request: web.Request) -> web.Response:
    req = schemas.verify_request(await read_json(request))
    checker = _authority(request).checker
    metrics = request.app[VERIFY_METRICS]
    try:
        verified = await checker.check(checker.parse(req.tokens), req.access, functools.partial(caller, request),
                                       req.proof)
    except Denial as e:
        metrics.denied.inc()
        return json_response(schemas.denied(str(e)), status=403)
    metrics.allowed.inc()
    return json_response(schemas.verified(verified))


@routes.post("/v1/service-tokens")
async def strip(request: web.Request) -> web.Response:
    req = schemas.strip_request(await read_json(request))
    return json_response(schemas.stripped(await _authority(request).minting.strip(req, caller(request))),
                             status=201)


@routes.post("/v1/oauth/token")
@oauth_errors
async def token_exchange(request: web.Request) -> web.Response:
    """RFC 8693's front door to strip (SPEC §16): strip's refusals of the tokens are
    `invalid_grant` here, with strip's `reason`."""
    if request.content_type != "application/x-www-form-urlencoded":
        raise GrantPending("invalid_request", "the body must be a form (application/x-www-form-urlencoded)")
    req = schemas.exchange_request(await read_form(request))
    try:
        stripped = await _authority(request).minting.strip(req, caller(request), bind=True)
    except (BadRequest, MalformedToken, Forbidden, Conflict, NotFound) as e:
        raise GrantPending("invalid_grant", e.message, e.reason) from None
    return json_response(schemas.exchanged(stripped, req.expires_in),
                         headers={"Cache-Control": "no-store", "Pragma": "no-cache"})


@routes.post("/v1/introspect")
@oauth_errors
async def introspect(request: web.Request) -> web.Response:
    """RFC 7662 (SPEC §17): the admin credential or an introspect-only one."""
    a = _authority(request)
    credential = bearer(request)
    orgs: tuple[str, ...] | None = () if await a.store.is_admin(credential) else await _introspector(a, credential)
    if orgs is None:
        raise Unauthorized("introspection needs the admin credential or an introspect-only one (Bearer sable_adm_...)")
    if request.content_type != "application/x-www-form-urlencoded":
        raise GrantPending("invalid_request", "the body must be a form (application/x-www-form-urlencoded)")
    presentation, access = schemas.introspection_request(await read_form(request))
    answer = await a.introspection.introspect(presentation, access, orgs, caller(request))
    return json_response(answer, headers={"Cache-Control": "no-store"})


@routes.get("/.well-known/oauth-authorization-server")
async def oauth_metadata(request: web.Request) -> web.Response:
    return json_response(schemas.oauth_metadata(_authority(request).config.public_url))


@routes.post("/v1/revoke")
async def revoke_value(request: web.Request) -> web.Response:
    limiter = request.app[REVOKE_LIMIT]
    client = throttle_key(client_address(request))
    wait = limiter.retry_after(client)
    if wait is not None:
        raise RateLimited("too many revocations from this address", retry_after=wait)
    limiter.add(client)
    presented = schemas.token_list((await read_json(request)).get("tokens"))
    return json_response(schemas.revoked(await _authority(request).revocation.revoke_value(presented,
                                                                                                caller(request))))


@routes.get("/v1/revocations")
async def revocations(request: web.Request) -> web.Response:
    after, wait = schemas.feed_query(request.query)  # type: ignore[arg-type]
    return json_response(schemas.feed_page(await _authority(request).revocation.page(after, wait)))


@routes.post("/v1/secret-scanning/github")
async def secret_scanning(request: web.Request) -> web.Response:
    """GitHub's secret-scanning partner endpoint (SPEC §18): labels, once revocations are committed."""
    keys = request.app.get(SCANNING_KEYS)
    if keys is None:
        raise NotFound("secret scanning is off here (secret_scanning_keys_url is empty)")
    items = await secret_scanning_kit.read_report(request, keys)
    genuine = await _authority(request).leaks.report(items, caller(request), via="github")
    return json_response(secret_scanning_kit.answer(items, genuine))


@routes.post("/v1/credentials/revoke")
async def public_revoke(request: web.Request) -> web.Response:
    """Anyone who finds a token (SPEC §18): queued and answered before anything is judged."""
    public = _authority(request).public_revocation
    who = Caller(throttle_key(client_address(request)), request[REQUEST_ID])
    await public.admit(who)  # counted before the body is read
    credentials = schemas.found_credentials(await read_raw(request, secret_scanning_kit.MAX_REPORT_BYTES))
    await public.submit(credentials, who)
    return json_response({}, status=202)


@routes.post("/v1/events")
async def discharger_event(request: web.Request) -> web.Response:
    """The discharger's user.* and principal.* events (SPEC §18), with an admin credential."""
    a = await _admin(request)
    taken = await a.events.receive(await read_json(request), caller(request))
    return json_response({"taken": taken})


@routes.get("/v1/orgs/{org}/policy")
async def org_policy(request: web.Request) -> web.Response:
    a = await _admin(request)
    org = request.match_info["org"]
    if not NAME_RE.fullmatch(org) or not await a.store.org_exists(org):
        raise NotFound("no such org")
    return json_response({"org": org, "max_token_lifetime": await a.orgs.max_token_lifetime(org)})


@routes.put("/v1/orgs/{org}/policy")
async def set_org_policy(request: web.Request) -> web.Response:
    a = await _admin(request)
    org = request.match_info["org"]
    seconds = (await read_json(request)).get("max_token_lifetime")
    if seconds is not None and (not isinstance(seconds, int) or isinstance(seconds, bool)):
        raise BadRequest("max_token_lifetime must be a number of seconds, or null for no limit")
    if not NAME_RE.fullmatch(org):
        raise NotFound("no such org")
    held = await a.orgs.set_max_token_lifetime(org, seconds, caller(request))
    return json_response({"org": org, "max_token_lifetime": held})


async def _webhook_owner(request: web.Request, org: str) -> None:
    """The admin credential, or an admin of `org` through self-service (SPEC §18)."""
    member = await _member(request, "w")
    if member is not None and (member.org != org or member.role != "admin"):
        raise Forbidden(f"only an admin of org {org} (or the admin credential) manages its webhooks")


@routes.post("/v1/webhooks")
async def webhook_create(request: web.Request) -> web.Response:
    org, url, events = schemas.webhook_request(await read_json(request))
    await _webhook_owner(request, org)
    row, secret = await _authority(request).webhooks.create(org, url, events, caller(request))
    return json_response({**schemas.webhook(row), "secret": secret}, status=201)


@routes.get("/v1/webhooks")
async def webhook_list(request: web.Request) -> web.Response:
    org = request.query.get("org")
    member = await _member(request, "r")
    if member is not None:
        if member.role != "admin" or (org or member.org) != member.org:
            raise Forbidden("only an org's admins (or the admin credential) see its webhooks")
        org = member.org
    return json_response({"webhooks": [schemas.webhook(r) for r in await _authority(request).webhooks.list(org)]})


@routes.delete("/v1/webhooks/{id}")
async def webhook_remove(request: web.Request) -> web.Response:
    hooks = _authority(request).webhooks
    row = await hooks.get(request.match_info["id"])
    await _webhook_owner(request, row.org)
    await hooks.remove(row.id, caller(request))
    return json_response({"removed": row.id})


@routes.post("/v1/webhooks/{id}/test")
async def webhook_test(request: web.Request) -> web.Response:
    hooks = _authority(request).webhooks
    row = await hooks.get(request.match_info["id"])
    await _webhook_owner(request, row.org)
    return json_response({"result": "delivered" if await hooks.test(row.id, caller(request)) else "failed"})


async def _ready(app: web.Application) -> bool:
    a = app[AUTHORITY]
    return a.feed.fresh() and await a.store.ping()


def create_app(config: AuthorityConfig, say: Callable[[str], None] | None = None) -> web.Application:
    """The authority as an aiohttp app; its start-up opens the store and learns the trusted
    discharger's keys (`say` hears about waiting for it: the CLI prints it)."""
    metrics = AuthorityMetrics()
    app = new_app(_ready, metrics, metrics_route=not config.metrics_port)
    app[VERIFY_METRICS] = metrics
    app[REVOKE_LIMIT] = SlidingCounter(config.revoke_per_minute, 60.0)
    app[USER_TOKEN_LIMIT] = SlidingCounter(10, 60.0)
    app[TRUSTED_PROXIES] = parse_networks(config.trusted_proxies)
    if config.secret_scanning_keys_url:
        app[SCANNING_KEYS] = secret_scanning_kit.GitHubKeys(config.secret_scanning_keys_url)

    async def lifecycle(app: web.Application):
        authority = await Authority.open(config, say)
        app[AUTHORITY] = authority
        await authority.start()
        metrics.watch(authority)
        await metrics.start()
        yield
        await metrics.stop()
        await authority.close()

    app.cleanup_ctx.append(lifecycle)
    app[PAGES] = Pages(pages.FOLDER, config.public_url.startswith("https://"))
    app.add_routes(routes)
    app.add_routes(pages.routes)
    return app
