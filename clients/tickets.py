"""Authentication tickets: the caveat id of the third-party caveat (SPEC §3).

Layout: version byte 0x01, 8-byte key id in the clear, then a NaCl sealed box to the
discharger's X25519 key holding JSON {"k": caveat key, "org": org, "ttl": seconds} and,
since 0.2, what the token is for, so an approval page can say what is approved: "p" purpose
(`permission` or `user`), "n" the token's name, "r" the role the user needs in the org.
Tickets without them (0.1.0) mean a permission token needing role `member`.
Version 0x02 (SPEC §16) adds "f", the service principal (`ci:NAME`) the ticket is sealed for:
only that principal may discharge it, and dischargers before 0.7 refuse the version (400)
rather than discharge it for a person.
Sealing needs only the public key; opening lives with the discharger's keys.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from dataclasses import dataclass

import nacl.public

from clients.caveats import ROLES  # lowest first; re-exported for the discharger
from clients.errors import TicketError

VERSION = 1
VERSION_FOR = 2  # sealed for a service principal
VERSIONS = (VERSION, VERSION_FOR)
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
    principal: str | None = None  # `ci:NAME`: only this principal discharges it (version 2)


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
         name: str | None = None, role: str = "member", principal: str | None = None) -> bytes:
    fields = {"k": b64e(caveat_key), "org": org, "ttl": ttl, "p": purpose, "r": role}
    if name is not None:
        fields["n"] = name
    if principal is not None:
        fields["f"] = principal
    payload = json.dumps(fields, separators=(",", ":"))
    box = nacl.public.SealedBox(nacl.public.PublicKey(public_key))
    version = VERSION if principal is None else VERSION_FOR
    return bytes([version]) + bytes.fromhex(key_id(public_key)) + box.encrypt(payload.encode())


def ticket_kid(ticket: bytes) -> str:
    if len(ticket) < 1 + KID_BYTES + 48 or ticket[0] not in VERSIONS:
        raise TicketError("ticket has an unknown version or is truncated")
    return ticket[1 : 1 + KID_BYTES].hex()


def decode_payload(plain: bytes, version: int = VERSION) -> TicketContents:
    """The payload of a ticket of `version`: a principal ("f") in version 2 and only there, so
    the version byte and the payload cannot disagree."""
    try:
        data = json.loads(plain)
        key = b64d(data["k"])
        org, ttl = data["org"], data["ttl"]
        purpose, name, role = data.get("p", "permission"), data.get("n"), data.get("r", "member")
        principal = data.get("f")
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
        raise TicketError("ticket payload is malformed") from None
    if len(key) != 32 or not isinstance(org, str) or type(ttl) is not int or not 0 < ttl <= MAX_TTL \
            or purpose not in PURPOSES or role not in ROLES or not (name is None or isinstance(name, str)):
        raise TicketError("ticket payload is malformed")
    if (principal is not None) != (version == VERSION_FOR) or not (principal is None or _principal(principal)):
        raise TicketError("ticket payload is malformed")
    return TicketContents(key, org, ttl, purpose, name, role, principal)


PRINCIPAL_RE = re.compile(r"ci:[a-z0-9-]{1,40}")


def _principal(value: object) -> bool:
    return isinstance(value, str) and PRINCIPAL_RE.fullmatch(value) is not None
