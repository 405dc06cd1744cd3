"""aiohttp plumbing shared by both services: one error type, JSON errors, request ids,
structured logs and small rate limiters. Nothing here sees a secret's value."""

from __future__ import annotations

import ipaddress
import json
import logging
import re
import sys
import time
import uuid
from collections import OrderedDict

import structlog
from aiohttp import web

MAX_BODY = 64 * 1024

STATUS = {
    "malformed_token": 400,
    "bad_request": 400,
    "unauthorized": 401,
    "denied": 403,
    "not_found": 404,
    "conflict": 409,
    "rate_limited": 429,
}

log = structlog.get_logger("sable")
_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]")


class ServiceError(Exception):
    """The one error a service handler raises; it becomes `{"error", "message"}`."""

    def __init__(self, code: str, message: str, *, status: int | None = None, retry_after: int | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status or STATUS[code]
        self.retry_after = retry_after


def error_response(code: str, message: str, status: int, retry_after: int | None = None) -> web.Response:
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    return web.json_response({"error": code, "message": message}, status=status, headers=headers)


def configure_logging(level: str = "INFO") -> None:
    """structlog to stdout as one JSON object per line, with context vars (request ids)."""
    logging.basicConfig(format="%(message)s", stream=sys.stdout, level=level)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(),
        cache_logger_on_first_use=True,
    )


REQUEST_ID = web.RequestKey("request_id", str)


@web.middleware
async def request_middleware(request: web.Request, handler):
    """Give each request an id, and turn every failure into a JSON error, never a traceback."""
    rid = request.headers.get("X-Request-Id", "")
    if not _REQUEST_ID.fullmatch(rid):
        rid = uuid.uuid4().hex
    request[REQUEST_ID] = rid
    structlog.contextvars.bind_contextvars(request_id=rid)
    try:
        try:
            resp = await handler(request)
        except ServiceError as e:
            resp = error_response(e.code, e.message, e.status, e.retry_after)
        except web.HTTPRequestEntityTooLarge:
            resp = error_response("bad_request", f"request body is larger than {MAX_BODY} bytes", 413)
        except web.HTTPException as e:
            if e.status < 400:
                raise
            code = {404: "not_found", 405: "bad_request"}.get(e.status, "bad_request")
            resp = error_response(code, e.reason or "bad request", e.status)
        except Exception:
            log.exception("internal_error", path=request.path)
            resp = error_response("internal", "internal error", 500)
        resp.headers["X-Request-Id"] = rid
        return resp
    finally:
        structlog.contextvars.unbind_contextvars("request_id")


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def read_json(request: web.Request) -> dict:
    """The request body as a JSON object, or a 400/413 ServiceError."""
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise ServiceError("bad_request", f"request body is larger than {MAX_BODY} bytes", status=413)
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise ServiceError("bad_request", f"request body is larger than {MAX_BODY} bytes", status=413) from None
    try:
        body = json.loads(raw)
        # A lone UTF-16 surrogate (\ud800) parses but cannot be stored or hashed: refuse it here.
        if _SURROGATE.search(raw):
            json.dumps(body, ensure_ascii=False).encode("utf-8")
    except (ValueError, UnicodeError, RecursionError):  # deep nesting is bad input too
        raise ServiceError("bad_request", "body is not valid JSON text") from None
    if not isinstance(body, dict):
        raise ServiceError("bad_request", "body must be a JSON object")
    return body


def bearer(request: web.Request) -> str | None:
    value = request.headers.get("Authorization", "")
    scheme, _, rest = value.partition(" ")
    if scheme.lower() != "bearer" or not rest.strip():
        return None
    return rest.strip()


async def require_admin(request: web.Request, is_admin) -> None:
    """401 unless the request bears a credential that `is_admin` (async) accepts."""
    if not await is_admin(bearer(request)):
        raise ServiceError("unauthorized", "an admin credential (Bearer sable_adm_...) is required")


def client_address(request: web.Request) -> str:
    return request.remote or "unknown"


def throttle_key(address: str) -> str:
    """The unit a rate limit counts: the address, or its /64 for IPv6 (one host's usual share)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if ip.version == 4:
        return str(ip)
    if ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ipaddress.ip_network(f"{ip}/64", strict=False))


def json_dumps(data) -> str:
    return json.dumps(data, separators=(",", ":"))


class SlidingCounter:
    """Counts events per key within a window, with bounded memory (oldest keys dropped)."""

    def __init__(self, limit: int, window: float, max_keys: int = 100_000):
        self.limit = limit
        self.window = window
        self.max_keys = max_keys
        self._hits: OrderedDict[str, list[float]] = OrderedDict()

    def _live(self, key: str, now: float) -> list[float]:
        hits = self._hits.get(key)
        if hits is None:
            return []
        cutoff = now - self.window
        while hits and hits[0] <= cutoff:
            hits.pop(0)
        return hits

    def retry_after(self, key: str, now: float | None = None) -> int | None:
        """Seconds to wait if `key` is over the limit, else None."""
        now = time.monotonic() if now is None else now
        hits = self._live(key, now)
        if len(hits) >= self.limit:
            return max(1, int(hits[0] + self.window - now) + 1)
        return None

    def add(self, key: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        hits = self._live(key, now)
        hits.append(now)
        self._hits[key] = hits
        self._hits.move_to_end(key)
        while len(self._hits) > self.max_keys:
            self._hits.popitem(last=False)

    def clear(self, key: str) -> None:
        self._hits.pop(key, None)
