"""Authentication tickets: the caveat id of the third-party caveat (SPEC §3).

Layout: version byte 0x01, 8-byte key id in the clear, then a NaCl sealed box to the
discharger's X25519 key holding JSON {"k": caveat key, "org": org, "ttl": seconds} and,
since 0.2, what the token is for, so an approval page can say what is approved: "p" purpose
(`permission` or `user`), "n" the token's name, "r" the role the user needs in the org.
Tickets without them (0.1.0) mean a permission token needing role `member`.
Sealing needs only the public key; opening lives with the discharger's keys.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass

import nacl.public

from clients.caveats import ROLES  # lowest first; re-exported for the discharger
from clients.errors import TicketError

VERSION = 1
KID_BYTES = 8
MAX_TTL = 300


PURPOSES = ("permission", "user")


@dataclass(frozen=True, slots=True)
class TicketContents:
    caveat_key: bytes
    org: str
    ttl: int
    purpose: str = "permission"
    name: str | None = None
    role: str = "member"


def b64e(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def b64d(text: str) -> bytes:
    if not isinstance(text, str):
        raise ValueError("not a string")
    text = text.strip()
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def key_id(public_key: bytes) -> str:
    """A discharger key's id: hex of the first 8 bytes of SHA-256 of the public key."""
    return hashlib.sha256(public_key).digest()[:KID_BYTES].hex()


def seal(public_key: bytes, caveat_key: bytes, org: str, ttl: int, purpose: str = "permission",
         name: str | None = None, role: str = "member") -> bytes:
    fields = {"k": b64e(caveat_key), "org": org, "ttl": ttl, "p": purpose, "r": role}
    if name is not None:
        fields["n"] = name
    payload = json.dumps(fields, separators=(",", ":"))
    box = nacl.public.SealedBox(nacl.public.PublicKey(public_key))
    return bytes([VERSION]) + bytes.fromhex(key_id(public_key)) + box.encrypt(payload.encode())


def ticket_kid(ticket: bytes) -> str:
    if len(ticket) < 1 + KID_BYTES + 48 or ticket[0] != VERSION:
        raise TicketError("ticket has an unknown version or is truncated")
    return ticket[1 : 1 + KID_BYTES].hex()


def decode_payload(plain: bytes) -> TicketContents:
    try:
        data = json.loads(plain)
        key = b64d(data["k"])
        org, ttl = data["org"], data["ttl"]
        purpose, name, role = data.get("p", "permission"), data.get("n"), data.get("r", "member")
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
        raise TicketError("ticket payload is malformed") from None
    if len(key) != 32 or not isinstance(org, str) or type(ttl) is not int or not 0 < ttl <= MAX_TTL \
            or purpose not in PURPOSES or role not in ROLES or not (name is None or isinstance(name, str)):
        raise TicketError("ticket payload is malformed")
    return TicketContents(key, org, ttl, purpose, name, role)
