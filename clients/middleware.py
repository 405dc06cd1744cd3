"""aiohttp middleware for workloads: every request must present a Sable token (SPEC §7).

    app = web.Application(middlewares=[sable_middleware(verifier, access_for)])

`access_for(request)` returns the access dict (org, action, app, host, instance), and may be
async. Missing or malformed credentials get 401, a denial 403 with the reason, and a check that
failed closed because the authority could not be reached 503 with `Retry-After` (logged, with
no internals in the answer); on success the decision is at `request[DECISION]`.
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


def sable_middleware(verifier: Verifier, access_for, exempt: tuple[str, ...] = ("/healthz",)):
    @web.middleware
    async def middleware(request: web.Request, handler):
        if request.path in exempt:
            return await handler(request)
        value = tokens.bearer_value(request.headers.get("Authorization", ""))
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
        access = access_for(request)
        if inspect.isawaitable(access):
            access = await access
        decision = await verifier.check(presented, access)
        if not decision.allowed:
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


def _error(code: str, message: str, status: int) -> web.Response:
    return web.json_response({"error": code, "message": message}, status=status)


def _challenge(message: str) -> web.Response:
    resp = _error("unauthorized", message, 401)
    resp.headers["WWW-Authenticate"] = 'Bearer realm="sable"'
    return resp
