"""ID tokens: JWTs an issuer signs with the keys its discovery document publishes. One
verification serves both of the discharger's uses: people signing in through an identity
provider (SPEC §15, `discharger.oidc`) and CI jobs proving who they are to service principals
(SPEC §16, `discharger.principals`). Which claims matter beyond the ones here stays with each.

Everything that comes from an issuer is fetched here, with a 5 s timeout, a 1 MiB cap and no
redirect to another host. A token is believed only when its algorithm is one the issuer
announces and one of RS256, PS256, ES256 or EdDSA (never `none` or an HMAC), its key's type
fits that algorithm, its signature verifies (joserfc checks it), it names the issuer exactly,
and `exp`, `iat` and `nbf` hold with 60 s of leeway.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import time
import warnings
from typing import Any
from urllib.parse import urljoin, urlsplit

import aiohttp
import structlog
from joserfc import jws
from joserfc.jwk import SecurityWarning, import_key

from clients.errors import SableError, Unavailable

log = structlog.get_logger("sable.discharger.id_tokens")

TIMEOUT = 5.0
MAX_DOCUMENT = 1 << 20
LEEWAY = 60  # seconds, on iat, exp and nbf (SPEC §15)
JWKS_REFETCH = 60.0  # an unknown kid refetches the keys at most this often
MAX_TOKEN = 16 * 1024
# The algorithms Sable accepts, and the key type each needs. "Ed25519" is RFC 9864's name for EdDSA.
ALGORITHMS = {"RS256": "RSA", "PS256": "RSA", "ES256": "EC", "EdDSA": "OKP", "Ed25519": "OKP"}


class SignInRefused(SableError):
    """An issuer's answer cannot be believed; the message says why in human terms and
    `reason` in a word (for the audit)."""

    code = "denied"


async def fetch_json(http: aiohttp.ClientSession, url: str, *, data: dict | None = None,
                     headers: dict | None = None) -> Any:
    """GET (or POST a form to) `url` and read a JSON document of at most 1 MiB, following a
    redirect only to the same host. Unavailable for anything else."""
    origin = urlsplit(url)[:2]  # scheme and host: no redirect to another host, nor down to http
    for _ in range(3):
        method = "POST" if data is not None else "GET"
        async with http.request(method, url, data=data, headers=headers, allow_redirects=False,
                                timeout=aiohttp.ClientTimeout(total=TIMEOUT)) as resp:
            if resp.status in (301, 302, 303, 307, 308) and method == "GET":
                url = urljoin(url, resp.headers.get("Location", ""))
                if urlsplit(url)[:2] != origin:
                    raise Unavailable("the provider redirected to another host")
                continue
            body = bytearray()
            async for chunk in resp.content.iter_chunked(1 << 16):  # read(n) may return less: loop
                body += chunk
                if len(body) > MAX_DOCUMENT:
                    raise Unavailable("the provider's answer is larger than 1 MiB")
            try:
                document = json.loads(body)
            except ValueError:
                raise Unavailable(f"the provider answered {resp.status} without JSON") from None
            if resp.status >= 400:
                return {"__status": resp.status, **(document if isinstance(document, dict) else {})}
            return document
    raise Unavailable("the provider redirected too often")


def json_client() -> aiohttp.ClientSession:
    """The client every fetch from an issuer goes through. No cookie jar: one client serves
    every caller, so nothing may carry over from one exchange to the next."""
    return aiohttp.ClientSession(headers={"Accept": "application/json"}, cookie_jar=aiohttp.DummyCookieJar())


class Issuer:
    """One issuer and what was learned from it: its discovery document and keys."""

    REQUIRED: tuple[str, ...] = ("jwks_uri",)  # what its discovery document must name
    LOGGED_AS = "issuer"  # log events issuer_discovered, issuer_unavailable

    def __init__(self, url: str):
        self.url = url
        self.metadata: dict | None = None
        self.problem: str | None = "not discovered yet"
        self.jwks: dict = {}  # kid -> JWK
        self.jwks_at = 0.0
        self.discovered_at = 0.0
        self.refetch_every = JWKS_REFETCH

    @property
    def available(self) -> bool:
        return self.metadata is not None

    async def discover(self, http: aiohttp.ClientSession) -> None:
        """Read `{issuer}/.well-known/openid-configuration` (its `issuer` must be ours exactly)
        and the keys. A failure keeps what was known and says what went wrong."""
        try:
            doc = await fetch_json(http, self.url.rstrip("/") + "/.well-known/openid-configuration")
            if not isinstance(doc, dict) or "__status" in doc:
                raise Unavailable("its discovery document could not be read")
            if doc.get("issuer") != self.url:
                raise Unavailable("its discovery document names another issuer")
            for key in (*self.REQUIRED, "userinfo_endpoint"):
                if key != "userinfo_endpoint" and not isinstance(doc.get(key), str):
                    raise Unavailable(f"its discovery document has no {key}")
                if key in doc and not secure(doc[key]):  # keys and codes travel there
                    raise Unavailable(f"its {key} is not https (http only for a loopback host)")
            jwks = await self._read_keys(http, doc["jwks_uri"])
            # Only a complete discovery replaces what was known: a failed one keeps the last.
            self.metadata, self.jwks, self.jwks_at = doc, jwks, time.monotonic()
            self.problem, self.discovered_at = None, time.monotonic()
            log.info(f"{self.LOGGED_AS}_discovered", **self.named())
        except (TimeoutError, Unavailable, aiohttp.ClientError, OSError) as e:
            self.problem = e.message if isinstance(e, SableError) else "it could not be reached"
            log.warning(f"{self.LOGGED_AS}_unavailable", **self.named(), problem=self.problem)

    def named(self) -> dict:
        return {"issuer": self.url}

    @staticmethod
    async def _read_keys(http: aiohttp.ClientSession, url: str) -> dict:
        doc = await fetch_json(http, url)
        keys = doc.get("keys") if isinstance(doc, dict) else None
        if not isinstance(keys, list):
            raise Unavailable("its key set could not be read")
        jwks = {k["kid"]: k for k in keys if isinstance(k, dict) and isinstance(k.get("kid"), str)}
        unnamed = [k for k in keys if isinstance(k, dict) and "kid" not in k]
        if len(unnamed) == 1:
            jwks[""] = unnamed[0]  # an issuer with one unnamed key
        return jwks

    async def _fetch_keys(self, http: aiohttp.ClientSession) -> None:
        assert self.metadata is not None
        self.jwks = await self._read_keys(http, self.metadata["jwks_uri"])
        self.jwks_at = time.monotonic()

    async def verify(self, http: aiohttp.ClientSession | None, token: str, now: float) -> dict:
        """The claims of a token this issuer signed, with `iss`, `exp`, `iat` and `nbf` checked;
        SignInRefused naming the check that failed. An unknown key id refetches the keys
        (the issuer may have rotated them), at most once a minute."""
        header = _header(token)
        alg = header.get("alg")
        announced = (self.metadata or {}).get("id_token_signing_alg_values_supported", ["RS256"])
        if not isinstance(alg, str) or alg not in ALGORITHMS or not isinstance(announced, list) or alg not in announced:
            raise bad("its algorithm is not one Sable accepts", "id_token_alg")
        kid = header.get("kid", "")
        if not isinstance(kid, str):
            raise bad("its key id is malformed", "id_token_kid")
        if kid not in self.jwks and http is not None and time.monotonic() - self.jwks_at >= self.refetch_every:
            self.jwks_at = time.monotonic()  # a failing refetch is limited too
            try:
                await self._fetch_keys(http)
            except (TimeoutError, Unavailable, aiohttp.ClientError, OSError):
                pass
        jwk = self.jwks.get(kid)
        if jwk is None:
            raise bad("it was signed with a key the provider does not publish", "id_token_key")
        if jwk.get("kty") != ALGORITHMS[alg] or ("alg" in jwk and jwk["alg"] != alg) \
                or jwk.get("use", "sig") != "sig":
            raise bad("its key does not fit its algorithm", "id_token_key")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", SecurityWarning)  # joserfc prefers "Ed25519" to "EdDSA"
                key = import_key(jwk)
                signed = jws.deserialize_compact(token, key, algorithms=[alg])
        except Exception:  # the key and the token are the issuer's and the caller's: any defect refuses
            raise bad("its signature does not verify", "id_token_signature") from None
        try:
            claims = json.loads(signed.payload, parse_constant=_no_constant)  # no NaN or Infinity
        except (ValueError, TypeError, RecursionError):
            raise bad("its claims are malformed", "id_token_claims") from None
        if not isinstance(claims, dict):
            raise bad("its claims are malformed", "id_token_claims")
        if claims.get("iss") != self.url:
            raise bad("it was issued by another provider", "id_token_iss")
        exp, iat, nbf = claims.get("exp"), claims.get("iat"), claims.get("nbf")
        if not _number(exp) or now > exp + LEEWAY:  # type: ignore[operator]  # a number, just checked
            raise bad("it has expired", "id_token_exp")
        if not _number(iat) or iat > now + LEEWAY:  # type: ignore[operator]
            raise bad("it was issued in the future", "id_token_iat")
        if nbf is not None and (not _number(nbf) or nbf > now + LEEWAY):
            raise bad("it is not valid yet", "id_token_nbf")
        return claims


def _number(value: Any) -> bool:
    """A time claim: a finite number within ±2^53 (JSON's exact integers), not a boolean."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return abs(value) < 2**53 if isinstance(value, int) else math.isfinite(value) and abs(value) < 2**53


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number")


def audiences(claims: dict) -> list:
    aud = claims.get("aud")
    return [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []


def secure(url: object) -> bool:
    """https, or http to a loopback host (as for the issuer itself)."""
    if not isinstance(url, str):
        return False
    parts = urlsplit(url)
    return parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in ("127.0.0.1", "::1", "localhost"))


def bad(why: str, reason: str) -> SignInRefused:
    return SignInRefused(f"the provider's answer could not be trusted: {why}", reason=reason)


def _header(token: str) -> dict:
    if not isinstance(token, str) or len(token) > MAX_TOKEN or token.count(".") != 2:
        raise bad("it is not a signed token", "id_token_format")
    try:
        raw = token.split(".", 1)[0]
        header = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
    except (ValueError, TypeError, RecursionError):
        raise bad("it is not a signed token", "id_token_format") from None
    if not isinstance(header, dict):
        raise bad("it is not a signed token", "id_token_format")
    return header


def unverified_claims(token: str) -> dict:
    """The payload of a compact JWS, not verified: only to pick which policies could apply
    (its `iss`), never to believe. {} if it cannot be read."""
    try:
        raw = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
    except (ValueError, TypeError, IndexError, AttributeError, RecursionError):
        return {}
    return claims if isinstance(claims, dict) else {}


REDISCOVER = 3600.0  # a known issuer's discovery is read again this often
RETRY_FAILED = 60.0  # one that could not be discovered, at most this often


class Issuers:
    """Issuers met on demand (the CI issuers that trust policies name): each discovered at its
    first use, again hourly, and at most once a minute while it cannot be reached."""

    def __init__(self) -> None:
        self._all: dict[str, Issuer] = {}
        self._tried: dict[str, float] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._http: aiohttp.ClientSession | None = None

    @property
    def http(self) -> aiohttp.ClientSession:
        if self._http is None:
            self._http = json_client()
        return self._http

    async def get(self, url: str) -> Issuer:
        """The issuer at `url`, discovered; Unavailable while it cannot be. Requests that
        arrive while its first discovery runs wait for it rather than fail."""
        issuer = self._all.get(url)
        if issuer is None:
            issuer = self._all[url] = Issuer(url)
            self._locks[url] = asyncio.Lock()
        lock = self._locks[url]
        if self._due(url, issuer) or (lock.locked() and not issuer.available):
            async with lock:  # one discovery at a time
                if self._due(url, issuer):
                    self._tried[url] = time.monotonic()
                    await issuer.discover(self.http)
        if not issuer.available:
            raise Unavailable(f"the issuer {url} cannot be used now: {issuer.problem}", retry_after=int(RETRY_FAILED))
        return issuer

    def _due(self, url: str, issuer: Issuer) -> bool:
        """Whether to discover: never done, or an hour old, and not tried in the last minute."""
        now = time.monotonic()
        stale = not issuer.available or now - issuer.discovered_at >= REDISCOVER
        return stale and now - self._tried.get(url, -RETRY_FAILED) >= RETRY_FAILED

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
