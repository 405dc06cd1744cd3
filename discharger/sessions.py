"""Logins and sessions: argon2id checks, the failed-login throttle, hashed session secrets."""

from __future__ import annotations

import time

import nacl.utils

from clients import tokens
from clients.caveats import NAME_RE
from clients.errors import RateLimited, TokenFormatError, Unauthorized
from discharger.config import DischargerConfig
from discharger.model import Credentials, Session
from discharger.passwords import Hasher
from discharger.store import DischargerStore
from server.audit import Caller
from server.ratelimit import SlidingCounter, throttle_key

BAD_LOGIN = "invalid username or password"


class Sessions:
    def __init__(self, config: DischargerConfig, store: DischargerStore, hasher: Hasher):
        self.config = config
        self.store = store
        self.hasher = hasher
        self.user_failures = SlidingCounter(config.user_failures, config.failure_window)
        self.address_failures = SlidingCounter(config.address_failures, config.failure_window)

    async def login(self, creds: Credentials, caller: Caller) -> Session:
        username = creds.username
        # Only an existing username is recorded: people paste passwords into that field.
        shown = "<unknown>"
        bucket = throttle_key(caller.client or "unknown")
        wait = self.user_failures.retry_after(username) or self.address_failures.retry_after(bucket)
        if wait is not None:
            caller.record("login", outcome="throttled", user=shown).emit()
            raise RateLimited("too many failed logins; try again later", retry_after=wait)
        # Count the attempt before hashing, so parallel guesses cannot all slip past the limit.
        self.user_failures.add(username)
        self.address_failures.add(bucket)
        user = await self.store.get_user(username) if NAME_RE.fullmatch(username) else None
        if user is not None:
            shown = username
        ok = await self.hasher.verify(user.password_hash if user else None, creds.password)  # Busy: 429
        now = int(time.time())
        if not ok or user is None or user.disabled:
            audit = caller.record("login", outcome="failed", user=shown)
            await self.store.write_audit([audit])
            audit.emit()
            raise Unauthorized(BAD_LOGIN)
        self.user_failures.clear(username)
        secret = tokens.encode(tokens.SESSION, nacl.utils.random(32))
        expires_at = now + self.config.session_ttl
        audit = caller.record("login", user=username)
        await self.store.create_session(tokens.secret_digest(secret), username, expires_at, now, audit)
        audit.emit()
        return Session(secret, expires_at)

    async def user(self, session: str | None) -> str:
        """The username a session secret belongs to; Unauthorized if none or expired."""
        try:
            tokens.parse_secret(session or "", tokens.SESSION)
        except TokenFormatError:
            raise Unauthorized("a valid session (Bearer sable_ss_...) is required") from None
        username = await self.store.session_user(tokens.secret_digest(session or ""), int(time.time()))
        if username is None:
            raise Unauthorized("the session is unknown or has expired")
        return username

    async def logout(self, session: str | None) -> None:
        await self.user(session)
        await self.store.delete_session(tokens.secret_digest(session or ""))
