"""Building signed tokens: permission tokens with their authentication caveat, and the
service tokens that strip produces. Root keys stay inside the key store."""

from __future__ import annotations

import nacl.utils

from clients import crypto, tickets
from clients.tokens import RawCaveat, Token

from authority.config import TrustedDischarger
from authority.keystore import KeyStore


def new_token_id() -> str:
    return nacl.utils.random(16).hex()


def build(
    keys: KeyStore,
    prefix: str,
    location: str,
    token_id: str,
    first_party: list[str],
    discharger: TrustedDischarger | None = None,
    org: str = "",
    ticket_ttl: int = tickets.MAX_TTL,
) -> tuple[Token, bytes]:
    """Sign a new token; returns it with its sealed root key for storage.

    With a discharger, an authentication caveat for `org` is appended last: its ticket is
    sealed to the discharger's current key and holds a fresh caveat key.
    """
    identifier = b"\x01" + bytes.fromhex(token_id)
    sealed, sig = keys.new_token_key(token_id, identifier)
    caveats = []
    for text in first_party:
        predicate = text.encode("utf-8")
        sig = crypto.first_party(sig, predicate)
        caveats.append(RawCaveat(predicate))
    if discharger is not None:
        _, public_key = discharger.public_keys[0]
        caveat_key = nacl.utils.random(32)
        ticket = tickets.seal(public_key, caveat_key, org, ticket_ttl)
        vid = crypto.seal_caveat_key(sig, caveat_key)
        sig = crypto.third_party(sig, vid, ticket)
        caveats.append(RawCaveat(ticket, vid, discharger.location))
    return Token(prefix, location, identifier, tuple(caveats), sig), sealed
