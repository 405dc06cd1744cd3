"""Token records held in memory so a warm verify never touches the database.

A record carries the token's initial signature (derived from its decrypted root key), its
lineage, whether it is revoked, and the fingerprints of its revoked attenuations, up to
MAX_REVOKED_IN_MEMORY of them. Revoke by value is open to any holder, so one token can gather
any number of revoked attenuations; past the cap its record keeps none and the store judges
them, with a bounded set of fingerprints it already found clear. The cache is a bounded LRU. Revocations drop entries; a generation counter makes sure a load that
raced a revocation is redone rather than cached stale.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field

from authority.root_keys import RootKeys
from authority.store import AuthorityStore, RevocationRow

MAX_REVOKED_IN_MEMORY = 64  # per token; memory per record stays a few KiB whatever is revoked


@dataclass(slots=True)
class TokenRecord:
    id: str
    kind: str
    org: str
    user: str | None
    parent: str | None
    caveat_count: int
    sig0: bytes | None  # None: the stored key does not open under this master key
    revoked: bool
    revoked_fps: set[bytes] | None  # None: more than MAX_REVOKED_IN_MEMORY; the store judges
    last_used_at: int
    # Past the cap: attenuation fingerprints the store found unrevoked (bounded, like the
    # above), and a counter each attenuation revocation bumps, so an answer that raced one is
    # not kept.
    cleared: set[bytes] = field(default_factory=set)
    version: int = 0
    principal: str | None = None  # only this principal's discharge opens it (SPEC §16)
    strip_once: bool = False
    created_at: int = 0


class TokenCache:
    def __init__(self, store: AuthorityStore, keys: RootKeys, max_entries: int = 100_000,
                 max_revoked: int = MAX_REVOKED_IN_MEMORY):
        self._store = store
        self._keys = keys
        self._max = max_entries
        self.max_revoked = max_revoked
        self._entries: OrderedDict[str, TokenRecord] = OrderedDict()
        self._generation = 0

    def __len__(self) -> int:
        return len(self._entries)

    async def get(self, token_id: str) -> TokenRecord | None:
        rec = self._entries.get(token_id)
        if rec is not None:
            self._entries.move_to_end(token_id)
            return rec
        while True:
            generation = self._generation
            loaded = await self._store.load_token(token_id, self.max_revoked)
            if generation == self._generation:
                break
        if loaded is None:
            return None
        row, fps = loaded
        identifier = b"\x01" + bytes.fromhex(row.id)
        rec = TokenRecord(
            id=row.id, kind=row.kind, org=row.org, user=row.user, parent=row.parent,
            caveat_count=row.caveat_count, sig0=self._keys.initial_signature(row.id, row.sealed_key, identifier),
            revoked=row.revoked_at is not None, revoked_fps=None if fps is None else set(fps), last_used_at=row.last_used_at or 0,
            principal=row.principal, strip_once=row.strip_once, created_at=row.created_at,
        )
        self._entries[token_id] = rec
        if len(self._entries) > self._max:
            self._entries.popitem(last=False)
        return rec

    def invalidate(self, token_ids: Iterable[str]) -> None:
        self._generation += 1
        for token_id in token_ids:
            self._entries.pop(token_id, None)

    def apply(self, revocations: Iterable[RevocationRow]) -> None:
        """Apply feed entries: a revoked token is dropped, while a revoked attenuation is added
        to its token's record in place, so a token with many revoked attenuations is not
        reloaded (with all of them) after each one."""
        for r in revocations:
            if r.scope == "attenuation" and r.fingerprint is not None:
                self.revoke_attenuation(r.token_id, r.fingerprint)
            else:
                self.invalidate((r.token_id,))

    def revoke_attenuation(self, token_id: str, fingerprint: bytes) -> None:
        self._generation += 1  # a load in flight may have read the fingerprints before this one
        rec = self._entries.get(token_id)
        if rec is None:
            return
        rec.version += 1
        if rec.revoked_fps is None:
            rec.cleared.discard(fingerprint)
        else:
            rec.revoked_fps.add(fingerprint)
            if len(rec.revoked_fps) > self.max_revoked:
                rec.revoked_fps = None  # from now on the store judges this token's attenuations

    async def attenuation_revoked(self, rec: TokenRecord, fingerprints: tuple[bytes, ...]) -> bool:
        """Rule 2 for a record past the cap: whether any of these attenuation fingerprints is
        revoked, asking the store for those not already found clear."""
        unknown = [fp for fp in fingerprints if fp not in rec.cleared]
        if not unknown:
            return False
        version = rec.version
        if await self._store.attenuation_revoked(rec.id, unknown):
            return True
        if rec.version == version:  # no attenuation of this token was revoked meanwhile
            if len(rec.cleared) + len(unknown) > self.max_revoked:
                rec.cleared.clear()
            rec.cleared.update(unknown)
        return False
