"""The libmacaroons HMAC construction, byte for byte what pymacaroons computes.

Pure functions over signatures; they hold no keys. `hmac.digest` is the one-shot C
implementation, several times cheaper than `hmac.new(...).digest()`.
"""

from __future__ import annotations

import hmac
from hashlib import sha256

import nacl.exceptions
import nacl.secret

try:  # the C function behind hmac.digest, without its Python wrapper (a third of a short HMAC)
    from _hashlib import hmac_digest as digest
except ImportError:  # pragma: no cover - CPython without OpenSSL
    digest = hmac.digest

_KEYGEN = b"macaroons-key-generator"
_ZERO = bytes(32)


def _mac(key: bytes, msg: bytes) -> bytes:
    return digest(key, msg, "sha256")


def derive_key(key: bytes) -> bytes:
    return _mac(_KEYGEN, key)


def initial_signature(root_key: bytes, identifier: bytes) -> bytes:
    return _mac(derive_key(root_key), identifier)


def first_party(sig: bytes, predicate: bytes) -> bytes:
    return digest(sig, predicate, "sha256")


def third_party(sig: bytes, vid: bytes, cid: bytes) -> bytes:
    return _mac(sig, _mac(sig, vid) + _mac(sig, cid))


def bind(token_sig: bytes, discharge_sig: bytes) -> bytes:
    """What `prepare_for_request` does: tie a discharge to one token's final signature."""
    return _mac(_ZERO, _mac(_ZERO, token_sig) + _mac(_ZERO, discharge_sig))


def seal_caveat_key(sig: bytes, caveat_key: bytes) -> bytes:
    """The vid of a third-party caveat: the derived caveat key, boxed under the current sig."""
    return bytes(nacl.secret.SecretBox(sig).encrypt(derive_key(caveat_key)))


def open_caveat_key(sig: bytes, vid: bytes) -> bytes | None:
    """The derived caveat key from a vid, or None if the vid was not made under `sig`."""
    try:
        key = nacl.secret.SecretBox(sig).decrypt(vid)
    except (nacl.exceptions.CryptoError, ValueError, TypeError):
        return None
    return key if len(key) == 32 else None


def equal(a: bytes, b: bytes) -> bool:
    return hmac.compare_digest(a, b)


def fingerprint(sig: bytes) -> bytes:
    """A one-way name for a signature, so revoked attenuations are stored without the secret."""
    return sha256(sig).digest()
