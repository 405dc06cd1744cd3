"""Token records held in memory so a warm verify never touches the database.

A record carries the token's initial signature (derived from its decrypted root key), its
lineage, whether it is revoked, and the fingerprints of its revoked attenuations. The cache
is a bounded LRU. Revocations drop entries; a generation counter makes sure a load that
raced a revocation is redone rather than cached stale.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass

from authority.keystore import KeyStore
from authority.store import AuthorityStore, RevocationRow


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
    revoked_fps: set[bytes]
    last_used_at: int


class TokenCache:
    def __init__(self, store: AuthorityStore, keys: KeyStore, max_entries: int = 100_000):
        self._store = store
        self._keys = keys
        self._max = max_entries
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
            loaded = await self._store.load_token(token_id)
            if generation == self._generation:
                break
        if loaded is None:
            return None
        row, fps = loaded
        identifier = b"\x01" + bytes.fromhex(row.id)
        rec = TokenRecord(
            id=row.id, kind=row.kind, org=row.org, user=row.user, parent=row.parent,
            caveat_count=row.caveat_count, sig0=self._keys.initial_signature(row.id, row.sealed_key, identifier),
            revoked=row.revoked_at is not None, revoked_fps=set(fps), last_used_at=row.last_used_at or 0,
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
        if rec is not None:
            rec.revoked_fps.add(fingerprint)
