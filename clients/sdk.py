"""Async clients for the authority and the discharger, built on aiohttp.

Every call has a timeout. Transient failures (the service unreachable, or a 502/503/504)
are retried with jittered exponential backoff (tenacity): always when the request never
left, and otherwise only for requests that are safe to repeat. Every failure raises
`SableAPIError`, carrying the server's error code, or `unavailable`.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import time
from collections.abc import Sequence
from urllib.parse import quote, urlsplit

import aiohttp
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential, wait_random

from clients import offline, tracing
from clients import tokens as token_format
from clients.caveats import format_time
from clients.errors import BadRequest, SableAPIError
from clients.urls import service_url

__all__ = ["AuthorityClient", "DischargerClient", "SableAPIError", "WireToken"]


class WireToken:
    """Just-in-time wire tokens (SPEC §14): what leaves the process is an attenuation of the
    long-lived token that expires `lifetime` seconds after it was made, remade every `refresh`
    seconds, so a copy taken off the wire (a log, a proxy) is dead within seconds.

    `token` is a service token, or a permission token with its unbound `discharge`, which is
    bound afresh to each attenuation. `current()` is the token to send; `presentation()` is
    it with its discharge, if any. Hosts must keep their clocks within 2 s of the authority's.
    """

    MIN_LIFETIME = 5.0
    MAX_LIFETIME = 3600.0  # longer is no longer "just in time"
    MARGIN = 3.0  # 2 s of clock difference (SPEC §14) and 1 s for the trip

    def __init__(self, token: str, discharge: str | None = None, *, lifetime: float = 5.0, refresh: float = 1.0):
        if not self.MIN_LIFETIME <= lifetime <= self.MAX_LIFETIME:
            raise BadRequest(f"lifetime must be from {self.MIN_LIFETIME:g} s (clocks may differ by 2 s) "
                             f"to {self.MAX_LIFETIME:g} s")
        if not 0 < refresh <= lifetime - self.MARGIN:
            raise BadRequest(f"refresh must be more than 0 and at most the lifetime less {self.MARGIN:g} s, so a "
                             "token sent just before its refresh still has time on a clock 2 s ahead")
        kind = token_format.parse(token).kind  # MalformedToken if it is not a token
        if kind == "permission":
            if discharge is None:
                raise BadRequest("a permission token goes with its discharge")
            token_format.parse(discharge, (token_format.DISCHARGE,))
        elif kind != "service" or discharge is not None:
            raise BadRequest("a wire token is made from a service token, or a permission token and its discharge")
        self._token, self._discharge = token.strip(), discharge
        self.lifetime, self.refresh = lifetime, refresh
        self._made = -math.inf  # monotonic time of the current attenuation
        self._presentation: list[str] = []

    def presentation(self) -> list[str]:
        now = time.monotonic()
        if now - self._made >= self.refresh:
            expires = format_time(math.ceil(time.time() + self.lifetime))
            wire = offline.attenuate(self._token, [f"expires {expires}"])
            self._presentation = [wire] if self._discharge is None else [wire, offline.bind(wire, self._discharge)]
            self._made = now
        return self._presentation

    def current(self) -> str:
        return self.presentation()[0]

DEFAULT_TIMEOUT = 10.0
DEFAULT_RETRIES = 2


def _why(e: BaseException) -> str:
    """A connection failure in people's words (never an exception class name)."""
    if isinstance(e, aiohttp.ClientSSLError):
        return "the TLS handshake failed (check the URL's scheme and the certificate)"
    if isinstance(e, TimeoutError | asyncio.TimeoutError):
        return "it did not answer in time"
    if isinstance(e, aiohttp.ClientConnectorError) and e.os_error is not None and e.os_error.errno:
        return os.strerror(e.os_error.errno).lower()  # "connection refused", "no route to host"
    if isinstance(e, aiohttp.ServerDisconnectedError | aiohttp.ClientOSError):
        return "the connection was closed"
    return "the connection failed"


class _Client:
    ROLE = "service"  # what the URL should point at, for messages
    def __init__(self, base_url: str, *, admin_token: str | None = None, timeout: float = DEFAULT_TIMEOUT,
                 retries: int = DEFAULT_RETRIES, session: aiohttp.ClientSession | None = None,
                 user_credential: str | None = None):
        self.base_url = service_url(base_url, f"the {self.ROLE} URL")
        self.admin_token = admin_token
        # Instead of the admin credential, for the authority's self-service calls: a user token
        # and its bound discharge, "sable_ut_...,sable_dt_...".
        self.user_credential = user_credential
        self.timeout = timeout
        self.retries = retries
        self._session = session
        self._owns_session = session is None

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.close()

    async def close(self) -> None:
        if self._session is not None and self._owns_session:
            await self._session.close()
            self._session = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session

    async def request(self, method: str, path: str, body: dict | None = None, *, bearer: str | WireToken | None = None,
                      params: dict | None = None, timeout: float | None = None, ok: tuple[int, ...] = (),
                      idempotent: bool | None = None, headers: dict | None = None) -> dict:
        """Send a request, retrying transient failures; return the JSON body of a 2xx (or of a
        status in `ok`). GETs are idempotent unless said otherwise."""
        safe = method == "GET" if idempotent is None else idempotent
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.retries + 1),
            wait=wait_exponential(multiplier=0.05, max=2.0) + wait_random(0, 0.05),
            retry=retry_if_exception(lambda e: isinstance(e, SableAPIError) and e.transient(safe)),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                return await self._send(method, path, body, bearer, params, timeout, ok, headers)
        raise AssertionError("unreachable: tenacity re-raises the last failure")

    async def _send(self, method, path, body, bearer, params, timeout, ok, extra=None) -> dict:
        if isinstance(bearer, WireToken):  # the long-lived token stays here; its attenuation goes
            bearer = ",".join(bearer.presentation())
        headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
        headers.update(extra or {})
        if not tracing.enabled():
            return await self._exchange(method, path, body, headers, params, timeout, ok)
        # The span names the service called, never the path or URL (some carry secrets).
        with tracing.client_span(method, self.ROLE, urlsplit(self.base_url).hostname or "", headers) as span:
            try:
                return await self._exchange(method, path, body, headers, params, timeout, ok)
            except SableAPIError as e:
                span.set_attribute("http.response.status_code", e.status)
                raise

    async def _exchange(self, method, path, body, headers, params, timeout, ok) -> dict:
        try:
            async with self._http().request(
                method, self.base_url + path, json=body, headers=headers, params=params,
                timeout=aiohttp.ClientTimeout(total=timeout or self.timeout),
            ) as resp:
                text = await resp.text()
                try:
                    data = json.loads(text) if text else {}
                except ValueError:
                    data = None
                if (resp.status < 300 or resp.status in ok) and data is not None:
                    return data
                error = self._not_sable(resp.status, resp.reason, data)
                reason = error.get("reason")
                raise SableAPIError(resp.status, error["error"], error.get("message", resp.reason or ""),
                                    reason=reason if isinstance(reason, str) else None, service=self.ROLE)
        except aiohttp.ClientConnectorError as e:
            raise SableAPIError(0, "unavailable", f"cannot reach {self.base_url}: {_why(e)}", sent=False) from None
        except aiohttp.InvalidURL:
            raise SableAPIError(0, "bad_request", f"{self.base_url} is not a usable http(s) URL") from None
        except (TimeoutError, aiohttp.ClientError, OSError) as e:
            raise SableAPIError(0, "unavailable", f"cannot reach {self.base_url}: {_why(e)}") from None

    def _not_sable(self, status: int, reason: str | None, data: object) -> dict:
        """A Sable service's error object, or raise: the URL points elsewhere (or at the wrong
        Sable service). The path is left out: some carry one-time secrets."""
        if isinstance(data, dict) and isinstance(data.get("error"), str):
            if not (status == 404 and data.get("message") == "Not Found"):  # aiohttp's: no such route
                return data
            raise SableAPIError(status, "wrong_url", f"{self.base_url} has no such endpoint: is it the {self.ROLE}'s URL?")
        answered = f"{self.base_url} answered {status} {reason or ''}".rstrip()
        if status >= 500:
            raise SableAPIError(status, "unavailable", answered)
        raise SableAPIError(status, "wrong_url", f"{answered}: is it the {self.ROLE}'s URL?")

    def _admin(self) -> str:
        credential = self.admin_token or self.user_credential
        if not credential:
            raise SableAPIError(0, "unauthorized", f"no admin credential for the {self.ROLE}: set "
                                f"SABLE_{self.ROLE.upper()}_ADMIN_TOKEN or SABLE_ADMIN_TOKEN", service=self.ROLE)
        return credential

    async def info(self) -> dict:
        return await self.request("GET", "/v1/info")


class AuthorityClient(_Client):
    ROLE = "authority"
    async def create_org(self, name: str) -> dict:
        return await self.request("POST", "/v1/orgs", {"name": name}, bearer=self._admin())

    async def list_orgs(self) -> list[dict]:
        return (await self.request("GET", "/v1/orgs", bearer=self._admin()))["orgs"]

    async def org_lifetime(self, org: str) -> dict:
        """`{"max_token_lifetime": seconds or None}` of an org (SPEC §18)."""
        return await self.request("GET", f"/v1/orgs/{org}/policy", bearer=self._admin())

    async def set_org_lifetime(self, org: str, seconds: int | None) -> dict:
        return await self.request("PUT", f"/v1/orgs/{org}/policy", {"max_token_lifetime": seconds},
                                  bearer=self._admin(), idempotent=True)

    # webhooks (SPEC §18): the admin credential, or an org admin's user token and discharge
    async def create_webhook(self, org: str, url: str, events: Sequence[str]) -> dict:
        """A new endpoint; the answer's `secret` is shown this once."""
        return await self.request("POST", "/v1/webhooks", {"org": org, "url": url, "events": list(events)},
                                  bearer=self._admin())

    async def list_webhooks(self, org: str | None = None) -> list[dict]:
        params = {"org": org} if org else None
        return (await self.request("GET", "/v1/webhooks", bearer=self._admin(), params=params))["webhooks"]

    async def remove_webhook(self, webhook_id: str) -> dict:
        return await self.request("DELETE", f"/v1/webhooks/{webhook_id}", bearer=self._admin(), idempotent=True)

    async def test_webhook(self, webhook_id: str) -> str:
        """`delivered` or `failed` (why: the authority's audit trail)."""
        return (await self.request("POST", f"/v1/webhooks/{webhook_id}/test", bearer=self._admin()))["result"]

    async def mint(self, org: str, caveats: Sequence[str] = (), name: str | None = None,
                   expires_in: int | None = None, principal: str | None = None,
                   strip_once: bool | None = None) -> dict:
        """A permission token; `principal` (`ci:NAME`) seals it for that service principal,
        `strip_once` lets each discharge strip it once (the default for a principal's)."""
        body: dict[str, object] = {"org": org, "caveats": list(caveats)}
        if name is not None:
            body["name"] = name
        if expires_in is not None:
            body["expires_in"] = expires_in
        if principal is not None:
            body["for"] = principal
        if strip_once is not None:
            body["strip_once"] = strip_once
        return await self.request("POST", "/v1/tokens", body, bearer=self._admin())

    async def user_token(self, org: str, role: str = "member") -> dict:
        """A user token for self-service (inert until discharged): {token, id, expires_at}."""
        return await self.request("POST", "/v1/user-tokens", {"org": org, "role": role})

    async def list_tokens(self, org: str) -> list[dict]:
        return (await self.request("GET", "/v1/tokens", params={"org": org}, bearer=self._admin()))["tokens"]

    async def show_token(self, token_id: str) -> dict:
        return await self.request("GET", f"/v1/tokens/{quote(token_id, safe='')}", bearer=self._admin())

    async def revoke_user(self, username: str) -> list[str]:
        """Revoke every token the user made or holds (admin): the ids revoked."""
        return (await self.request("POST", "/v1/tokens/revoke", {"user": username}, bearer=self._admin(),
                                   idempotent=True))["revoked"]

    async def revoke_id(self, token_id: str) -> list[str]:
        path = f"/v1/tokens/{token_id}/revoke"
        return (await self.request("POST", path, {}, bearer=self._admin(), idempotent=True))["revoked"]

    async def regenerate(self, token_id: str) -> dict:
        """A new permission token like this one (its `token` shown once); this one revoked."""
        return await self.request("POST", f"/v1/tokens/{token_id}/regenerate", {}, bearer=self._admin())

    async def strip(self, token: str, discharge: str, name: str | None = None, expires_in: int | None = None) -> dict:
        body: dict = {"tokens": [token, discharge]}
        if name is not None:
            body["name"] = name
        if expires_in is not None:
            body["expires_in"] = expires_in
        return await self.request("POST", "/v1/service-tokens", body)

    async def verify(self, tokens: list[str], access: dict, proof: dict | None = None) -> dict:
        """The decision as a dict: a denial (403) is an answer, not an error. With a DPoP
        `proof` ({"dpop", "htm", "htu"}) it is sent once: a retry would replay it."""
        body: dict = {"tokens": tokens, "access": access}
        if proof is not None:
            body["proof"] = proof
        return await self.request("POST", "/v1/verify", body, ok=(403,), idempotent=proof is None)

    async def revoke(self, token: str) -> list[dict]:
        return (await self.request("POST", "/v1/revoke", {"tokens": [token]}, idempotent=True))["revoked"]

    async def revocations(self, after: int | None = None, wait: float = 0) -> dict:
        params = {"wait": str(wait)}
        if after is not None:
            params["after"] = str(after)
        return await self.request("GET", "/v1/revocations", params=params, timeout=wait + self.timeout)


class DischargerClient(_Client):
    ROLE = "discharger"
    async def create_user(self, username: str, password: str | None, orgs: list[str], idp: str | None = None) -> dict:
        """A user with a password, or (`idp`, no password) one who signs in through that provider."""
        body: dict = {"username": username, "orgs": list(orgs)}
        body.update({"idp": idp} if idp is not None else {"password": password})
        return await self.request("POST", "/v1/users", body, bearer=self._admin())

    async def link_identity(self, username: str, idp: str, sub: str) -> dict:
        return await self.request("POST", f"/v1/users/{username}/links", {"idp": idp, "sub": sub},
                                  bearer=self._admin())

    async def set_orgs(self, username: str, orgs: list) -> dict:
        """`orgs`: org names (role member) or {"org", "role"} objects."""
        return await self.request("POST", f"/v1/users/{username}/orgs", {"orgs": list(orgs)}, bearer=self._admin())

    async def get_user(self, username: str) -> dict:
        return await self.request("GET", f"/v1/users/{username}", bearer=self._admin())

    async def list_users(self) -> list[dict]:
        return (await self.request("GET", "/v1/users", bearer=self._admin()))["users"]

    async def enable_user(self, username: str) -> dict:
        return await self.request("POST", f"/v1/users/{username}/enable", {}, bearer=self._admin())

    async def set_password(self, username: str, password: str) -> dict:
        return await self.request("POST", f"/v1/users/{username}/password", {"password": password},
                                  bearer=self._admin())

    async def disable_user(self, username: str) -> dict:
        return await self.request("POST", f"/v1/users/{username}/disable", {}, bearer=self._admin())

    async def login(self, username: str, password: str, totp: str | None = None) -> dict:
        """A session. For a user with a second factor, without `totp` this raises SableAPIError
        with `reason` "mfa_required" (a wrong code: "mfa_invalid")."""
        body = {"username": username, "password": password, **({"totp": totp} if totp else {})}
        return await self.request("POST", "/v1/sessions", body)

    async def reset_factors(self, username: str) -> dict:
        return await self.request("DELETE", f"/v1/users/{username}/factors", bearer=self._admin())

    async def org_policy(self, org: str) -> dict:
        return await self.request("GET", f"/v1/orgs/{org}/policy", bearer=self._admin())

    async def set_org_policy(self, org: str, require_idp: str | None, require_mfa: bool) -> dict:
        return await self.request("PUT", f"/v1/orgs/{org}/policy",
                                  {"require_idp": require_idp, "require_mfa": require_mfa}, bearer=self._admin())

    async def current_session(self, session: str) -> dict:
        """{username, orgs, roles, expires_at, auth_method} of a session."""
        return await self.request("GET", "/v1/sessions/current", bearer=session)

    async def logout(self, session: str) -> None:
        await self.request("DELETE", "/v1/sessions/current", bearer=session)

    async def discharge(self, session: str, ticket_b64: str) -> dict:
        return await self.request("POST", "/v1/discharges", {"ticket": ticket_b64}, bearer=session)

    async def discharge_with_id_token(self, ticket_b64: str, id_token: str) -> dict:
        """A discharge for the service principal the ticket is sealed for, proven by a CI's
        ID token (SPEC §16); no session."""
        return await self.request("POST", "/v1/discharges", {"ticket": ticket_b64, "id_token": id_token})

    # --- service principals (SPEC §16) ---

    async def create_principal(self, org: str, name: str, role: str = "member") -> dict:
        return await self.request("POST", "/v1/principals", {"org": org, "name": name, "role": role},
                                  bearer=self._admin())

    async def list_principals(self, org: str | None = None) -> list[dict]:
        params = {"org": org} if org else None
        return (await self.request("GET", "/v1/principals", params=params, bearer=self._admin()))["principals"]

    async def get_principal(self, name: str) -> dict:
        return await self.request("GET", f"/v1/principals/{quote(name, safe=':')}", bearer=self._admin())

    async def set_principal_disabled(self, name: str, disabled: bool) -> dict:
        change = "disable" if disabled else "enable"
        return await self.request("POST", f"/v1/principals/{quote(name, safe=':')}/{change}", {}, bearer=self._admin())

    async def remove_principal(self, name: str) -> None:
        await self.request("DELETE", f"/v1/principals/{quote(name, safe=':')}", bearer=self._admin())

    async def trust(self, name: str, issuer: str, claims: dict[str, str], audience: str | None = None,
                    max_age: int | None = None) -> dict:
        body: dict[str, object] = {"issuer": issuer, "claims": claims}
        if audience is not None:
            body["audience"] = audience
        if max_age is not None:
            body["max_age"] = max_age
        return await self.request("POST", f"/v1/principals/{quote(name, safe=':')}/policies", body,
                                  bearer=self._admin())

    async def untrust(self, name: str, policy_id: str) -> None:
        await self.request("DELETE", f"/v1/principals/{quote(name, safe=':')}/policies/{quote(policy_id, safe='')}",
                           bearer=self._admin())

    # --- browser-approved flows (SPEC §11) ---

    async def device_authorize(self, client_name: str | None = None) -> dict:
        """Start a device login: {device_code, user_code, verification_uri(_complete), expires_in, interval}."""
        return await self.request("POST", "/v1/device/authorize", {"client_name": client_name} if client_name else {})

    async def device_token(self, device_code: str) -> dict:
        """The session once the user approved; SableAPIError with code authorization_pending,
        slow_down, access_denied, expired_token or invalid_grant otherwise."""
        return await self.request("POST", "/v1/device/token", {"device_code": device_code}, idempotent=False)

    async def interactive_discharge(self, ticket_b64: str, return_to: str | None = None,
                                    forwarded_for: str | None = None) -> dict:
        """Start an interactive discharge: {user_url, poll_url, expires_in}. A service starting
        one for a browser names it in `forwarded_for` (honoured from trusted proxies only)."""
        body: dict = {"ticket": ticket_b64, "interactive": True}
        if return_to is not None:
            body["return_to"] = return_to
        headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else None
        return await self.request("POST", "/v1/discharges", body, ok=(202,), headers=headers)

    async def poll_flow(self, poll_url: str, flow_code: str | None = None) -> dict | None:
        """None while pending; the discharge {discharge, expires_at} once approved."""
        if not poll_url.startswith(self.base_url + "/v1/flows/"):
            raise SableAPIError(400, "bad_request", "the poll URL is not under this discharger")
        path = poll_url[len(self.base_url):]
        headers = {"Sable-Flow-Code": flow_code} if flow_code else None
        got = await self.request("GET", path, ok=(202,), headers=headers, idempotent=False)
        return None if got.get("status") == "pending" else got
