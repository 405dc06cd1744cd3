"""Signing people in through their organisation's OpenID provider (SPEC §15): the sign-in's
one-use state, who an identity is, and the memberships its groups map to.

A user is found only through a link `(issuer, sub)`; no other claim ever matches a user. The
state, nonce and PKCE verifier travel in a sealed cookie (`BrowserSessions.seal`: the browser
can neither read nor change them), and each state is claimed once in the database, so a callback
replayed with the cookie put back is refused.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass

from clients import tokens
from clients.errors import SableError
from discharger.browser_sessions import BrowserSessions
from discharger.model import ROLES, USERNAME_RE
from discharger.oidc import Provider, Providers, SignInRefused
from discharger.store import DischargerStore, Link, UserRow
from server.audit import Caller

STATE_TTL = 600  # the cookie's and the state's life: 10 min
_PURPOSE = "idp_sign_in"


@dataclass(frozen=True)
class Started:
    url: str  # where the browser goes: the provider's authorization endpoint
    cookie: str  # the sealed sign-in state, for the `sable_idp` cookie


@dataclass(frozen=True)
class SignedIn:
    cookie: str  # the new `sable_browser` value ("" for a link: the browser stays as it was)
    next: str
    username: str
    linked: bool = False


class Federation:
    def __init__(self, store: DischargerStore, providers: Providers, browser: BrowserSessions, public_url: str):
        self.store = store
        self.providers = providers
        self.browser = browser
        self.public_url = public_url.rstrip("/")

    def redirect_uri(self, name: str) -> str:
        return f"{self.public_url}/login/idp/{name}/callback"

    def begin(self, name: str, next_path: str, link_to: str | None = None) -> Started:
        """Where to send the browser, and the cookie that must come back with the answer. With
        `link_to` (a signed-in user who re-entered their password), the answer links the
        identity to that user instead of signing anyone in."""
        provider = self.providers.get(name)  # NotFound, or Unavailable while undiscovered
        state, nonce, verifier = (secrets.token_urlsafe(32) for _ in range(3))
        sealed = self.browser.seal(_PURPOSE, {"provider": name, "state": state, "nonce": nonce, "verifier": verifier,
                                              "next": next_path, "expires_at": int(time.time()) + STATE_TTL,
                                              "link_to": link_to}, STATE_TTL)
        return Started(provider.authorization_url(state, nonce, verifier, self.redirect_uri(name)), sealed)

    def _opened(self, cookie: str | None) -> dict:
        held = self.browser.unseal(_PURPOSE, cookie)
        if held is None:  # not ours, damaged, or older than 10 minutes
            raise SignInRefused("this sign-in was started in another browser, or took longer than 10 minutes; "
                                "start again", reason="no_state_cookie")
        return held

    async def finish(self, name: str, query: Mapping[str, str], cookie: str | None, caller: Caller,
                     signed_in_as: str | None = None) -> SignedIn:
        """Check the provider's answer and sign the browser in (or, for a link started at
        /account/security by `signed_in_as`, link the identity to that user); SignInRefused
        (with an audit record) if anything is wrong, Unavailable if the provider cannot be
        reached."""
        audit = caller.record("idp_login", detail={"provider": name})
        try:
            held = self._opened(cookie)
            if held["provider"] != name:
                raise SignInRefused("this answer came from another provider than the one you chose; start again",
                                    reason="provider_mismatch")
            provider = self.providers.get(name)
            if "iss" in query and query["iss"] != provider.settings.issuer:  # RFC 9207: a mix-up
                raise SignInRefused("this answer names another issuer; start again", reason="iss_mismatch")
            if not secrets.compare_digest(query.get("state", "").encode(), held["state"].encode()):
                raise SignInRefused("this answer belongs to another sign-in; start again", reason="state_mismatch")
            if not await self.store.claim_state(tokens.secret_digest(held["state"]), held["expires_at"],
                                                int(time.time())):
                raise SignInRefused("this sign-in was already completed; start again", reason="state_used")
            if "error" in query:
                raise SignInRefused("the provider did not sign you in; start again if you meant to",
                                    reason=f"provider:{query['error'][:40]}")
            code = query.get("code", "")
            if not 0 < len(code) <= 2048:
                raise SignInRefused("the provider's answer has no code; start again", reason="no_code")
            claims = await provider.redeem(self.providers.http, code, held["verifier"], self.redirect_uri(name),
                                           held["nonce"])
            audit.detail = {**(audit.detail or {}), "sub": claims["sub"]}
            if held.get("link_to") is not None:
                username = await self._link_signed_in(provider, claims, held["link_to"], signed_in_as, caller)
                audit.user = username
                await self.store.write_audit([audit])
                audit.emit()
                return SignedIn("", held["next"], username, linked=True)
            username = await self._who(provider, claims, caller)
            audit.user = username
            await self._memberships(provider, claims, username, caller)
        except SableError as e:
            audit.outcome = "failed"
            audit.detail = {**(audit.detail or {}), "reason": e.reason or e.code}
            await self.store.write_audit([audit])
            audit.emit()
            raise
        await self.store.write_audit([audit])
        audit.emit()
        cookie_value = await self.browser.start(username, f"idp:{name}", caller)
        return SignedIn(cookie_value, held["next"], username)

    async def _who(self, provider: Provider, claims: dict, caller: Caller) -> str:
        """The user this identity signs in as: through its link only; else a user created for
        this provider under the claimed name (linked now), or, with `auto`, a new user."""
        s = provider.settings
        link = Link(s.issuer, claims["sub"], s.name)
        username = await self.store.linked_user(link.issuer, link.sub)
        if username is not None:
            user = await self.store.get_user(username)
            if user is None or user.disabled:
                raise SignInRefused("this account is disabled", reason="disabled")
            return username
        claimed = claims.get(s.username_claim)
        candidate = await self.store.get_user(claimed) if isinstance(claimed, str) \
            and USERNAME_RE.fullmatch(claimed) else None
        if candidate is not None and candidate.idp == s.name \
                and not any(x.issuer == s.issuer for x in await self.store.links(candidate.username)):
            return await self._link_first(candidate, link, caller)
        if s.provisioning != "auto":
            raise SignInRefused("this identity is not linked to a Sable account: ask an administrator to link "
                                "this account", reason="not_linked")
        if not isinstance(claimed, str) or not USERNAME_RE.fullmatch(claimed):
            raise SignInRefused(f"the provider's {s.username_claim} cannot be a Sable username "
                                "(letters, digits, '.', '_' and '-'; no ':')", reason="bad_username")
        if candidate is not None:
            raise SignInRefused(f"a Sable account named {claimed!r} exists already: ask an administrator to link "
                                "this account", reason="name_taken")
        audit = caller.record("user_create", user=claimed, detail={"provider": s.name, "provisioning": "auto"})
        if not await self.store.create_user(claimed, b"", {}, int(time.time()), audit, idp=s.name, link=link):
            raise SignInRefused(f"a Sable account named {claimed!r} exists already: ask an administrator to link "
                                "this account", reason="name_taken")
        audit.emit()
        return claimed

    async def _link_signed_in(self, provider: Provider, claims: dict, username: str, signed_in_as: str | None,
                              caller: Caller) -> str:
        """SPEC §15 (b): the user who started this link, still signed in here, gets the identity."""
        if signed_in_as != username:
            raise SignInRefused("this link was started by another account; sign in and start again",
                                reason="link_other_user")
        link = Link(provider.settings.issuer, claims["sub"], provider.name)
        owner = await self.store.linked_user(link.issuer, link.sub)
        if owner is not None:
            raise SignInRefused("this identity is linked to an account already", reason="linked_elsewhere")
        if any(x.issuer == link.issuer for x in await self.store.links(username)):
            raise SignInRefused("your account is linked to another identity at this provider already",
                                reason="linked_already")
        audit = caller.record("user_link", user=username, detail={"provider": provider.name, "sub": link.sub,
                                                                  "by": "self"})
        if not await self.store.link_identity(username, link, int(time.time()), audit):
            raise SignInRefused("this identity is linked to an account already", reason="linked_elsewhere")
        audit.emit()
        return username

    async def _link_first(self, user: UserRow, link: Link, caller: Caller) -> str:
        if user.disabled:
            raise SignInRefused("this account is disabled", reason="disabled")
        audit = caller.record("user_link", user=user.username, detail={"provider": link.provider, "sub": link.sub,
                                                                       "by": "first_sign_in"})
        if not await self.store.link_identity(user.username, link, int(time.time()), audit):
            raise SignInRefused("this identity is linked to another account", reason="linked_elsewhere")
        audit.emit()
        return user.username

    async def _memberships(self, provider: Provider, claims: dict, username: str, caller: Caller) -> None:
        """Apply the provider's group rules to the orgs they name: added, role changed, or
        removed. No groups claim: memberships stay as they are (the audit says so)."""
        rules = provider.settings.memberships
        if not rules:
            return
        groups = claims.get(provider.settings.groups_claim)
        if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
            kept = caller.record("user_orgs", user=username, outcome="unchanged",
                                 detail={"provider": provider.name, "why": "no groups claim"})
            await self.store.write_audit([kept])
            kept.emit()
            return
        changes: dict[str, str | None] = {}
        for org in {r.org for r in rules}:
            granted = [r.role for r in rules if r.org == org and r.group in groups]
            changes[org] = max(granted, key=ROLES.index) if granted else None
        audit = caller.record("user_orgs", user=username, detail={"changes": changes, "provider": provider.name})
        if await self.store.change_orgs(username, changes, audit):
            audit.emit()

