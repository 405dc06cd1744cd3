"""Users and their org memberships (admin operations)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from clients.errors import BadRequest, Conflict, NotFound
from discharger.model import Membership, NewUser
from discharger.passwords import Hasher
from discharger.providers import ProviderSettings
from discharger.store import DischargerStore, Link, UserRow
from server.audit import Caller


class Users:
    def __init__(self, store: DischargerStore, hasher: Hasher,
                 clear_failures: Callable[[str], Awaitable[None]] | None = None,
                 providers: tuple[ProviderSettings, ...] = ()):
        self.store = store
        self.hasher = hasher
        self.clear_failures = clear_failures
        self.providers = providers

    async def create(self, new: NewUser, caller: Caller) -> Membership:
        if new.idp is not None:
            self._provider(new.idp)
        # A provider's user has no password: an empty hash, which no password matches.
        digest = b"" if new.password is None else await self.hasher.hash(new.password)  # Busy: 429
        detail: dict = {"roles": new.roles, **({"idp": new.idp} if new.idp else {})}
        audit = caller.record("user_create", user=new.username, detail=detail)
        if not await self.store.create_user(new.username, digest, new.roles, int(time.time()), audit, idp=new.idp):
            raise Conflict(f"user {new.username!r} already exists")
        audit.emit()
        if self.clear_failures is not None:
            # Failed logins against the name before it existed (probes, typos) do not lock the
            # new user out: their count starts at zero. The per-address count stays.
            await self.clear_failures(new.username)
        return Membership(new.username, new.roles)

    async def set_orgs(self, membership: Membership, caller: Caller) -> Membership:
        audit = caller.record("user_orgs", user=membership.username, detail={"roles": membership.roles})
        if not await self.store.set_orgs(membership.username, membership.roles, audit):
            raise NotFound("no such user")
        audit.emit()
        return membership

    async def disable(self, username: str, caller: Caller, disabled: bool = True) -> None:
        audit = caller.record("user_disable" if disabled else "user_enable", user=username)
        if not await self.store.disable_user(username, audit, disabled):
            raise NotFound("no such user")
        audit.emit()

    def _provider(self, name: str) -> ProviderSettings:
        for p in self.providers:
            if p.name == name:
                return p
        known = ", ".join(p.name for p in self.providers) or "none is configured"
        raise BadRequest(f"no identity provider named {name!r} ({known})")

    async def link(self, username: str, idp: str, sub: str, caller: Caller) -> Link:
        """Link an identity at a configured provider to a user (SPEC §15 (a))."""
        provider = self._provider(idp)
        found = Link(provider.issuer, sub, provider.name)
        if await self.store.get_user(username) is None:
            raise NotFound("no such user")
        audit = caller.record("user_link", user=username, detail={"provider": idp, "sub": sub, "by": "admin"})
        if not await self.store.link_identity(username, found, int(time.time()), audit):
            owner = await self.store.linked_user(found.issuer, sub)
            raise Conflict(f"that identity is linked to {owner!r} already" if owner else "no such user")
        audit.emit()
        return found

    async def links(self, username: str) -> list[Link]:
        await self.get(username)
        return await self.store.links(username)

    async def get(self, username: str) -> UserRow:
        user = await self.store.get_user(username)
        if user is None:
            raise NotFound("no such user")
        return user

    async def list(self) -> list[UserRow]:
        return await self.store.list_users()

    async def set_password(self, username: str, password: str, caller: Caller) -> None:
        """A new password (argon2id); the user's sessions end."""
        digest = await self.hasher.hash(password)  # Busy: 429
        audit = caller.record("user_password", user=username)
        if not await self.store.set_password(username, digest, audit):
            raise NotFound("no such user")
        audit.emit()
