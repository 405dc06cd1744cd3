"""Sable token strings: `<prefix><base64url libmacaroons v2><base62 crc32>` (SPEC §2).

Parsing is strict and runs the cheap checks (size, prefix, checksum, alphabet) before any
decoding. Every failure raises `TokenFormatError`, never anything else, and no message
contains the token itself.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import zlib
from dataclasses import dataclass
from typing import NamedTuple

from clients.errors import TokenFormatError

MAX_TOKEN_CHARS = 16 * 1024
MAX_CAVEATS = 64
MAX_PRESENTATION = 32

PERMISSION = "sable_pt_"
SERVICE = "sable_st_"
DISCHARGE = "sable_dt_"
USER = "sable_ut_"
SESSION = "sable_ss_"
ADMIN = "sable_adm_"
MACAROON_PREFIXES = (PERMISSION, SERVICE, DISCHARGE, USER)
SECRET_PREFIXES = (SESSION, ADMIN)
KIND_NAMES = {PERMISSION: "permission", SERVICE: "service", DISCHARGE: "discharge", USER: "user"}

CHECK_CHARS = 6
_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_PAD = ("", "", "==", "=")
_B64_VALUE = {c: i for i, c in enumerate("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")}

# libmacaroons v2 field types.
_V2 = 2
_EOS, _LOCATION, _IDENTIFIER, _VID, _SIGNATURE = 0, 1, 2, 4, 6
TOKEN_ID_BYTES = 16
# A user token's identifier: 0x02, its 16-byte id, its role (0 member, 1 admin), then its org.
# Its root key is derived from the whole identifier, so org and role are signed, not stored.
USER_ID_VERSION = 2
USER_ROLES = ("member", "admin")


class RawCaveat(NamedTuple):
    """One caveat as it sits in the macaroon. First-party caveats have no vid and no location."""

    cid: bytes
    vid: bytes | None = None
    location: str | None = None

    @property
    def third_party(self) -> bool:
        return self.vid is not None


@dataclass(frozen=True, slots=True)
class Token:
    """A parsed macaroon with its Sable prefix. Immutable: attenuation builds a new one."""

    prefix: str
    location: str | None
    identifier: bytes
    caveats: tuple[RawCaveat, ...]
    signature: bytes

    @property
    def kind(self) -> str:
        return KIND_NAMES[self.prefix]

    @property
    def token_id(self) -> str | None:
        """Lowercase hex of the 16 random identifier bytes; None for a discharge."""
        if self.prefix == DISCHARGE:
            return None
        return self.identifier[1:1 + TOKEN_ID_BYTES].hex()

    def encode(self) -> str:
        return encode(self.prefix, to_bytes(self))


def checksum(text: str) -> str:
    n = zlib.crc32(text.encode("ascii"))
    n, d5 = divmod(n, 62)  # unrolled: this runs on every token parsed
    n, d4 = divmod(n, 62)
    n, d3 = divmod(n, 62)
    n, d2 = divmod(n, 62)
    d0, d1 = divmod(n, 62)
    b = _BASE62
    return b[d0] + b[d1] + b[d2] + b[d3] + b[d4] + b[d5]


def encode(prefix: str, payload: bytes) -> str:
    body = prefix + base64.urlsafe_b64encode(payload).decode("ascii").rstrip("=")
    return body + checksum(body)


def split(text: str, prefixes: tuple[str, ...]) -> tuple[str, bytes]:
    """Check size, prefix, checksum and base64url; return (prefix, payload bytes)."""
    if not isinstance(text, str):
        raise TokenFormatError("token must be a string")
    text = text.strip()
    if len(text) > MAX_TOKEN_CHARS:
        raise TokenFormatError(f"token is longer than {MAX_TOKEN_CHARS} characters")
    if not text.isascii():
        raise TokenFormatError("token has characters outside ASCII")
    prefix = next((p for p in prefixes if text.startswith(p)), None)
    if prefix is None:
        raise TokenFormatError("unknown token prefix")
    body, check = text[:-CHECK_CHARS], text[-CHECK_CHARS:]
    if len(body) <= len(prefix):
        raise TokenFormatError("token is truncated")
    if checksum(body) != check:
        raise TokenFormatError("bad checksum: the token was mistyped or truncated")
    payload = body[len(prefix):]
    # binascii's strict mode rejects anything outside the (standard) alphabet once `-_` are
    # mapped to `+/`; so the original must not hold `+`, `/` or `=` itself.
    rem = len(payload) % 4
    if rem == 1 or "+" in payload or "/" in payload or "=" in payload:
        raise TokenFormatError("payload is not valid base64url")
    try:
        raw = binascii.a2b_base64(payload.replace("-", "+").replace("_", "/") + _PAD[rem], strict_mode=True)
    except (binascii.Error, ValueError):
        raise TokenFormatError("payload is not valid base64url") from None
    # Reject non-canonical encodings (stray low bits in the last character): one spelling per token.
    if rem and _B64_VALUE[payload[-1]] & (0x0F if rem == 2 else 0x03):
        raise TokenFormatError("payload is not canonical base64url")
    return prefix, raw


def parse(text: str, prefixes: tuple[str, ...] = MACAROON_PREFIXES) -> Token:
    """Parse a token string. Raises TokenFormatError on any defect."""
    prefix, raw = split(text, prefixes)
    return from_bytes(prefix, raw)


def user_identifier(token_id: str, org: str, role: str) -> bytes:
    return bytes([USER_ID_VERSION]) + bytes.fromhex(token_id) + bytes([USER_ROLES.index(role)]) + org.encode()


def user_claims(token: Token) -> tuple[str, str]:
    """A parsed user token's (org, role), as signed into its identifier."""
    ident = token.identifier
    try:
        org = ident[2 + TOKEN_ID_BYTES:].decode("utf-8")
    except UnicodeDecodeError:
        raise TokenFormatError("token identifier has the wrong shape") from None
    return org, USER_ROLES[ident[1 + TOKEN_ID_BYTES]]


def parse_secret(text: str, prefix: str) -> bytes:
    """Parse an opaque secret (session or admin credential) and return its random bytes."""
    _, raw = split(text, (prefix,))
    if len(raw) != 32:
        raise TokenFormatError("credential has the wrong length")
    return raw


def secret_digest(secret: str) -> bytes:
    """How sessions and admin credentials are stored: SHA-256, since they are 32 random bytes."""
    return hashlib.sha256(secret.strip().encode("utf-8", "replace")).digest()


# --- libmacaroons v2 binary --------------------------------------------------------------


def from_bytes(prefix: str, raw: bytes) -> Token:
    try:
        return _decode_v2(prefix, raw)
    except TokenFormatError:
        raise
    except (IndexError, ValueError, UnicodeDecodeError):
        raise TokenFormatError("payload is not a libmacaroons v2 macaroon") from None


def _long_varint(raw: bytes, i: int) -> tuple[int, int]:
    n = shift = 0
    start = i
    while True:
        b = raw[i]
        i += 1
        n |= (b & 0x7F) << shift
        if b < 0x80:
            break
        shift += 7
        if shift > 28:
            raise TokenFormatError("varint too long")
    if b == 0 and i - start > 1:
        raise TokenFormatError("non-minimal varint")
    return n, i


def _data(raw: bytes, i: int) -> tuple[bytes, int]:
    """A field's length (a varint, almost always one byte) and bytes, starting at i."""
    n = raw[i]
    i += 1
    if n >= 0x80:
        n, i = _long_varint(raw, i - 1)
    end = i + n
    if end > len(raw):
        raise TokenFormatError("field extends past the end")
    return raw[i:end], end


def _decode_v2(prefix: str, raw: bytes) -> Token:
    """One pass over the packets. Field types are varints, but every valid one fits in a
    byte, so a byte outside the expected set (including a multi-byte type) is rejected."""
    if not raw or raw[0] != _V2:
        raise TokenFormatError("not a libmacaroons v2 macaroon")
    location = None
    ft = raw[1]
    i = 2
    if ft == _LOCATION:
        loc, i = _data(raw, i)
        location = loc.decode("utf-8")
        ft = raw[i]
        i += 1
    if ft != _IDENTIFIER:
        raise TokenFormatError("macaroon header has no identifier")
    identifier, i = _data(raw, i)
    if raw[i] != _EOS:
        raise TokenFormatError("unexpected field in macaroon header")
    i += 1
    if prefix == USER:
        if not 1 + TOKEN_ID_BYTES + 2 <= len(identifier) <= 1 + TOKEN_ID_BYTES + 1 + 128 \
                or identifier[0] != USER_ID_VERSION or identifier[1 + TOKEN_ID_BYTES] >= len(USER_ROLES):
            raise TokenFormatError("token identifier has the wrong shape")
    elif prefix != DISCHARGE and (len(identifier) != 1 + TOKEN_ID_BYTES or identifier[0] != 1):
        raise TokenFormatError("token identifier has the wrong shape")
    caveats: list[RawCaveat] = []
    size = len(raw)
    while True:
        ft = raw[i]
        i += 1
        if ft == _EOS:
            break
        if len(caveats) == MAX_CAVEATS:
            raise TokenFormatError(f"more than {MAX_CAVEATS} caveats")
        cl = None
        if ft == _LOCATION:
            cl, i = _data(raw, i)
            ft = raw[i]
            i += 1
        if ft != _IDENTIFIER:
            raise TokenFormatError("caveat has no identifier")
        n = raw[i]
        if n < 0x80:  # inline the common case of _data: a short caveat
            cid = raw[i + 1:i + 1 + n]
            i += 1 + n
            if i > size:
                raise TokenFormatError("field extends past the end")
        else:
            cid, i = _data(raw, i)
        ft = raw[i]
        i += 1
        if ft == _EOS:
            if cl is not None:
                raise TokenFormatError("first-party caveat with a location")
            caveats.append(RawCaveat(cid))
            continue
        if ft != _VID:
            raise TokenFormatError("unexpected field in caveat")
        vid, i = _data(raw, i)
        if raw[i] != _EOS:
            raise TokenFormatError("unexpected field in caveat")
        i += 1
        caveats.append(RawCaveat(cid, vid, None if cl is None else cl.decode("utf-8")))
    if raw[i] != _SIGNATURE or raw[i + 1] != 32 or i + 34 != len(raw):
        raise TokenFormatError("bad signature field or trailing bytes")
    return Token(prefix, location, identifier, tuple(caveats), raw[i + 2:])


def _put(out: bytearray, n: int) -> None:
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


def _field(out: bytearray, ft: int, data: bytes) -> None:
    _put(out, ft)
    _put(out, len(data))
    out += data


def to_bytes(token: Token) -> bytes:
    """Serialise exactly as pymacaroons does with MACAROON_V2."""
    out = bytearray([_V2])
    if token.location is not None:
        _field(out, _LOCATION, token.location.encode("utf-8"))
    _field(out, _IDENTIFIER, token.identifier)
    out.append(_EOS)
    for c in token.caveats:
        if c.location is not None:
            _field(out, _LOCATION, c.location.encode("utf-8"))
        _field(out, _IDENTIFIER, c.cid)
        if c.vid is not None:
            _field(out, _VID, c.vid)
        out.append(_EOS)
    out.append(_EOS)
    _field(out, _SIGNATURE, token.signature)
    return bytes(out)


def bearer_value(header: str) -> str | None:
    """The credentials of an `Authorization: Bearer ...` header value, or None."""
    scheme, _, rest = header.partition(" ")
    if scheme.lower() != "bearer" or not rest.strip():
        return None
    return rest.strip()


def split_presentation(value: str) -> list[str]:
    """Split an `Authorization: Bearer a,b,c` value into token strings."""
    parts = [p.strip() for p in value.split(",")]
    parts = [p for p in parts if p]
    if len(parts) > MAX_PRESENTATION:
        raise TokenFormatError(f"more than {MAX_PRESENTATION} tokens in one presentation")
    return parts
