"""aiohttp middleware for workloads: every request must present a Sable token (SPEC §7).

    app = web.Application(middlewares=[sable_middleware(verifier, access_for)])

`access_for(request)` returns the access dict (org, action, app, host, instance), and may be
async. Missing or malformed credentials get 401, a denial 403 with the reason, and a check that
failed closed because the authority could not be reached 503 with `Retry-After` (logged, with
no internals in the answer); on success the decision is at `request[DECISION]`.

Tokens bound to a key (`cnf-jkt`, SPEC §14) come as `Authorization: DPoP <token>[,...]` with
one `DPoP` proof header. The URL a proof must name is `public_url` plus the request's path,
never built from the `Host` header (which the client chooses); without `public_url`, bound
tokens are refused. A missing or bad proof gets 401 with `WWW-Authenticate: DPoP`.
"""

from __future__ import annotations

import inspect

import structlog
from aiohttp import web

from clients import tokens
from clients.errors import TokenFormatError
from clients.verifier import Decision, Verifier

log = structlog.get_logger("sable.middleware")
DECISION = web.RequestKey("sable_decision", Decision)


def sable_middleware(verifier: Verifier, access_for, exempt: tuple[str, ...] = ("/healthz",),
                     public_url: str | None = None):
    base = public_url.rstrip("/") if public_url else None

    @web.middleware
    async def middleware(request: web.Request, handler):
        if request.path in exempt:
            return await handler(request)
        scheme, value = _credentials(request.headers.get("Authorization", ""))
        if value is None:
            return _challenge("missing bearer token")
        try:
            presented = tokens.split_presentation(value)
            for text in presented:
                tokens.parse(text)
        except TokenFormatError as e:
            return _challenge(f"malformed token: {e}")
        if not presented:
            return _challenge("missing bearer token")
        proof: dict = {}
        if scheme == "dpop":
            proofs = request.headers.getall("DPoP", [])
            if len(proofs) != 1:
                return _dpop_challenge("a DPoP request carries exactly one DPoP proof header")
            if base is not None:  # else no proof is checked, so bound tokens are refused
                proof = {"dpop": proofs[0], "htm": request.method, "htu": base + request.rel_url.raw_path}
        access = access_for(request)
        if inspect.isawaitable(access):
            access = await access
        decision = await verifier.check(presented, access, **proof)
        if not decision.allowed:
            if decision.error == "invalid_dpop_proof":
                return _dpop_challenge(decision.reason or "invalid DPoP proof")
            if decision.error in ("malformed_token", "bad_request"):
                return _challenge(decision.reason or "malformed credentials")
            if decision.error == "unavailable":  # failed closed: not a denial, and worth a retry
                log.warning("sable_check_unavailable", reason=decision.reason)
                resp = _error("unavailable", "the token service cannot be reached; try again shortly", 503)
                resp.headers["Retry-After"] = "1"
                return resp
            return _error("denied", decision.reason or "denied", 403)
        request[DECISION] = decision
        return await handler(request)

    return middleware


def _credentials(header: str) -> tuple[str, str | None]:
    """(scheme, credentials) of an `Authorization: Bearer ...` or `DPoP ...` value."""
    scheme, _, rest = header.partition(" ")
    scheme = scheme.lower()
    if scheme not in ("bearer", "dpop") or not rest.strip():
        return scheme, None
    return scheme, rest.strip()


def _error(code: str, message: str, status: int) -> web.Response:
    return web.json_response({"error": code, "message": message}, status=status)


def _challenge(message: str) -> web.Response:
    resp = _error("unauthorized", message, 401)
    resp.headers["WWW-Authenticate"] = 'Bearer realm="sable"'
    return resp


def _dpop_challenge(message: str) -> web.Response:
    resp = _error("unauthorized", message, 401)
    resp.headers["WWW-Authenticate"] = 'DPoP error="invalid_dpop_proof", algs="EdDSA"'
    return resp
