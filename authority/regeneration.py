"""Regenerate (SPEC §18): a permission token replaced by a new one with the same org, name,
caveats, principal and lifetime length; the old one revoked with its cascade in the same
transaction, so there is never a moment with both or neither."""

from __future__ import annotations

import time

from authority.minting import Minting
from authority.model import Minted
from authority.revocation import Revocation
from authority.store import AuthorityStore
from clients.errors import Conflict, NotFound
from server.audit import Caller, ListedIn


class Regeneration:
    def __init__(self, store: AuthorityStore, minting: Minting, revocation: Revocation):
        self.store = store
        self.minting = minting
        self.revocation = revocation

    async def regenerate(self, token_id: str, caller: Caller, created_by: str = "@admin") -> tuple[Minted, list[str]]:
        """The new token (shown once) and the ids revoked; Conflict (409) if the token is
        revoked already, BadRequest (400) if it is not a permission token."""
        loaded = await self.store.load_token(token_id, max_fingerprints=0)
        if loaded is None:
            raise NotFound("no token with that id")
        old = loaded[0]
        if old.revoked_at is not None:
            raise Conflict("that token is revoked; mint a new one")
        if old.expires_at is not None and old.expires_at <= time.time():
            raise Conflict("that token has expired; mint a new one")  # regenerating must not undo an expiry
        minted, row, audit = await self.minting.reissue(old, caller, created_by)
        revoked = ListedIn(caller.record("revoke", token_id=old.id, org=old.org, detail={"by": "regenerate"}))
        ids = await self.store.replace_token(row, audit, old.id, int(time.time()), revoked)
        if ids is None:
            raise Conflict("that token is revoked; mint a new one")
        revoked.record.emit()
        audit.emit()
        self.revocation.revoked(ids)
        return minted, ids
