"""Device login for the CLI (RFC 8628, SPEC §11): the CLI gets a device code and shows a
user code; a signed-in browser approves or denies that code; the CLI's poll then gets a
session, once. Device codes are stored as digests; user codes are short, so guessing them is
throttled per user and per address, and each works for one decision only."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass

from clients import tokens
from clients.errors import GrantPending, NotFound, RateLimited
from discharger.model import Session
from discharger.sessions import Sessions
from discharger.store import DischargerStore, GrantRow
from server.audit import Caller
from server.pagekit import new_secret
from server.ratelimit import throttle_key

ALPHABET = "BCDFGHJKLMNPQRSTVWXZ"  # no vowels: no words; no look-alikes
EXPIRES_IN = 600
INTERVAL = 5
WRONG_CODES_PER_USER = 5
WRONG_CODES_PER_ADDRESS = 20
WRONG_CODE_WINDOW = 60.0
LOOKS_PER_USER = 10  # wrong codes in page links, apart from the ones typed and posted
LOOKS_PER_ADDRESS = 30


def _now() -> float:  # tests move it
    return time.time()


def normalize(user_code: str) -> str:
    """A user code as stored: upper case, without the dash or spaces."""
    return "".join(ch for ch in user_code.upper() if ch not in "- ")[:16]


def shown(code: str) -> str:
    return f"{code[:4]}-{code[4:]}"


@dataclass(frozen=True, slots=True)
class Authorization:
    device_code: str
    user_code: str  # XXXX-XXXX
    expires_in: int
    interval: int


class DeviceLogins:
    def __init__(self, store: DischargerStore, sessions: Sessions, pseudonym):
        self.store = store
        self.sessions = sessions
        self._pseudonym = pseudonym

    async def authorize(self, client_name: str | None, caller: Caller) -> Authorization:
        now = int(_now())
        device_code = new_secret()
        while True:
            code = "".join(secrets.choice(ALPHABET) for _ in range(8))
            row = GrantRow(tokens.secret_digest(device_code), "device", code,
                           {"client_name": client_name, "client": caller.client},
                           "pending", now, now + EXPIRES_IN, interval=INTERVAL)
            if await self.store.add_grant(row, now):
                break
        caller.record("device_authorize").emit()
        return Authorization(device_code, shown(code), EXPIRES_IN, INTERVAL)

    async def token(self, device_code: str, caller: Caller) -> tuple[Session, str]:
        """The session once approved (once); else GrantPending with RFC 8628's code."""
        row = await self.store.get_grant("device", digest=tokens.secret_digest(device_code))
        if row is None or row.status == "used":
            raise GrantPending("invalid_grant", "unknown or already used device code")
        now = _now()
        if now >= row.expires_at:
            raise GrantPending("expired_token", "the device code has expired; start again")
        status, last = row.status, row.polled_at
        row.polled_at = now
        if last is not None and now - last < row.interval:
            row.interval += 5
            await self.store.update_grant(row, status)
            raise GrantPending("slow_down", f"poll at most every {row.interval} seconds")
        if status == "pending":
            await self.store.update_grant(row, status)
            raise GrantPending("authorization_pending", "waiting for the user to approve this device")
        if status == "denied":
            raise GrantPending("access_denied", "the user denied this device")
        row.status = "used"
        if row.username is None or not await self.store.update_grant(row, "approved"):
            raise GrantPending("invalid_grant", "unknown or already used device code")
        user = await self.store.get_user(row.username)
        if user is None or user.disabled:
            raise GrantPending("access_denied", "the user who approved this device is disabled")
        method = row.data.get("auth_method", "password")  # the approving browser's
        session = await self.sessions.create(row.username, caller, event="device_login", auth_method=method)
        return session, row.username

    async def _throttle(self, username: str, client: str, looking: bool) -> tuple[list[str], float]:
        """Count a code entry against the user and the address; RateLimited if either is over.
        Page look-ups count apart from entered codes: a link from another site can make a
        signed-in browser look codes up, and must not lock its user out of approving."""
        now = _now()
        kind, per_user, per_address = ("device-look", LOOKS_PER_USER, LOOKS_PER_ADDRESS) if looking else \
            ("device", WRONG_CODES_PER_USER, WRONG_CODES_PER_ADDRESS)
        limits = [(f"{kind}-user:{self._pseudonym(username)}", per_user),
                  (f"{kind}-addr:{throttle_key(client)}", per_address)]
        wait = await self.store.login_attempt(limits, now, WRONG_CODE_WINDOW)
        if wait is not None:
            what = "codes looked up" if looking else "wrong codes"
            raise RateLimited(f"too many {what}; wait a minute and try again", retry_after=max(1, int(wait) + 1))
        return [s for s, _ in limits], now

    async def find(self, username: str, user_code: str, caller: Caller, looking: bool = False) -> GrantRow:
        """The pending, unexpired grant with this code; NotFound otherwise, and that counts as
        a wrong code (`looking`: as a wrong look-up, a page showing a pre-filled code)."""
        subjects, at = await self._throttle(username, caller.client or "unknown", looking)
        code = normalize(user_code)
        row = await self.store.get_grant("device", lookup=code) if len(code) == 8 else None
        if row is None or row.status != "pending" or _now() >= row.expires_at:
            raise NotFound("no pending device login has that code; check it and try again")
        await self.store.forget_attempt(subjects, at)  # only wrong codes count
        return row

    async def decide(self, username: str, user_code: str, approve: bool, caller: Caller,
                     auth_method: str = "password") -> GrantRow:
        row = await self.find(username, user_code, caller)
        row.status, row.username = ("approved" if approve else "denied"), username
        row.data = {**row.data, "auth_method": auth_method}
        audit = caller.record("device_approve" if approve else "device_deny", user=username,
                              outcome="ok" if approve else "denied")
        if not await self.store.update_grant(row, "pending", audit):
            raise NotFound("no pending device login has that code; check it and try again")
        audit.emit()
        return row
