"""The HTTP kit both services build on: errors as JSON, request ids, JSON bodies, the admin
check. Domain code raises `SableError`s; this module alone turns them into responses.
Nothing here sees a secret's value."""

from __future__ import annotations

import functools
import ipaddress
import os
import re
import time
from collections.abc import Awaitable, Callable

import orjson
import structlog
from aiohttp import web

from clients import tracing
from clients.errors import BadRequest, SableError, Unauthorized
from clients.tokens import bearer_value
from server.audit import Caller
from server.metrics import CONTENT_TYPE, METHODS, Metrics

MAX_BODY = 64 * 1024

STATUS = {
    "malformed_token": 400,
    "bad_request": 400,
    "unauthorized": 401,
    "denied": 403,
    "not_found": 404,
    "conflict": 409,
    "rate_limited": 429,
    "gone": 410,
    "unavailable": 503,
    # RFC 8628's device-token errors (SPEC §11), for that endpoint only
    "authorization_pending": 400,
    "slow_down": 400,
    "access_denied": 400,
    "expired_token": 400,
    "invalid_grant": 400,
    "invalid_request": 400,
    "unsupported_grant_type": 400,
    # RFC 8693 and 7662 (SPEC §16, §17)
    "unsupported_token_type": 400,
    "invalid_target": 400,
    "invalid_client": 401,
    "temporarily_unavailable": 503,
}
# Sable's codes as RFC 6749 §5.2 names them, for OAuth-style endpoints.
OAUTH_CODES = {"bad_request": "invalid_request", "malformed_token": "invalid_request",
               "unauthorized": "invalid_client", "unavailable": "temporarily_unavailable"}

log = structlog.get_logger("sable")
REQUEST_ID = web.RequestKey("request_id", str)
METRICS = web.AppKey("metrics", Metrics)
_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class TooLarge(BadRequest):
    """A request too large to take (413)."""


class BodyTooLarge(TooLarge):
    def __init__(self, limit: int = MAX_BODY) -> None:
        super().__init__(f"request body is larger than {limit} bytes")


def json_response(data: object, status: int = 200, headers: dict | None = None) -> web.Response:
    """A JSON answer, encoded with orjson (a third of the cost of the json module's)."""
    return web.Response(body=orjson.dumps(data), status=status, headers=headers, content_type="application/json")


def error_response(code: str, message: str, status: int, retry_after: int | None = None,
                   reason: str | None = None) -> web.Response:
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    body = {"error": code, "message": message} if reason is None else {"error": code, "reason": reason,
                                                                         "message": message}
    return json_response(body, status=status, headers=headers)


def error_for(e: SableError) -> web.Response:
    status = 413 if isinstance(e, TooLarge) else STATUS[e.code]
    retry_after = e.retry_after
    if retry_after is None and e.code in ("rate_limited", "unavailable"):
        retry_after = 1  # every 429 and 503 says when to come back (SPEC §4)
    return error_response(e.code, e.message, status, retry_after, e.reason)


def oauth_errors(handler):
    """For OAuth-style endpoints (RFC 6749 §5.2): every error also carries `error_description`,
    which OAuth client libraries show (they ignore `message`)."""
    @functools.wraps(handler)
    async def run(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except SableError as e:
            resp = error_for(e)
            body = {"error": OAUTH_CODES.get(e.code, e.code), "error_description": e.message, "message": e.message}
            if e.reason is not None:
                body["reason"] = e.reason
            resp.body = orjson.dumps(body)
            return resp
    return run


@web.middleware
async def request_middleware(request: web.Request, handler):
    """Give each request an id, turn every failure into a JSON error, never a traceback, and
    count it in the metrics (and trace it, when tracing is on) by its route's pattern."""
    started = time.perf_counter()
    rid = request.headers.get("X-Request-Id", "")
    if not _REQUEST_ID.fullmatch(rid):
        rid = os.urandom(16).hex()
    request[REQUEST_ID] = rid
    structlog.contextvars.bind_contextvars(request_id=rid)
    # The route's pattern, never the raw path: some paths carry one-time secrets.
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else "unmatched"
    try:
        if tracing.enabled():
            method = request.method if request.method in METHODS else "other"
            with tracing.server_span(method, route, request.headers) as span:
                resp = await _answer(request, handler, route)
                span.set_attribute("http.response.status_code", resp.status)
        else:
            resp = await _answer(request, handler, route)
        resp.headers["X-Request-Id"] = rid
        metrics = request.app.get(METRICS)
        if metrics is not None:
            metrics.request(route, request.method, resp.status, time.perf_counter() - started)
        return resp
    finally:
        structlog.contextvars.unbind_contextvars("request_id")


async def _answer(request: web.Request, handler, route: str) -> web.StreamResponse:
    try:
        if not getattr(request.match_info.handler, "renders_page", False):  # pages answer in HTML themselves
            refuse_control_characters(request)
        return await handler(request)
    except SableError as e:
        return error_for(e)
    except web.HTTPRequestEntityTooLarge:
        return error_for(BodyTooLarge())
    except web.HTTPException as e:
        if e.status < 400:
            raise
        code = {404: "not_found", 405: "bad_request"}.get(e.status, "bad_request")
        return error_response(code, e.reason or "bad request", e.status)
    except Exception:
        log.exception("internal_error", route=route)
        return error_response("internal", "internal error", 500)


def _refuse_control(value: str, field: str) -> None:
    if _CONTROL.search(value):
        raise BadRequest(f"{field[:80]} holds a control character")


def refuse_control_characters(request: web.Request) -> None:
    """400 naming the parameter for a control character (U+0000-U+001F, U+007F) in a query
    parameter or a path segment (SPEC §4), before anything is looked up: no backend need
    store or compare such a value."""
    for key, value in request.query.items():
        _refuse_control(key, "a query parameter's name")
        _refuse_control(value, f"query parameter {key}")
    for key, value in request.match_info.items():
        _refuse_control(value, f"path segment {{{key}}}")


def refuse_control_in(body: object) -> None:
    """The same rule for a decoded body: every string in it, keys included, naming the field.
    A loop, not recursion: JSON may nest 1,024 deep."""
    stack: list[tuple[object, str]] = [(body, "")]
    while stack:
        value, field = stack.pop()
        if isinstance(value, str):
            _refuse_control(value, field or "the body")
        elif isinstance(value, dict):
            for key, item in value.items():
                _refuse_control(str(key), f"a field name in {field or 'the body'}")
                stack.append((item, f"{field}.{key}" if field else str(key)))
        elif isinstance(value, list):
            stack.extend((item, f"{field}[{i}]") for i, item in enumerate(value))


async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


def new_app(ready: Callable[[web.Application], Awaitable[bool]] | None = None, metrics: Metrics | None = None,
            metrics_route: bool = True, middleware=None) -> web.Application:
    """An application with the error middleware, the body limit, /healthz (alive), /readyz
    (`ready(app)`: the database answers and its schema is served) and, with `metrics`,
    /metrics (unless `metrics_route` is False: they are served on their own address).
    `middleware` replaces `request_middleware` (one that hands it every other request)."""
    app = web.Application(middlewares=[middleware or request_middleware], client_max_size=MAX_BODY)
    app.router.add_get("/healthz", healthz)
    if ready is not None:
        async def readyz(request: web.Request) -> web.Response:
            try:
                ok = await ready(request.app)
            except (SableError, KeyError):  # KeyError: still starting
                ok = False
            if ok:
                return json_response({"status": "ready"})
            return error_response("unavailable", "not ready: the database is unreachable or its schema is not "
                                  "the one this version serves", 503, 1)
        app.router.add_get("/readyz", readyz)
    if metrics is not None:
        app[METRICS] = metrics
        if metrics_route:
            app.router.add_get("/metrics", metrics_endpoint)
    return app


def metrics_app(metrics: Metrics) -> web.Application:
    """/metrics alone, for `--metrics-host`/`--metrics-port`."""
    app = web.Application(middlewares=[request_middleware])
    app[METRICS] = metrics
    app.router.add_get("/metrics", metrics_endpoint)
    return app


async def metrics_endpoint(request: web.Request) -> web.Response:
    """Prometheus text format, no credential (SPEC §13)."""
    return web.Response(body=request.app[METRICS].render(), headers={"Content-Type": CONTENT_TYPE})


def caller(request: web.Request) -> Caller:
    """Who is asking, for audit records; the app's metrics count the events they record."""
    metrics = request.app.get(METRICS)
    return Caller(client_address(request), request[REQUEST_ID], metrics.observe_audit if metrics else None)


async def read_json(request: web.Request) -> dict:
    """The request body as a JSON object; else BadRequest (413 when too large)."""
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise BodyTooLarge()
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise BodyTooLarge() from None
    try:
        # orjson is strict where it matters here: invalid UTF-8, lone surrogates (which could
        # not be stored or hashed), NaN and nesting deeper than 1024 are all refused.
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise BadRequest("body is not valid JSON text") from None
    if not isinstance(body, dict):
        raise BadRequest("body must be a JSON object")
    refuse_control_in(body)
    return body


async def read_raw(request: web.Request, limit: int) -> bytes:
    """The raw body of an endpoint that takes more than MAX_BODY (up to `limit`; 413 past it)."""
    if request.content_length is not None and request.content_length > limit:
        raise BodyTooLarge(limit)
    body = bytearray()
    async for chunk in request.content.iter_chunked(1 << 16):
        body += chunk
        if len(body) > limit:
            raise BodyTooLarge(limit)
    return bytes(body)


def bearer(request: web.Request) -> str | None:
    return bearer_value(request.headers.get("Authorization", ""))


async def require_admin(request: web.Request, is_admin: Callable[[str | None], Awaitable[bool]]) -> None:
    """Unauthorized unless the request bears a credential that `is_admin` accepts."""
    if not await is_admin(bearer(request)):
        raise Unauthorized("an admin credential (Bearer sable_adm_...) is required")


TRUSTED_PROXIES = web.AppKey("trusted_proxies", tuple)


def parse_networks(cidrs) -> tuple:
    """`--trusted-proxy` values as networks; ValueError names a bad one."""
    out = []
    for cidr in cidrs or ():
        try:
            out.append(ipaddress.ip_network(str(cidr).strip(), strict=False))
        except ValueError:
            raise ValueError(f"--trusted-proxy {cidr!r} is not an address or CIDR") from None
    return tuple(out)


def trusted_peer(address: str, networks: tuple) -> bool:
    """Whether a peer address is in one of these networks."""
    return _trusted(address, networks)


def _trusted(address: str, networks: tuple) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in n for n in networks)


def forwarded_proto(request: web.Request) -> str | None:
    """A trusted proxy's `X-Forwarded-Proto` (its last value), else None."""
    networks = request.app.get(TRUSTED_PROXIES, ())
    if not networks or not _trusted(request.remote or "", networks):
        return None
    value = request.headers.get("X-Forwarded-Proto", "").split(",")[-1].strip().lower()
    return value or None


def client_address(request: web.Request) -> str:
    """The client's address: the peer's, or, when the peer is a trusted proxy, the rightmost
    `X-Forwarded-For` entry that is not one (SPEC §12)."""
    remote = request.remote or "unknown"
    networks = request.app.get(TRUSTED_PROXIES, ())
    if not networks or not _trusted(remote, networks):
        return remote
    hops = [h.strip() for h in ",".join(request.headers.getall("X-Forwarded-For", [])).split(",") if h.strip()]
    for hop in reversed(hops):
        if not _trusted(hop, networks):
            return hop[:64]
    return remote
