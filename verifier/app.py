"""The verifier process's HTTP API (SPEC §17): `/v1/forward-auth` for gateways, `/v1/check`
for services on the same host, and the kit's `/healthz`, `/readyz` and `/metrics`.

Every decision comes from `clients.verifier.Verifier`: its cache, the revocation feed and its
fail-closed rules. This module only turns a gateway's account of a request into an access
and a presentation, and a decision into the answer the gateway expects.
"""

from __future__ import annotations

from dataclasses import dataclass

import structlog
from aiohttp import web

from clients import tokens
from clients.caveats import Access
from clients.errors import BadRequest, SableError, TokenFormatError
from clients.verifier import Decision, Verifier
from server.http import (
    error_for,
    error_response,
    json_response,
    new_app,
    parse_networks,
    read_json,
    request_middleware,
    trusted_peer,
)
from server.launcher import FRONT_DOOR
from verifier.config import VerifierConfig
from verifier.gateways import FORWARD_AUTH, original_request
from verifier.metrics import VerifierMetrics
from verifier.routes import AmbiguousPath, first_match, normalise_path

log = structlog.get_logger("sable.verifier")
VERIFIER = web.AppKey("verifier", Verifier)
METRICS = web.AppKey("verifier_metrics", VerifierMetrics)
BEARER_CHALLENGE = 'Bearer realm="sable"'
DPOP_CHALLENGE = 'DPoP error="invalid_dpop_proof", algs="EdDSA"'


def _denied(reason: str, status: int = 403) -> web.Response:
    resp = error_response("denied", reason, status)
    resp.headers["Sable-Denied"] = _header_safe(reason)
    return resp


def _unauthorized(reason: str, challenge: str = BEARER_CHALLENGE) -> web.Response:
    resp = error_response("unauthorized", reason, 401)
    resp.headers["WWW-Authenticate"] = challenge
    return resp


def _header_safe(text: str) -> str:
    """A reason as one header line: printable ASCII, at most 200 characters."""
    return "".join(ch if 32 <= ord(ch) < 127 else "?" for ch in text)[:200]


def _count(request: web.Request, result: str) -> None:
    request.app[METRICS].decided(result)


class ForwardAuth:
    """`/v1/forward-auth` (SPEC §17). It answers every request of the gateway's fleet, so it
    runs in front of the router (`server.launcher`'s front door) and outside the kit's
    per-request log binding and text checks (it reads no query or path parameter): errors
    are still JSON, never a traceback, and every request is counted. What a request's
    method, host and URI ask for is worked out once per distinct triple (a `Plan`), and a
    presentation is split once per distinct `Authorization` value; both memos are bounded
    and hold only pure results, so the decision itself (cache, feed, time caveats) is
    still made on every request by `clients.verifier`."""

    # At most this many distinct (method, host, URI) triples and Authorization values are
    # remembered, each only when short, so junk from clients holds a few MB at worst.
    MEMO = 2048
    MEMO_CHARS = 2048

    def __init__(self, config: VerifierConfig, metrics: VerifierMetrics):
        self.config = config
        self.metrics = metrics
        self.verifier: Verifier | None = None  # set at start
        self.networks = parse_networks(config.trusted_proxies)
        self.peers: dict[str, bool] = {}  # address -> trusted: a gateway has few
        self.plans: dict[tuple[str, str, str], Plan | str] = {}  # (method, host, uri) -> plan or refusal
        # Authorization value -> (tokens, whether its scheme is DPoP), or why it is refused
        self.presentations: dict[str, tuple[list[str], bool] | str] = {}

    def serves(self, raw_path: str) -> bool:
        """Whether a request target is this endpoint's (the front door's test)."""
        if not raw_path.startswith(FORWARD_AUTH):
            return False
        rest = raw_path[len(FORWARD_AUTH):]
        return not rest or rest[0] == "?" or (rest[0] == "/" and self.config.gateway == "envoy")

    async def __call__(self, request: web.Request) -> web.Response:
        try:
            resp = await self.answer(request)
        except SableError as e:
            resp = error_for(e)
        except Exception:
            log.exception("internal_error", route=FORWARD_AUTH, request_id=request.headers.get("X-Request-Id"))
            resp = error_response("internal", "internal error", 500)
        self.metrics.request(FORWARD_AUTH, request.method, resp.status)
        return resp

    def _trusted(self, remote: str) -> bool:
        verdict = self.peers.get(remote)
        if verdict is None:
            verdict = trusted_peer(remote, self.networks)
            if len(self.peers) >= 1024:
                self.peers.clear()
            self.peers[remote] = verdict
        return verdict

    def _plan(self, method: str, host: str, uri: str) -> Plan | str:
        """What this request asks for, or why it is refused before any token is read."""
        try:
            path = normalise_path(uri)
        except AmbiguousPath:
            return "ambiguous path"
        route = first_match(self.config.routes, host, path)
        if route is None:
            return "no route matches"
        action = route.actions.get(method)
        if action is None:
            return f"no action for method {method}"
        access = {"org": route.org, "action": action}
        for key, given in (("app", route.app), ("host", route.access_host or self.config.host),
                           ("instance", route.access_instance or self.config.instance)):
            if given is not None:
                access[key] = given
        htu = None if route.public_url is None else route.public_url + path
        return Plan(method, access, htu)

    def _refuse(self, reason: str) -> web.Response:
        self.metrics.decided("denied")
        return _denied(reason)

    async def answer(self, request: web.Request) -> web.Response:
        if self.config.gateway is None:
            return _denied("forward-auth needs `gateway` set (nginx, caddy, traefik or envoy)")
        if not self._trusted(request.remote or ""):
            return _denied("forward-auth needs a trusted gateway")
        original = original_request(request, self.config.gateway)
        if original is None:
            return _denied("forward-auth needs a trusted gateway")
        plan = self.plans.get(original)
        if plan is None:
            plan = self._plan(*original)
            if len(original[1]) + len(original[2]) <= self.MEMO_CHARS:
                if len(self.plans) >= self.MEMO:
                    self.plans.clear()
                self.plans[original] = plan
        if isinstance(plan, str):
            return self._refuse(plan)

        headers = request.headers.getall("Authorization", ())
        if len(headers) != 1:
            return _unauthorized("more than one Authorization header" if headers else
                                 "a token is required (Authorization: Bearer ...)")
        given = self.presentations.get(headers[0])
        if given is None:
            given = _presentation(headers[0])
            if len(headers[0]) <= self.MEMO_CHARS:
                if len(self.presentations) >= self.MEMO:
                    self.presentations.clear()
                self.presentations[headers[0]] = given
        if isinstance(given, str):
            return _unauthorized(given)
        presented, dpop_scheme = given
        proofs = request.headers.getall("DPoP", ())
        assert self.verifier is not None
        if not proofs and not dpop_scheme:
            decision = await self.verifier.check(presented, plan.access)
        elif len(proofs) != 1:
            return _unauthorized("a DPoP request carries exactly one DPoP proof header", DPOP_CHALLENGE)
        elif plan.htu is None:  # no proof can be checked on this route, so bound tokens are denied
            decision = await self.verifier.check(presented, plan.access)
        else:
            decision = await self.verifier.check(presented, plan.access, dpop=proofs[0], htm=plan.method, htu=plan.htu)
        return _answer(self.metrics, decision, request)


@dataclass(frozen=True, slots=True)
class Plan:
    """What a forwarded (method, host, URI) asks for: the access, and the `htu` a DPoP proof
    must name (None when its route has no `public_url`)."""
    method: str
    access: dict
    htu: str | None


def _presentation(authorization: str) -> tuple[list[str], bool] | str:
    """The tokens of an `Authorization: Bearer|DPoP a,b` value and whether its scheme is
    DPoP, or why there are none."""
    scheme, _, value = authorization.partition(" ")
    scheme = scheme.lower()
    if scheme not in ("bearer", "dpop") or not value.strip():
        return "a token is required (Authorization: Bearer ...)"
    try:  # each token is parsed on a cache miss, before the authority is asked (clients.verifier)
        return tokens.split_presentation(value), scheme == "dpop"
    except TokenFormatError as e:
        return f"malformed token: {e}"


def _answer(metrics: VerifierMetrics, decision: Decision, request: web.Request) -> web.Response:
    if decision.allowed:
        metrics.decided("allowed")
        return web.Response(status=200, headers={"Sable-Token-Id": decision.id or "-", "Sable-User": decision.user or "-",
                                                 "Sable-Org": decision.org or "-", "Cache-Control": "no-store"})
    if decision.error == "unavailable":
        metrics.decided("unavailable")
        log.warning("verifier_failing_closed", reason=decision.reason, request_id=request.headers.get("X-Request-Id"))
        return error_response("unavailable", "the token service cannot be reached; try again shortly", 503, 1)
    metrics.decided("denied")
    if decision.error == "invalid_dpop_proof":
        return _unauthorized(decision.reason or "invalid DPoP proof", DPOP_CHALLENGE)
    if decision.error in ("malformed_token", "bad_request", "unauthorized"):
        return _unauthorized(decision.reason or "invalid token")
    return _denied(decision.reason or "denied")


async def check(request: web.Request) -> web.Response:
    """`/v1/verify`'s body and answer, from the local cache (SPEC §17)."""
    presented, access, proof = _check_request(await read_json(request))
    decision = await request.app[VERIFIER].check(presented, access, **proof)
    if decision.allowed:
        _count(request, "allowed")
        return json_response({"allowed": True, "id": decision.id, "kind": decision.kind, "org": decision.org,
                              "user": decision.user, "caveats": list(decision.caveats)})
    if decision.error == "unavailable":
        _count(request, "unavailable")
        return error_response("unavailable", "the token service cannot be reached; try again shortly", 503, 1)
    _count(request, "denied")
    if decision.error in ("malformed_token", "bad_request"):
        return error_response(decision.error, decision.reason or "malformed", 400)
    return json_response({"allowed": False, "error": "denied", "message": decision.reason or "denied"}, status=403)


def _check_request(body: dict) -> tuple[list[str], dict, dict]:
    """(tokens, access, proof) of a `/v1/verify` body; BadRequest as the authority says it."""
    given = body.get("tokens")
    if not isinstance(given, list) or not given or not all(isinstance(t, str) for t in given) \
            or len(given) > tokens.MAX_PRESENTATION:
        raise BadRequest(f"tokens must be a list of 1 to {tokens.MAX_PRESENTATION} token strings")
    parsed = Access.from_dict(body.get("access"))  # CaveatError is a 400
    access = {f: getattr(parsed, f) for f in ("org", "action", "app", "host", "instance", "user")}
    proof = body.get("proof")
    if proof is None:
        return given, {k: v for k, v in access.items() if v is not None}, {}
    if not isinstance(proof, dict) or set(proof) != {"dpop", "htm", "htu"} \
            or not all(isinstance(v, str) for v in proof.values()):
        raise BadRequest('proof must be {"dpop": JWS, "htm": METHOD, "htu": URL}, all strings')
    return given, {k: v for k, v in access.items() if v is not None}, dict(proof)


async def readyz(request: web.Request) -> web.Response:
    verifier = request.app[VERIFIER]
    if verifier.cursor is not None and verifier.stats.feed_lag <= verifier.stale_after:
        return json_response({"status": "ready"})
    return error_response("unavailable", "not ready: the revocation feed is not current", 503, 1)


def create_app(config: VerifierConfig) -> web.Application:
    metrics = VerifierMetrics()
    forward = ForwardAuth(config, metrics)

    @web.middleware
    async def hot_path(request: web.Request, handler):
        """forward-auth straight to its handler; every other route through the kit's middleware."""
        if forward.serves(request.raw_path):
            return await forward(request)
        return await request_middleware(request, handler)

    app = new_app(None, metrics, metrics_route=not config.metrics_port, middleware=hot_path)
    app[METRICS] = metrics
    app[FRONT_DOOR] = forward

    async def lifecycle(app: web.Application):
        verifier = Verifier(config.authority, ttl=config.ttl, stale_after=config.stale_after,
                            max_entries=config.max_entries)
        app[VERIFIER] = forward.verifier = verifier
        await verifier.start()
        metrics.watch(verifier)
        await metrics.start()
        yield
        await metrics.stop()
        await verifier.close()

    app.cleanup_ctx.append(lifecycle)
    app.router.add_get("/readyz", readyz)
    app.router.add_post("/v1/check", check)
    async def forward_route(request: web.Request) -> web.Response:  # hot_path answers first; routed all the same
        return await forward(request)

    app.router.add_route("*", FORWARD_AUTH, forward_route)
    if config.gateway == "envoy":  # ext_authz appends the original path to its path_prefix
        app.router.add_route("*", FORWARD_AUTH + "/{tail:.*}", forward_route)
    return app

