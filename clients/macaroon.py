"""The libmacaroons construction, byte for byte what pymacaroons computes, and the one place
Sable computes a signature chain: minting, attenuating, discharging, binding and verifying
all come here. Nothing else in Sable calls HMAC.

Pure functions over signatures and tokens. The root and caveat keys they take are handed in
by the modules that hold them (the authority's keystore, the discharger's ticket opening).
`digest` is the C function behind `hmac.digest`, several times cheaper than `hmac.new`.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from hashlib import sha256
from typing import TypeVar

from clients.tokens import DISCHARGE, RawCaveat, Token

try:  # the C function behind hmac.digest, without its Python wrapper (a third of a short HMAC)
    from _hashlib import hmac_digest as digest
except ImportError:  # pragma: no cover - CPython without OpenSSL
    digest = hmac.digest  # type: ignore[assignment]

T = TypeVar("T")

_KEYGEN = b"macaroons-key-generator"
_ZERO = bytes(32)


def derive_key(key: bytes) -> bytes:
    return digest(_KEYGEN, key, "sha256")


def initial_signature(root_key: bytes, identifier: bytes) -> bytes:
    return digest(derive_key(root_key), identifier, "sha256")


def first_party(sig: bytes, predicate: bytes) -> bytes:
    return digest(sig, predicate, "sha256")


def third_party(sig: bytes, vid: bytes, cid: bytes) -> bytes:
    return digest(sig, digest(sig, vid, "sha256") + digest(sig, cid, "sha256"), "sha256")


def bind(token_sig: bytes, discharge_sig: bytes) -> bytes:
    """What `prepare_for_request` does: tie a discharge to one token's final signature."""
    return digest(_ZERO, digest(_ZERO, token_sig, "sha256") + digest(_ZERO, discharge_sig, "sha256"), "sha256")


def chain(sig: bytes, caveats: Iterable[RawCaveat]) -> list[bytes]:
    """The signature after each caveat, starting from `sig`."""
    sigs = []
    for c in caveats:
        if c.vid is None:
            sig = digest(sig, c.cid, "sha256")
        else:
            sig = third_party(sig, c.vid, c.cid)
        sigs.append(sig)
    return sigs


def walk(sig: bytes, caveats: Iterable[RawCaveat], parse: Callable[[bytes], T]
         ) -> tuple[list[bytes], list[T], list[tuple[int, RawCaveat, bytes]]]:
    """`chain` and the split verification needs, in one pass (the hot path of every verify):
    (the signature after each caveat, the first-party predicates as `parse` makes them, each
    third-party caveat as (index, caveat, the signature before it: the key its vid is boxed
    under))."""
    sigs: list[bytes] = []
    first: list[T] = []
    third: list[tuple[int, RawCaveat, bytes]] = []
    for i, c in enumerate(caveats):
        if c.vid is None:
            first.append(parse(c.cid))
            sig = digest(sig, c.cid, "sha256")
        else:
            third.append((i, c, sig))
            sig = third_party(sig, c.vid, c.cid)
        sigs.append(sig)
    return sigs, first, third


def final_signature(sig: bytes, caveats: Sequence[RawCaveat]) -> bytes:
    sigs = chain(sig, caveats)
    return sigs[-1] if sigs else sig


def seal_caveat_key(sig: bytes, caveat_key: bytes) -> bytes:
    """The vid of a third-party caveat: the derived caveat key, boxed under the current sig."""
    import nacl.secret  # here, not at the top: offline commands that never box start faster

    return bytes(nacl.secret.SecretBox(sig).encrypt(derive_key(caveat_key)))


def open_caveat_key(sig: bytes, vid: bytes) -> bytes | None:
    """The derived caveat key from a vid, or None if the vid was not made under `sig`. This
    runs on every verify of a permission token, so it calls the binding SecretBox.decrypt
    wraps directly (a vid is the nonce, then the MAC and the boxed key)."""
    box_open, errors = _BOX_OPEN or _load_box_open()
    try:
        key = box_open(vid[_NONCE_BYTES:], vid[:_NONCE_BYTES], sig)
    except errors:
        return None
    return key if len(key) == 32 else None


_NONCE_BYTES = 24
_BOX_OPEN: tuple | None = None


def _load_box_open() -> tuple:
    """PyNaCl loads on first use: offline commands that never open a box start without it."""
    global _BOX_OPEN
    import nacl.bindings
    import nacl.exceptions

    _BOX_OPEN = (nacl.bindings.crypto_secretbox_open_easy, (nacl.exceptions.CryptoError, ValueError, TypeError))
    return _BOX_OPEN


def equal(a: bytes, b: bytes) -> bool:
    return hmac.compare_digest(a, b)


def fingerprint(sig: bytes) -> bytes:
    """A one-way name for a signature, so revoked attenuations are stored without the secret."""
    return sha256(sig).digest()


# --- building tokens ---------------------------------------------------------------------


def _first_party(texts: Iterable[str]) -> tuple[RawCaveat, ...]:
    return tuple(RawCaveat(t.encode("utf-8")) for t in texts)


def mint(prefix: str, location: str, identifier: bytes, sig0: bytes, caveats: Iterable[str]) -> Token:
    """A new token from its initial signature (see `initial_signature`) and first-party caveats."""
    raw = _first_party(caveats)
    return Token(prefix, location, identifier, raw, final_signature(sig0, raw))


def add_third_party(token: Token, caveat_key: bytes, ticket: bytes, location: str) -> Token:
    """Append a third-party caveat whose discharge must be made with `caveat_key`."""
    vid = seal_caveat_key(token.signature, caveat_key)
    return replace(token, caveats=(*token.caveats, RawCaveat(ticket, vid, location)),
                   signature=third_party(token.signature, vid, ticket))


def attenuate(token: Token, caveats: Iterable[str]) -> Token:
    """Append first-party caveats; anyone holding the token can."""
    raw = _first_party(caveats)
    return replace(token, caveats=token.caveats + raw, signature=final_signature(token.signature, raw))


def discharge(caveat_key: bytes, ticket: bytes, location: str, caveats: Iterable[str]) -> Token:
    """A discharge for the third-party caveat whose id is `ticket` (unbound)."""
    return mint(DISCHARGE, location, ticket, initial_signature(caveat_key, ticket), caveats)


def bind_discharge(token: Token, discharge: Token) -> Token:
    """Bind a discharge to this exact token (pymacaroons `prepare_for_request`)."""
    return replace(discharge, signature=bind(token.signature, discharge.signature))


def discharge_signature(derived_key: bytes, discharge: Token) -> bytes:
    """The unbound signature a discharge must carry, from the caveat key its vid holds."""
    return final_signature(first_party(derived_key, discharge.identifier), discharge.caveats)
