"""Revocation (SPEC §4): by id with cascade, by value (a token or one attenuation of it),
and pages of the revocation feed."""

from __future__ import annotations

import time

from authority.feed import MAX_ENTRIES, RevocationFeed
from authority.model import FeedEntry, FeedPage, Revoked
from authority.records import TokenCache
from authority.store import AuthorityStore
from authority.verification import authenticate, parse_presentation
from clients import macaroon, tokens
from clients.errors import BadRequest, Conflict, NotFound
from server.audit import AuditFor, AuditRecord, Caller, ListedIn


class Revocation:
    def __init__(self, store: AuthorityStore, records: TokenCache, feed: RevocationFeed, location: str):
        self.store = store
        self.records = records
        self.feed = feed
        self.location = location

    async def revoke_id(self, token_id: str, caller: Caller) -> list[str]:
        """Revoke a token and its descendants; the ids newly revoked."""
        audit = caller.record("revoke", token_id=token_id, detail={"by": "id"})
        ids = await self.store.revoke_token(token_id, int(time.time()), _revoked_ids(audit))
        if ids is None:
            raise NotFound("no token with that id")
        if ids:
            audit.emit()
        self.revoked(ids)
        return ids

    async def revoke_user(self, username: str, caller: Caller) -> list[str]:
        """Offboarding: end the user's console sessions at once (SPEC §19), then revoke every
        token they made or hold, with cascade; the ids revoked."""
        audit = caller.record("console_logout", user=username, detail={"by": "offboarding"})
        if await self.store.end_console_sessions(username, lambda n: audit.add(sessions=n) if n else None):
            audit.emit()
        revoked: list[str] = []
        for token_id in await self.store.user_token_ids(username):
            audit = caller.record("revoke", token_id=token_id, user=username, detail={"by": "user"})
            ids = await self.store.revoke_token(token_id, int(time.time()), _revoked_ids(audit)) or []
            if ids:
                audit.emit()
            self.revoked(ids)
            revoked += ids
        return sorted(set(revoked))

    async def revoke_value(self, presented: list[str], caller: Caller) -> list[Revoked]:
        """Holding a validly signed token is the right to kill it; discharges are not needed."""
        parsed = parse_presentation(presented)
        if len(parsed) != 1 or parsed[0].prefix == tokens.DISCHARGE:
            raise BadRequest("revoke takes exactly one permission or service token")
        tok = parsed[0]
        if tok.prefix == tokens.USER:
            return []  # user tokens are not stored: nothing to revoke; they expire within 12 h
        rec = await self.records.get(tok.token_id)  # type: ignore[arg-type]  # not a discharge
        sigs = authenticate(tok, rec, self.location, revoked_ok=True)[0]  # Denial (403) if forged
        assert rec is not None
        now = int(time.time())
        audit = caller.record("revoke", token_id=rec.id, parent=rec.parent, org=rec.org)
        if len(tok.caveats) == rec.caveat_count:
            audit.detail = {"by": "value", "scope": "token"}
            stale = await self.store.revoke_token(rec.id, now, _revoked_ids(audit)) or []
            revoked = [Revoked(i, "token") for i in stale]
        else:
            audit.detail = {"by": "value", "scope": "attenuation", "depth": len(tok.caveats)}
            fingerprint = macaroon.fingerprint(sigs[-1])
            # The attenuation itself is revoked: recorded even when nothing was stripped from it.
            children = await self.store.revoke_attenuation(
                rec.id, fingerprint, now, ListedIn(audit, when_none=True))
            if children is None:
                return []
            self.records.revoke_attenuation(rec.id, fingerprint)  # at once, not at the feed's next poll
            stale = children
            revoked = [Revoked(rec.id, "attenuation"), *(Revoked(i, "token") for i in stale)]
        if revoked:
            audit.emit()
        self.revoked(stale)
        return revoked

    def revoked(self, ids: list[str]) -> None:
        """What every revocation does once committed: caches dropped, the feed woken."""
        if ids:
            self.records.invalidate(ids)
        if not self.store.listening():  # else the revocation's NOTIFY wakes the feed (one poll, not two)
            self.feed.poke()

    async def page(self, after: int | None, wait: float) -> FeedPage:
        """Entries after `after` (long-polling up to `wait` s for one), or just the head.
        Read from the database, so every replica serves the same entries under the same cursors."""
        if after is None:
            return FeedPage(await self.store.revocation_head(), [])
        rows = await self.store.revocations_after(after, MAX_ENTRIES)
        if not rows:
            head = await self.store.revocation_head()
            if after > head:
                raise Conflict(f"feed cursor {after} is past the head {head}: the database was restored or "
                               "failed over; empty your cache and start again at the head")
            if wait > 0:
                await self.feed.wait_past(after, wait)
                rows = await self.store.revocations_after(after, MAX_ENTRIES)
        cursor = rows[-1].seq if rows else after
        return FeedPage(cursor, [FeedEntry(r.token_id, r.at) for r in rows])


def _revoked_ids(audit: AuditRecord) -> AuditFor[list[str]]:
    """A token revocation is recorded, with the ids it revoked, only if it revoked any."""
    return ListedIn(audit)
