"""Second factors for password users (SPEC §15): TOTP (RFC 6238: SHA-1, 6 digits, 30 s, one
step either side) with ten one-time recovery codes. pyotp computes the codes; the seed is
sealed with the discharger's master key; a time step, once used, is refused, and so is a used
recovery code, on every replica (the database decides)."""

from __future__ import annotations

import hmac
import io
import re
import secrets
import time
from dataclasses import dataclass

import pyotp
import segno

from clients.errors import Conflict, NotFound, Unauthorized
from discharger.store import DischargerStore
from server.audit import Caller
from server.masterkey import MasterKey

ISSUER = "Sable"
PERIOD = 30
RECOVERY_CODES = 10
CODE_RE = re.compile(r"[0-9]{6}")


@dataclass(frozen=True)
class Enrolment:
    secret: str  # base32, for typing into an app
    uri: str  # otpauth://totp/...
    qr_svg: str  # the URI as a QR code




class SecondFactors:
    def __init__(self, store: DischargerStore, master: MasterKey, issuer: str = ISSUER):
        self.store = store
        self.master = master
        self.issuer = issuer

    def _recovery_digest(self, username: str, code: str) -> bytes:
        """Keyed with the master key: 48 random bits, so a copy of the database alone must not
        be enough to find them by brute force."""
        return self.master.pseudonym(f"recovery:{username}:{code.replace('-', '').lower()}").encode()

    async def enrolled(self, username: str) -> bool:
        """Whether a password sign-in needs a second factor: an app or a passkey."""
        return await self.totp_enrolled(username) or bool(await self.store.passkeys_of(username))

    async def totp_enrolled(self, username: str) -> bool:
        row = await self.store.totp(username)
        return row is not None and row.confirmed

    async def begin(self, username: str) -> Enrolment:
        """A new seed for an authenticator app, unconfirmed until a code from it is given."""
        seed = pyotp.random_base32()
        if not await self.store.begin_totp(username, self.master.seal(seed.encode()), int(time.time())):
            raise Conflict("an authenticator app is set up already; remove it first")
        uri = pyotp.TOTP(seed, interval=PERIOD).provisioning_uri(name=username, issuer_name=self.issuer)
        buffer = io.BytesIO()
        segno.make(uri, error="m").save(buffer, kind="svg", scale=4, xmldecl=False, svgns=True)
        return Enrolment(seed, uri, buffer.getvalue().decode())

    def _totp(self, sealed: bytes) -> pyotp.TOTP:
        seed = self.master.unseal(sealed)
        if seed is None:
            raise Unauthorized("the authenticator app's seed cannot be opened: ask an administrator to reset it")
        return pyotp.TOTP(seed.decode(), interval=PERIOD)

    @staticmethod
    def _step(totp: pyotp.TOTP, code: str, now: float) -> int | None:
        """The time step (now, or one either side) whose code this is."""
        if not CODE_RE.fullmatch(code):  # ASCII digits only: isdigit() admits others
            return None
        for offset in (0, -1, 1):
            at = now + offset * PERIOD
            if hmac.compare_digest(totp.at(at), code):
                return int(at // PERIOD)
        return None

    async def confirm(self, username: str, code: str, caller: Caller) -> list[str]:
        """Confirm an enrolment with a code from the app: the recovery codes, shown once."""
        row = await self.store.totp(username)
        if row is None or row.confirmed:
            raise NotFound("no authenticator app is waiting to be confirmed; set one up first")
        step = self._step(self._totp(row.sealed_seed), code.strip(), time.time())
        if step is None:
            raise Unauthorized("that code is not the app's current one; check the app's clock and try again",
                               reason="mfa_invalid")
        codes = [f"{secrets.token_hex(2)}-{secrets.token_hex(2)}-{secrets.token_hex(2)}" for _ in range(RECOVERY_CODES)]
        audit = caller.record("mfa_enrol", user=username, detail={"factor": "totp"})
        digests = [self._recovery_digest(username, c) for c in codes]
        if not await self.store.confirm_totp(username, step, digests, audit, row.sealed_seed):
            raise Unauthorized("that code was used already; wait for the next one", reason="mfa_invalid")
        audit.emit()
        return codes

    async def check(self, username: str, code: str) -> bool:
        """Whether `code` (the app's, or an unused recovery code) is good, using it up."""
        row = await self.store.totp(username)
        if row is None or not row.confirmed:
            return False
        code = code.strip()
        step = self._step(self._totp(row.sealed_seed), code, time.time())
        if step is not None:
            return await self.store.use_totp_step(username, step)
        if 12 <= len(code) <= 20:
            return await self.store.use_recovery_code(username, self._recovery_digest(username, code), int(time.time()))
        return False

    async def remove(self, username: str, caller: Caller, by: str) -> bool:
        audit = caller.record("mfa_reset", user=username, detail={"by": by})
        removed = await self.store.remove_factors(username, audit)
        if removed:
            audit.emit()
        return removed
