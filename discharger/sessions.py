"""Logins and sessions: argon2id checks, the failed-login throttle, hashed session secrets."""

from __future__ import annotations

import time
from dataclasses import dataclass

import nacl.utils

from clients import tokens
from clients.caveats import NAME_RE
from clients.errors import Forbidden, RateLimited, TokenFormatError, Unauthorized
from discharger.config import DischargerConfig
from discharger.factors import SecondFactors
from discharger.model import Credentials, Session
from discharger.passwords import Hasher
from discharger.store import DischargerStore, SessionRow, UserRow
from server.audit import Caller
from server.masterkey import MasterKey
from server.ratelimit import throttle_key

BAD_LOGIN = "invalid username or password"
MFA_REQUIRED = "this account needs a code from its authenticator app (or a recovery code)"
MFA_INVALID = "that code is wrong or was used already"


@dataclass(frozen=True)
class Authenticated:
    username: str
    method: str  # the session's auth_method: password, password+totp, ...


class Sessions:
    def __init__(self, config: DischargerConfig, store: DischargerStore, hasher: Hasher, master: MasterKey):
        self.config = config
        self.store = store
        self.hasher = hasher
        self.factors = SecondFactors(store, master)
        self._pseudonym = master.pseudonym  # the throttle stores no username (it may be a password)
        self._pruned_at = 0.0

    async def _attempt(self, username: str, client: str) -> tuple[int | None, str, float]:
        """Count a login attempt for its username and client address, in the database so every
        replica counts the same. Returns the seconds to wait if either is at its limit, the
        address's subject and the attempt's time (to un-count it if it succeeds)."""
        now, window = time.time(), self.config.failure_window
        if now - self._pruned_at > window:
            self._pruned_at = now
            await self.store.prune_login_failures(now - window)
        address = f"addr:{throttle_key(client)}"
        wait = await self.store.login_attempt(
            [(f"user:{self._pseudonym(username)}", self.config.user_failures),
             (address, self.config.address_failures)], now, window)
        return (None if wait is None else max(1, int(wait) + 1)), address, now

    async def forget_failures(self, username: str) -> None:
        """Start this username's failed-login count again (a user was just created with it)."""
        await self.store.clear_login_failures(f"user:{self._pseudonym(username)}")

    async def authenticate(self, creds: Credentials, caller: Caller, second_factor: bool = True) -> Authenticated:
        """Who, and how, if the password is right, the user enabled and, when the user has a
        second factor (and `second_factor`), `creds.totp` is a good code; RateLimited (429) or
        Unauthorized (401, the same for an unknown user and a wrong password; `reason`
        mfa_required or mfa_invalid after a right password) otherwise. Each attempt counts
        before hashing (so parallel guesses cannot slip past the limit) and is un-counted if it
        succeeds: only failures count, so a NAT's good logins lock nobody out. A wrong code is a
        failure too. A success also clears its username's failures. Without `second_factor`,
        the password alone is checked (re-entered to change one's own factors)."""
        username = creds.username
        # Only an existing username is recorded: people paste passwords into that field.
        shown = "<unknown>"
        wait, address, at = await self._attempt(username, caller.client or "unknown")
        if wait is not None:
            caller.record("login", outcome="throttled", user=shown).emit()
            raise RateLimited(f"too many failed logins; try again in {wait} s", retry_after=wait)
        user = await self.store.get_user(username) if NAME_RE.fullmatch(username) else None
        if user is not None:
            shown = username
        ok = await self.hasher.verify(user.password_hash if user else None, creds.password)  # Busy: 429
        if not ok or user is None or user.disabled:
            audit = caller.record("login", outcome="failed", user=shown)
            await self.store.write_audit([audit])
            audit.emit()
            raise Unauthorized(BAD_LOGIN)
        subject = f"user:{self._pseudonym(username)}"
        method = "password"
        if second_factor and await self.factors.enrolled(username):
            if not creds.totp:
                await self.store.forget_attempt([subject, address], at)  # the password was right
                raise Unauthorized(MFA_REQUIRED, reason="mfa_required")
            if not await self.factors.check(username, creds.totp):
                audit = caller.record("login", outcome="failed", user=username, detail={"reason": "mfa_invalid"})
                await self.store.write_audit([audit])
                audit.emit()
                raise Unauthorized(MFA_INVALID, reason="mfa_invalid")
            method = "password+totp"
        await self.store.clear_login_failures(subject)
        await self.store.forget_attempt([address], at)
        return Authenticated(username, method)

    async def password_tag(self, username: str) -> str:
        """A keyed digest of the user's current password hash: a second step started with one
        password is void once the password changes."""
        user = await self.store.get_user(username)
        return self._pseudonym(f"password:{user.password_hash.hex() if user else ''}")

    async def second_factor(self, username: str, code: str, caller: Caller, tag: str | None = None) -> Authenticated:
        """The second step of a browser sign-in whose password was right: the code, counted
        against the user and the address like a login."""
        wait, address, at = await self._attempt(username, caller.client or "unknown")
        if wait is not None:
            caller.record("login", outcome="throttled", user=username).emit()
            raise RateLimited(f"too many failed logins; try again in {wait} s", retry_after=wait)
        user = await self.store.get_user(username)
        if tag is not None and tag != await self.password_tag(username):
            raise Unauthorized("the password changed meanwhile; enter it again")
        if user is None or user.disabled or not await self.factors.check(username, code):
            audit = caller.record("login", outcome="failed", user=username, detail={"reason": "mfa_invalid"})
            await self.store.write_audit([audit])
            audit.emit()
            raise Unauthorized(MFA_INVALID, reason="mfa_invalid")
        await self.store.clear_login_failures(f"user:{self._pseudonym(username)}")
        await self.store.forget_attempt([address], at)
        return Authenticated(username, "password+totp")

    async def confirm_app(self, username: str, code: str, caller: Caller) -> list[str]:
        """Confirm an authenticator app's set-up with its code (the recovery codes), each try
        counted like a login, so a borrowed browser cannot guess its way to the codes."""
        wait, address, at = await self._attempt(username, caller.client or "unknown")
        if wait is not None:
            raise RateLimited(f"too many wrong codes; try again in {wait} s", retry_after=wait)
        codes = await self.factors.confirm(username, code, caller)  # Unauthorized: stays counted
        await self.store.forget_attempt([address], at)
        return codes

    async def login(self, creds: Credentials, caller: Caller) -> Session:
        if not self.config.passwords:
            raise Forbidden("password sign-in is turned off here: sign in with `sable login --web`",
                            reason="passwords_off")
        who = await self.authenticate(creds, caller)
        return await self.create(who.username, caller, auth_method=who.method)

    async def create(self, username: str, caller: Caller, event: str = "login",
                     auth_method: str = "password") -> Session:
        """A new API session for a user already authenticated (by password, or by a device
        approval, which passes on how its browser signed in)."""
        now = int(time.time())
        secret = tokens.encode(tokens.SESSION, nacl.utils.random(32))
        expires_at = now + self.config.session_ttl
        audit = caller.record(event, user=username, detail={"auth_method": auth_method})
        await self.store.create_session(tokens.secret_digest(secret), username, expires_at, now, audit, auth_method)
        audit.emit()
        return Session(secret, expires_at, auth_method)

    async def user(self, session: str | None) -> str:
        """The username a session secret belongs to; Unauthorized if none or expired."""
        return (await self.find(session)).username

    async def find(self, session: str | None) -> SessionRow:
        """The session a secret names (who, until when, how it was made); Unauthorized if none
        or expired."""
        try:
            tokens.parse_secret(session or "", tokens.SESSION)
        except TokenFormatError:
            raise Unauthorized("a valid session (Bearer sable_ss_...) is required") from None
        found = await self.store.session(tokens.secret_digest(session or ""), int(time.time()))
        if found is None:
            raise Unauthorized("the session is unknown or has expired")
        return found

    async def current(self, session: str | None) -> tuple[UserRow, SessionRow]:
        """The session's user (with roles) and the session; Unauthorized if none."""
        found = await self.find(session)
        user = await self.store.get_user(found.username)
        if user is None or user.disabled:
            raise Unauthorized("the session is unknown or has expired: run `sable login`")
        return user, found

    async def logout(self, session: str | None) -> None:
        await self.user(session)
        await self.store.delete_session(tokens.secret_digest(session or ""))
