"""GitHub's secret-scanning partner protocol (SPEC §18), for both services: the signature on a
report, the report itself, and the answer's shape. What a service does with a found token is
its own domain's business (`authority.leaks`, `discharger.leaks`).

GitHub signs the raw body with ECDSA P-256 / SHA-256 (DER, base64) and names the key in
`Github-Public-Key-Identifier`. The keys are published as `{"public_keys": [{"key_identifier",
"key" (PEM), "is_current"}]}`; any listed key verifies, current or not. They are fetched once,
kept, and fetched again when a report names a key not seen, at most once a minute (a stream of
made-up identifiers must not turn into a stream of fetches).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import time
from dataclasses import dataclass

import aiohttp
import orjson
import structlog
from aiohttp import web
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from clients.errors import BadRequest, Unauthorized, Unavailable
from server.http import TooLarge, read_raw

log = structlog.get_logger("sable.secret_scanning")
GITHUB_KEYS_URL = "https://api.github.com/meta/public_keys/secret_scanning"
MAX_REPORT_BYTES = 1 << 20
MAX_ITEMS = 1000
REFETCH_EVERY = 60.0  # seconds between fetches caused by unknown key identifiers
RETRY_AFTER_FAILURE = 5.0  # seconds a failed fetch is not retried (reports meanwhile: 503)
MAX_KEYS_DOCUMENT = 1 << 20
KEY_ID_HEADER = "Github-Public-Key-Identifier"
SIGNATURE_HEADER = "Github-Public-Key-Signature"


class TooManyItems(TooLarge):
    """A report of more than MAX_ITEMS items (413)."""


@dataclass(frozen=True, slots=True)
class Reported:
    """One item of a report: the string found, and where."""
    token: str
    type: str
    url: str
    source: str

    @property
    def token_hash(self) -> str:
        return hashlib.sha256(self.token.encode()).hexdigest()


class GitHubKeys:
    """The public keys reports are checked against, fetched from `url`."""

    def __init__(self, url: str, timeout: float = 10.0):
        self.url = url
        self.timeout = timeout
        self.keys: dict[str, ec.EllipticCurvePublicKey] = {}
        self.fetched_at: float | None = None  # the last fetch that succeeded
        self.failed_at: float | None = None  # the last that did not: retried after RETRY_AFTER_FAILURE
        self._lock = asyncio.Lock()

    async def check(self, body: bytes, key_id: str | None, signature: str | None) -> None:
        """Unauthorized unless `signature` is a valid signature of `body` by the key named."""
        if not key_id or not signature or len(key_id) > 256 or len(signature) > 1024:
            raise Unauthorized("a GitHub-signed report is required (Github-Public-Key-Identifier and -Signature)")
        key = self.keys.get(key_id)
        if key is None:
            key = await self._refetched(key_id)
        try:
            der = base64.b64decode(signature, validate=True)
            key.verify(der, body, ec.ECDSA(hashes.SHA256()))
        except (InvalidSignature, ValueError, binascii.Error):
            raise Unauthorized("the report's signature does not verify") from None

    async def _refetched(self, key_id: str) -> ec.EllipticCurvePublicKey:
        async with self._lock:
            now = time.monotonic()
            if key_id not in self.keys and (self.fetched_at is None or now - self.fetched_at >= REFETCH_EVERY):
                if self.failed_at is not None and now - self.failed_at < RETRY_AFTER_FAILURE:
                    raise Unavailable("GitHub's secret-scanning keys cannot be fetched; try again shortly",
                                      retry_after=int(RETRY_AFTER_FAILURE))
                try:
                    self.keys = await self._fetch()
                except Unavailable:
                    self.failed_at = time.monotonic()
                    raise
                self.fetched_at, self.failed_at = time.monotonic(), None
        key = self.keys.get(key_id)
        if key is None:
            raise Unauthorized("the report names a key GitHub does not publish")
        return key

    async def _fetch(self) -> dict[str, ec.EllipticCurvePublicKey]:
        """Every usable key in the document; Unavailable (503: GitHub retries) if it cannot be read."""
        try:
            async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http, http.get(
                    self.url, allow_redirects=False, timeout=aiohttp.ClientTimeout(total=self.timeout),
                    headers={"Accept": "application/json"}) as resp:
                if resp.status != 200:
                    raise Unavailable(f"GitHub's secret-scanning keys answered {resp.status}")
                raw = await resp.content.read(MAX_KEYS_DOCUMENT + 1)
        except (aiohttp.ClientError, OSError, TimeoutError):
            log.warning("secret_scanning_keys_unreachable")
            raise Unavailable("GitHub's secret-scanning keys cannot be fetched; try again shortly") from None
        try:
            listed = orjson.loads(raw)["public_keys"] if len(raw) <= MAX_KEYS_DOCUMENT else None
        except (orjson.JSONDecodeError, TypeError, KeyError):
            listed = None
        if not isinstance(listed, list):
            raise Unavailable("GitHub's secret-scanning keys document cannot be read")
        keys = {}
        for entry in listed:
            try:
                key = serialization.load_pem_public_key(entry["key"].encode())
                if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1) \
                        and isinstance(entry["key_identifier"], str):
                    keys[entry["key_identifier"]] = key
            except (KeyError, TypeError, AttributeError, ValueError):
                continue  # one unusable entry does not spoil the others
        log.info("secret_scanning_keys_fetched", keys=len(keys))
        return keys


def parse_report(body: bytes) -> list[Reported]:
    """A report's items; BadRequest (TooManyItems: 413) if it is not one."""
    try:
        items = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise BadRequest("a report is a JSON array of {token, type, url, source}") from None
    if not isinstance(items, list):
        raise BadRequest("a report is a JSON array of {token, type, url, source}")
    if len(items) > MAX_ITEMS:
        raise TooManyItems(f"a report holds at most {MAX_ITEMS} items")
    out = []
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("token"), str) or not item["token"]:
            raise BadRequest("each item needs a token string")
        fields = [item.get(k, "") for k in ("type", "url", "source")]
        if not all(isinstance(f, str) and len(f) <= 2048 for f in fields):
            raise BadRequest("type, url and source are strings of at most 2,048 characters")
        out.append(Reported(item["token"], *fields))
    return out


def answer(items: list[Reported], genuine: list[bool]) -> list[dict]:
    """GitHub's expected answer: one label per item, naming it by hash, never by value."""
    return [{"token_hash": item.token_hash, "token_type": item.type,
             "label": "true_positive" if real else "false_positive"} for item, real in zip(items, genuine, strict=True)]


async def read_report(request: web.Request, keys: GitHubKeys) -> list[Reported]:
    """A signed report from the request: 413 over 1 MiB or 1,000 items, 401 if not GitHub's."""
    key_id, signature = request.headers.get(KEY_ID_HEADER), request.headers.get(SIGNATURE_HEADER)
    if not key_id or not signature:  # refused before the body is read
        raise Unauthorized("a GitHub-signed report is required (Github-Public-Key-Identifier and -Signature)")
    body = await read_raw(request, MAX_REPORT_BYTES)
    await keys.check(body, key_id, signature)
    return parse_report(body)

