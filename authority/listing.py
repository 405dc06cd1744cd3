"""Listing an org's tokens, with the freshest last-used times."""

from __future__ import annotations

from dataclasses import replace

from authority.store import AuthorityStore, TokenRow
from authority.usage import Usage


class Listing:
    def __init__(self, store: AuthorityStore, usage: Usage):
        self.store = store
        self.usage = usage

    async def token(self, token_id: str) -> TokenRow | None:
        loaded = await self.store.load_token(token_id, max_fingerprints=0)
        if loaded is None:
            return None
        row = loaded[0]
        return replace(row, last_used_at=self.usage.last_used(row.id, row.last_used_at))

    async def tokens(self, org: str) -> list[TokenRow]:
        return [replace(r, last_used_at=self.usage.last_used(r.id, r.last_used_at))
                for r in await self.store.list_tokens(org)]
