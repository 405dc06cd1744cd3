"""Orgs: the namespaces tokens are minted into."""

from __future__ import annotations

import time

from authority.store import AuthorityStore, OrgRow
from clients.errors import Conflict
from server.audit import Caller


class Orgs:
    def __init__(self, store: AuthorityStore):
        self.store = store

    async def create(self, name: str, caller: Caller) -> OrgRow:
        now = int(time.time())
        audit = caller.record("org_create", org=name)
        if not await self.store.create_org(name, now, audit):
            raise Conflict(f"org {name!r} already exists")
        audit.emit()
        return OrgRow(name, now)

    async def list(self) -> list[OrgRow]:
        return await self.store.list_orgs()
