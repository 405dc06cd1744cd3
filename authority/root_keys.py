"""The authority's hazmat: the master key and the per-token root keys.

Root keys are 32 random bytes, stored only as SecretBox(master key) over `token id || key`,
so a row's ciphertext cannot be moved onto another token. User tokens are never stored:
their root key is HMAC-SHA256(user-token key, identifier), the user-token key being 32
random bytes kept in the database sealed with the master key. Outside this module nothing
sees a root key: callers get the token's initial signature, which is all the chain needs.
"""

from __future__ import annotations

import hashlib
import hmac

import nacl.utils

from clients import macaroon
from server.masterkey import MasterKey


class RootKeys:
    def __init__(self, master_key: bytes):
        self.master = MasterKey(master_key)
        self._user_key: bytes | None = None

    async def load_user_key(self, store) -> None:
        """The user-token key from the database (made on first start; replicas agree on one)."""
        sealed = await store.ensure_meta("user_token_key", self.master.seal(nacl.utils.random(32)))
        key = self.master.unseal(sealed)
        if key is None or len(key) != 32:
            raise ValueError("the stored user-token key does not open with this master key")
        self._user_key = key

    def user_token_signature(self, identifier: bytes) -> bytes:
        """A user token's initial signature: its root key is derived, never stored."""
        assert self._user_key is not None, "load_user_key first"
        root_key = hmac.new(self._user_key, identifier, hashlib.sha256).digest()
        return macaroon.initial_signature(root_key, identifier)

    def new_token_key(self, token_id: str, identifier: bytes) -> tuple[bytes, bytes]:
        """Make a root key for a new token: returns (sealed key for storage, initial signature)."""
        root_key = nacl.utils.random(32)
        sealed = self.master.seal(bytes.fromhex(token_id) + root_key)
        return sealed, macaroon.initial_signature(root_key, identifier)

    def initial_signature(self, token_id: str, sealed: bytes, identifier: bytes) -> bytes | None:
        """The token's first signature, or None if the sealed key is not ours or not this token's."""
        plain = self.master.unseal(sealed)
        if plain is None:
            return None
        tid = bytes.fromhex(token_id)
        if len(plain) != len(tid) + 32 or plain[: len(tid)] != tid:
            return None
        return macaroon.initial_signature(plain[len(tid):], identifier)
