"""Test doubles that play the parties Sable does not control in a given test.

`FakeDischarger` holds an X25519 keypair, opens tickets with the real discharger code and
mints discharges with plain pymacaroons, so every discharge test is also an interop test.
"""

from __future__ import annotations

import base64
import time

import nacl.public
from pymacaroons import MACAROON_V2, Macaroon

from authority.config import TrustedDischarger
from clients import caveats, offline, tokens
from clients.tickets import key_id
from discharger.tickets import unseal_ticket

DISCHARGER_URL = "http://127.0.0.1:8701"


def pm_to_string(prefix: str, m: Macaroon) -> str:
    return tokens.encode(prefix, base64.urlsafe_b64decode(m.serialize() + "=" * 3))


def string_to_pm(text: str) -> Macaroon:
    _, raw = tokens.split(text, tokens.MACAROON_PREFIXES)
    return Macaroon.deserialize(base64.urlsafe_b64encode(raw).decode().rstrip("="))


class FakeDischarger:
    def __init__(self, location: str = DISCHARGER_URL):
        self.location = location
        self.private = nacl.public.PrivateKey.generate()
        self.public = bytes(self.private.public_key)
        self.kid = key_id(self.public)

    @property
    def trust(self) -> TrustedDischarger:
        return TrustedDischarger(self.location, ((self.kid, self.public),))

    def ticket(self, token: str, index: int = 0) -> tokens.RawCaveat:
        return [c for c in tokens.parse(token).caveats if c.third_party][index]

    def discharge_key(self, token: str, index: int = 0) -> bytes:
        """The caveat key sealed in the token's ticket, as the real discharger would open it."""
        return unseal_ticket({self.kid: self.private}, self.ticket(token, index).cid).caveat_key

    def discharge(self, token: str, user: str = "alice", ttl: int = 300, bind: bool = True,
                  extra: list[str] = (), index: int = 0, now: float | None = None,
                  discharge_id: str | None = None) -> str:
        """A discharge as the real discharger makes it: `discharge-id` first when given, then
        `user`, `expires`, and `extra` after them."""
        cav = self.ticket(token, index)
        contents = unseal_ticket({self.kid: self.private}, cav.cid)
        m = Macaroon(location=cav.location, identifier=cav.cid, key=contents.caveat_key, version=MACAROON_V2)
        if discharge_id is not None:
            m.add_first_party_caveat(f"discharge-id {discharge_id}")
        m.add_first_party_caveat(f"user {user}")
        m.add_first_party_caveat(f"expires {caveats.format_time(int(now or time.time()) + ttl)}")
        for text in extra:
            m.add_first_party_caveat(text)
        out = pm_to_string(tokens.DISCHARGE, m)
        return offline.bind(token, out) if bind else out
