"""Orgs: the namespaces tokens are minted into."""

from __future__ import annotations

import time

from authority.store import AuthorityStore, OrgRow
from clients.errors import BadRequest, Conflict, NotFound
from server.audit import Caller

POLICY_TTL = 5.0  # seconds an org's lifetime policy is remembered (other replicas' changes: this late)


class Orgs:
    def __init__(self, store: AuthorityStore):
        self.store = store
        self._lifetimes: dict[str, tuple[float, int | None]] = {}  # org -> (read at, max lifetime)

    async def max_token_lifetime(self, org: str) -> int | None:
        """The longest a new token of `org` may live, in seconds (None: no limit)."""
        known = self._lifetimes.get(org)
        if known is not None and time.monotonic() - known[0] < POLICY_TTL:
            return known[1]
        seconds = await self.store.max_token_lifetime(org)
        if len(self._lifetimes) > 10_000:
            self._lifetimes.clear()
        self._lifetimes[org] = (time.monotonic(), seconds)
        return seconds

    async def set_max_token_lifetime(self, org: str, seconds: int | None, caller: Caller) -> int | None:
        if seconds is not None and not 60 <= seconds <= 31_536_000:
            raise BadRequest("max_token_lifetime must be from 60 seconds to one year (or null: no limit)")
        if not await self.store.org_exists(org):
            raise NotFound(f"org {org!r} does not exist")
        audit = caller.record("org_policy", org=org, detail={"max_token_lifetime": seconds})
        await self.store.set_max_token_lifetime(org, seconds, audit)
        audit.emit()
        self._lifetimes[org] = (time.monotonic(), seconds)
        return seconds

    async def create(self, name: str, caller: Caller) -> OrgRow:
        now = int(time.time())
        audit = caller.record("org_create", org=name)
        if not await self.store.create_org(name, now, audit):
            raise Conflict(f"org {name!r} already exists")
        audit.emit()
        return OrgRow(name, now)

    async def list(self) -> list[OrgRow]:
        return await self.store.list_orgs()
