"""The discharger as an OpenID Connect relying party (SPEC §15): discovery, the provider's keys,
the authorization code flow with PKCE S256, and the ID token's checks.

Everything that comes from a provider is fetched here, with a 5 s timeout, a 1 MiB cap and no
redirect to another host. An ID token is believed only when its algorithm is one the provider
announces and one of RS256, PS256, ES256 or EdDSA (never `none` or an HMAC, whose key would be
the client secret), its key's type fits that algorithm, and `iss`, `aud`, `azp`, `exp`, `iat`
and `nonce` hold. joserfc checks the signature.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import time
import warnings
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode, urljoin, urlsplit

import aiohttp
import structlog
from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import SecurityWarning, import_key

from clients.errors import NotFound, SableError, Unavailable
from discharger.providers import ProviderSettings
from server.periodic import Periodic

log = structlog.get_logger("sable.discharger.oidc")

TIMEOUT = 5.0
MAX_DOCUMENT = 1 << 20
LEEWAY = 60  # seconds, on iat and exp (SPEC §15)
REDISCOVER = 3600.0
RETRY_FAILED = 60.0  # a provider that could not be discovered is tried again this often
JWKS_REFETCH = 60.0  # an unknown kid refetches the keys at most this often
MAX_TOKEN = 16 * 1024
# The algorithms Sable accepts, and the key type each needs. "Ed25519" is RFC 9864's name for EdDSA.
ALGORITHMS = {"RS256": "RSA", "PS256": "RSA", "ES256": "EC", "EdDSA": "OKP", "Ed25519": "OKP"}


class SignInRefused(SableError):
    """The provider's answer cannot sign anyone in; the message says why in human terms and
    `reason` in a word (for the audit)."""

    code = "denied"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def challenge(verifier: str) -> str:
    """PKCE S256 (RFC 7636)."""
    return _b64url(hashlib.sha256(verifier.encode()).digest())


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


@dataclass
class Provider:
    """One configured provider and what was learned from it."""

    settings: ProviderSettings
    metadata: dict | None = None
    problem: str | None = "not discovered yet"
    jwks: dict = field(default_factory=dict)  # kid -> JWK
    jwks_at: float = 0.0
    discovered_at: float = 0.0

    @property
    def name(self) -> str:
        return self.settings.name

    @property
    def available(self) -> bool:
        return self.metadata is not None

    async def discover(self, http: aiohttp.ClientSession) -> None:
        """Read `{issuer}/.well-known/openid-configuration` (its `issuer` must be ours exactly)
        and the keys. A failure keeps what was known and says what went wrong."""
        issuer = self.settings.issuer
        try:
            doc = await fetch_json(http, issuer.rstrip("/") + "/.well-known/openid-configuration")
            if not isinstance(doc, dict) or "__status" in doc:
                raise Unavailable("its discovery document could not be read")
            if doc.get("issuer") != issuer:
                raise Unavailable("its discovery document names another issuer")
            for key in ("authorization_endpoint", "token_endpoint", "jwks_uri", "userinfo_endpoint"):
                if key != "userinfo_endpoint" and not isinstance(doc.get(key), str):
                    raise Unavailable(f"its discovery document has no {key}")
                if key in doc and not _secure(doc[key]):  # keys and codes travel there
                    raise Unavailable(f"its {key} is not https (http only for a loopback host)")
            jwks = await self._read_keys(http, doc["jwks_uri"])
            # Only a complete discovery replaces what was known: a failed one keeps the last.
            self.metadata, self.jwks, self.jwks_at = doc, jwks, time.monotonic()
            self.problem, self.discovered_at = None, time.monotonic()
            log.info("idp_discovered", provider=self.name)
        except (TimeoutError, Unavailable, aiohttp.ClientError, OSError) as e:
            self.problem = e.message if isinstance(e, SableError) else "it could not be reached"
            log.warning("idp_unavailable", provider=self.name, problem=self.problem)

    @staticmethod
    async def _read_keys(http: aiohttp.ClientSession, url: str) -> dict:
        doc = await fetch_json(http, url)
        keys = doc.get("keys") if isinstance(doc, dict) else None
        if not isinstance(keys, list):
            raise Unavailable("its key set could not be read")
        jwks = {k["kid"]: k for k in keys if isinstance(k, dict) and isinstance(k.get("kid"), str)}
        unnamed = [k for k in keys if isinstance(k, dict) and "kid" not in k]
        if len(unnamed) == 1:
            jwks[""] = unnamed[0]  # a provider with one unnamed key
        return jwks

    async def _fetch_keys(self, http: aiohttp.ClientSession) -> None:
        assert self.metadata is not None
        self.jwks = await self._read_keys(http, self.metadata["jwks_uri"])
        self.jwks_at = time.monotonic()

    def authorization_url(self, state: str, nonce: str, verifier: str, redirect_uri: str) -> str:
        assert self.metadata is not None
        query = urlencode({
            "response_type": "code", "client_id": self.settings.client_id, "redirect_uri": redirect_uri,
            "scope": " ".join(self.settings.scopes), "state": state, "nonce": nonce,
            "code_challenge": challenge(verifier), "code_challenge_method": "S256"})
        endpoint = self.metadata["authorization_endpoint"]
        return endpoint + ("&" if "?" in endpoint else "?") + query

    async def redeem(self, http: aiohttp.ClientSession, code: str, verifier: str, redirect_uri: str,
                     nonce: str) -> dict:
        """Exchange the code (client_secret_basic) and return the ID token's claims, checked,
        with the groups claim from userinfo when the ID token has none."""
        assert self.metadata is not None
        s = self.settings
        # client_secret_basic: each part form-encoded first (RFC 6749 §2.3.1)
        auth = aiohttp.encode_basic_auth(quote(s.client_id, safe=""), quote(s.client_secret, safe=""))
        try:
            answer = await fetch_json(http, self.metadata["token_endpoint"], headers={"Authorization": auth}, data={
                "grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri,
                "code_verifier": verifier})
        except (TimeoutError, aiohttp.ClientError, OSError):
            raise Unavailable(f"{s.display}: the provider could not be reached") from None
        if not isinstance(answer, dict) or "__status" in answer or not isinstance(answer.get("id_token"), str):
            error = answer.get("error") if isinstance(answer, dict) else None
            raise SignInRefused("the provider did not accept this sign-in; start again",
                                reason=f"token_endpoint:{error}" if isinstance(error, str) else "token_endpoint")
        claims = await self.check_id_token(http, answer["id_token"], nonce)
        if s.groups_claim not in claims and isinstance(answer.get("access_token"), str) \
                and isinstance(self.metadata.get("userinfo_endpoint"), str):
            try:
                info = await fetch_json(http, self.metadata["userinfo_endpoint"],
                                        headers={"Authorization": f"Bearer {answer['access_token']}"})
            except (aiohttp.ClientError, TimeoutError, OSError):
                raise Unavailable(f"{s.display}: the provider could not be reached") from None
            if isinstance(info, dict) and info.get("sub") == claims["sub"] and s.groups_claim in info:
                claims[s.groups_claim] = info[s.groups_claim]
        return claims

    async def check_id_token(self, http: aiohttp.ClientSession | None, token: str, nonce: str,
                             now: float | None = None) -> dict:
        """The claims of an ID token meant for us, or SignInRefused naming the check that failed."""
        header = _header(token)
        alg = header.get("alg")
        announced = (self.metadata or {}).get("id_token_signing_alg_values_supported", ["RS256"])
        if alg not in ALGORITHMS or alg not in announced:
            raise _bad("its algorithm is not one Sable accepts", "id_token_alg")
        kid = header.get("kid", "")
        if not isinstance(kid, str):
            raise _bad("its key id is malformed", "id_token_kid")
        if kid not in self.jwks and http is not None and time.monotonic() - self.jwks_at >= JWKS_REFETCH:
            self.jwks_at = time.monotonic()  # a failing refetch is limited too
            try:
                await self._fetch_keys(http)  # the provider may have rotated its keys
            except (TimeoutError, Unavailable, aiohttp.ClientError, OSError):
                pass
        jwk = self.jwks.get(kid)
        if jwk is None:
            raise _bad("it was signed with a key the provider does not publish", "id_token_key")
        if jwk.get("kty") != ALGORITHMS[alg] or ("alg" in jwk and jwk["alg"] != alg) \
                or jwk.get("use", "sig") != "sig":
            raise _bad("its key does not fit its algorithm", "id_token_key")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", SecurityWarning)  # joserfc prefers "Ed25519" to "EdDSA"
                key = import_key(jwk)
                signed = jws.deserialize_compact(token, key, algorithms=[alg])
            claims = json.loads(signed.payload)
        except (JoseError, ValueError, TypeError):
            raise _bad("its signature does not verify", "id_token_signature") from None
        if not isinstance(claims, dict):
            raise _bad("its claims are malformed", "id_token_claims")
        self._check_claims(claims, nonce, time.time() if now is None else now)
        return claims

    def _check_claims(self, claims: dict, nonce: str, now: float) -> None:
        s = self.settings
        if claims.get("iss") != s.issuer:
            raise _bad("it was issued by another provider", "id_token_iss")
        aud = claims.get("aud")
        audiences = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
        if s.client_id not in audiences:
            raise _bad("it was issued for another application", "id_token_aud")
        if ("azp" in claims or len(audiences) > 1) and claims.get("azp") != s.client_id:  # OIDC Core 3.1.3.7
            raise _bad("it was issued for another application", "id_token_azp")
        exp, iat = claims.get("exp"), claims.get("iat")
        if not isinstance(exp, (int, float)) or isinstance(exp, bool) or now > exp + LEEWAY:
            raise _bad("it has expired", "id_token_exp")
        if not isinstance(iat, (int, float)) or isinstance(iat, bool) or iat > now + LEEWAY:
            raise _bad("it was issued in the future", "id_token_iat")
        nbf = claims.get("nbf")
        if nbf is not None and (not isinstance(nbf, (int, float)) or isinstance(nbf, bool) or nbf > now + LEEWAY):
            raise _bad("it is not valid yet", "id_token_nbf")
        if not isinstance(claims.get("nonce"), str) or claims["nonce"] != nonce:
            raise _bad("it belongs to another sign-in", "id_token_nonce")
        if not isinstance(claims.get("sub"), str) or not claims["sub"] or len(claims["sub"]) > 255:
            raise _bad("it names nobody", "id_token_sub")


def _secure(url: object) -> bool:
    """https, or http to a loopback host (as for the issuer itself)."""
    if not isinstance(url, str):
        return False
    parts = urlsplit(url)
    return parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in ("127.0.0.1", "::1", "localhost"))


def _bad(why: str, reason: str) -> SignInRefused:
    return SignInRefused(f"the provider's answer could not be trusted: {why}", reason=reason)


def _header(token: str) -> dict:
    if not isinstance(token, str) or len(token) > MAX_TOKEN or token.count(".") != 2:
        raise _bad("it is not a signed token", "id_token_format")
    try:
        raw = token.split(".", 1)[0]
        header = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
    except (ValueError, TypeError):
        raise _bad("it is not a signed token", "id_token_format") from None
    if not isinstance(header, dict):
        raise _bad("it is not a signed token", "id_token_format")
    return header


class Providers:
    """Every configured provider, discovered at start and hourly after (a failed one every
    minute); a provider that cannot be discovered is shown as unavailable, and the discharger
    starts anyway."""

    def __init__(self, settings: tuple[ProviderSettings, ...]):
        self.all = {s.name: Provider(s) for s in settings}
        self._http: aiohttp.ClientSession | None = None
        self._refresh = Periodic("idp_discovery", self._rediscover, RETRY_FAILED)

    @property
    def http(self) -> aiohttp.ClientSession:
        if self._http is None:
            # No cookie jar: one client serves every user's exchange, so nothing may carry over.
            self._http = aiohttp.ClientSession(headers={"Accept": "application/json"},
                                               cookie_jar=aiohttp.DummyCookieJar())
        return self._http

    async def start(self) -> None:
        if not self.all:
            return
        await asyncio.gather(*(p.discover(self.http) for p in self.all.values()))
        self._refresh.start()

    async def _rediscover(self) -> None:
        now = time.monotonic()
        due = [p for p in self.all.values()
               if not p.available or now - p.discovered_at >= REDISCOVER]
        await asyncio.gather(*(p.discover(self.http) for p in due))

    async def close(self) -> None:
        await self._refresh.stop()
        if self._http is not None:
            await self._http.close()

    def get(self, name: str) -> Provider:
        """A configured provider; NotFound otherwise, Unavailable while it cannot be discovered."""
        provider = self.all.get(name)
        if provider is None:
            raise NotFound("no identity provider has that name")
        if not provider.available:
            raise Unavailable(f"{provider.settings.display} is unavailable: {provider.problem}")
        return provider
