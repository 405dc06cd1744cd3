"""The discharger as an OpenID Connect relying party (SPEC §15): providers, the authorization
code flow with PKCE S256, and the checks an ID token for a sign-in needs beyond
`discharger.id_tokens`' (signature, issuer, times): `aud`, `azp`, `nonce`, `sub`.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import time
from urllib.parse import quote, urlencode

import aiohttp
import structlog

from clients.errors import NotFound, Unavailable
from discharger.id_tokens import Issuer, SignInRefused, audiences, bad, fetch_json, json_client
from discharger.providers import ProviderSettings
from server.periodic import Periodic

__all__ = ["Provider", "Providers", "SignInRefused", "challenge", "fetch_json"]

log = structlog.get_logger("sable.discharger.oidc")

REDISCOVER = 3600.0
RETRY_FAILED = 60.0  # a provider that could not be discovered is tried again this often


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def challenge(verifier: str) -> str:
    """PKCE S256 (RFC 7636)."""
    return _b64url(hashlib.sha256(verifier.encode()).digest())


class Provider(Issuer):
    """One configured provider and what was learned from it."""

    REQUIRED = ("authorization_endpoint", "token_endpoint", "jwks_uri")
    LOGGED_AS = "idp"

    def __init__(self, settings: ProviderSettings):
        super().__init__(settings.issuer)
        self.settings = settings

    @property
    def name(self) -> str:
        return self.settings.name

    def named(self) -> dict:
        return {"provider": self.name}

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
        claims = await self.verify(http, token, time.time() if now is None else now)
        client_id = self.settings.client_id
        aud = audiences(claims)
        if client_id not in aud:
            raise bad("it was issued for another application", "id_token_aud")
        if ("azp" in claims or len(aud) > 1) and claims.get("azp") != client_id:  # OIDC Core 3.1.3.7
            raise bad("it was issued for another application", "id_token_azp")
        if not isinstance(claims.get("nonce"), str) or claims["nonce"] != nonce:
            raise bad("it belongs to another sign-in", "id_token_nonce")
        if not isinstance(claims.get("sub"), str) or not claims["sub"] or len(claims["sub"]) > 255:
            raise bad("it names nobody", "id_token_sub")
        return claims


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
            self._http = json_client()
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
