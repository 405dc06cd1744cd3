"""Listing an org's tokens, with the freshest last-used times."""

from __future__ import annotations

from dataclasses import replace

from authority.store import AuthorityStore, TokenRow
from authority.usage import Usage


class Listing:
    def __init__(self, store: AuthorityStore, usage: Usage):
        self.store = store
        self.usage = usage

    async def tokens(self, org: str) -> list[TokenRow]:
        return [replace(r, last_used_at=self.usage.last_used(r.id, r.last_used_at))
                for r in await self.store.list_tokens(org)]
