"""The discharger's operations, independent of HTTP: users, sessions and discharges.

Every failure is a `ServiceError` carrying an API error code.
"""

from __future__ import annotations

import time

import nacl.utils

from clients import caveats, crypto, tokens
from clients.audit import AuditRecord
from clients.caveats import NAME_RE, format_time
from clients.tickets import TicketError, b64d
from clients.tokens import RawCaveat, Token, TokenFormatError
from clients.web import ServiceError, SlidingCounter, throttle_key

from discharger.config import DischargerConfig
from discharger.keys import DischargerKeys
from discharger.passwords import Busy, Hasher
from discharger.store import Store

BAD_LOGIN = "invalid username or password"
MAX_PASSWORD = 1024
MIN_PASSWORD = 8


def _check_orgs(orgs: object) -> list[str]:
    if not isinstance(orgs, list) or not all(isinstance(o, str) and NAME_RE.fullmatch(o) for o in orgs):
        raise ServiceError("bad_request", "orgs must be a list of org names")
    return sorted(set(orgs))


class Discharger:
    def __init__(self, config: DischargerConfig, store: Store, keys: DischargerKeys, hasher: Hasher):
        self.config = config
        self.store = store
        self.keys = keys
        self.hasher = hasher
        self.user_failures = SlidingCounter(config.user_failures, config.failure_window)
        self.address_failures = SlidingCounter(config.address_failures, config.failure_window)

    @classmethod
    async def open(cls, config: DischargerConfig) -> Discharger:
        keys = DischargerKeys.load_or_create(config.keys_path)
        store = await Store.open(config.db_path)
        hasher = Hasher(config.password_limits, config.hash_threads, config.hash_queue)
        try:
            if config.admin_token:
                await store.add_admin(tokens.secret_digest(config.admin_token), int(time.time()))
            await hasher.start()
        except BaseException:
            hasher.close()
            await store.close()
            raise
        return cls(config, store, keys, hasher)

    async def close(self) -> None:
        self.hasher.close()
        await self.store.close()

    # --- users -----------------------------------------------------------------------------

    async def create_user(self, body: dict, client: str, request_id: str) -> dict:
        username, password = body.get("username"), body.get("password")
        orgs = _check_orgs(body.get("orgs", []))
        if not isinstance(username, str) or not NAME_RE.fullmatch(username):
            raise ServiceError("bad_request", "username must match [A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
        if not isinstance(password, str) or not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
            raise ServiceError("bad_request", f"password must be {MIN_PASSWORD} to {MAX_PASSWORD} characters")
        try:
            digest = await self.hasher.hash(password)
        except Busy:
            raise ServiceError("rate_limited", "too many password operations in flight", retry_after=1) from None
        audit = AuditRecord("user_create", user=username, client=client, request_id=request_id, detail={"orgs": orgs})
        if not await self.store.create_user(username, digest, orgs, int(time.time()), audit):
            raise ServiceError("conflict", f"user {username!r} already exists")
        audit.emit()
        return {"username": username, "orgs": orgs}

    async def set_orgs(self, username: str, body: dict, client: str, request_id: str) -> dict:
        orgs = _check_orgs(body.get("orgs"))
        audit = AuditRecord("user_orgs", user=username, client=client, request_id=request_id, detail={"orgs": orgs})
        if not await self.store.set_orgs(username, orgs, audit):
            raise ServiceError("not_found", "no such user")
        audit.emit()
        return {"username": username, "orgs": orgs}

    async def disable(self, username: str, client: str, request_id: str) -> dict:
        audit = AuditRecord("user_disable", user=username, client=client, request_id=request_id)
        if not await self.store.disable_user(username, audit):
            raise ServiceError("not_found", "no such user")
        audit.emit()
        return {"username": username, "disabled": True}

    # --- sessions --------------------------------------------------------------------------

    async def login(self, body: dict, client: str, request_id: str) -> dict:
        username, password = body.get("username"), body.get("password")
        if not isinstance(username, str) or not isinstance(password, str) or len(password) > MAX_PASSWORD \
                or len(username) > 128:
            raise ServiceError("bad_request", "username and password must be strings")
        # Only an existing username is recorded: people paste passwords into that field.
        shown = "<unknown>"
        bucket = throttle_key(client)
        wait = self.user_failures.retry_after(username) or self.address_failures.retry_after(bucket)
        if wait is not None:
            AuditRecord("login", outcome="throttled", user=shown, client=client, request_id=request_id).emit()
            raise ServiceError("rate_limited", "too many failed logins; try again later", retry_after=wait)
        # Count the attempt before hashing, so parallel guesses cannot all slip past the limit.
        self.user_failures.add(username)
        self.address_failures.add(bucket)
        user = await self.store.get_user(username) if NAME_RE.fullmatch(username) else None
        if user is not None:
            shown = username
        try:
            ok = await self.hasher.verify(user.password_hash if user else None, password)
        except Busy:
            raise ServiceError("rate_limited", "too many logins in flight", retry_after=1) from None
        now = int(time.time())
        if not ok or user is None or user.disabled:
            audit = AuditRecord("login", outcome="failed", user=shown, client=client, request_id=request_id)
            await self.store.write_audit([audit])
            audit.emit()
            raise ServiceError("unauthorized", BAD_LOGIN)
        self.user_failures.clear(username)
        secret = tokens.encode(tokens.SESSION, nacl.utils.random(32))
        expires_at = now + self.config.session_ttl
        audit = AuditRecord("login", user=username, client=client, request_id=request_id)
        await self.store.create_session(tokens.secret_digest(secret), username, expires_at, now, audit)
        audit.emit()
        return {"session": secret, "expires_at": format_time(expires_at)}

    async def session_user(self, session: str | None) -> str:
        try:
            tokens.parse_secret(session or "", tokens.SESSION)
        except TokenFormatError:
            raise ServiceError("unauthorized", "a valid session (Bearer sable_ss_...) is required") from None
        username = await self.store.session_user(tokens.secret_digest(session), int(time.time()))
        if username is None:
            raise ServiceError("unauthorized", "the session is unknown or has expired")
        return username

    async def logout(self, session: str | None) -> None:
        await self.session_user(session)
        await self.store.delete_session(tokens.secret_digest(session))

    # --- discharges ------------------------------------------------------------------------

    async def discharge(self, username: str, body: dict, client: str, request_id: str) -> dict:
        """Mint a discharge for `username` (already authenticated by session)."""
        ticket_b64 = body.get("ticket")
        try:
            ticket = b64d(ticket_b64)
            if len(ticket) > tokens.MAX_TOKEN_CHARS:
                raise ValueError
            contents = self.keys.open(ticket)
        except (ValueError, TicketError) as e:
            reason = str(e) if isinstance(e, TicketError) else "ticket must be base64url"
            raise ServiceError("bad_request", reason) from None
        user = await self.store.get_user(username)
        audit = AuditRecord("discharge", user=username, org=contents.org, client=client, request_id=request_id)
        if user is None or user.disabled:
            audit.outcome = "denied"
            await self.store.write_audit([audit])
            audit.emit()
            raise ServiceError("denied", "user is disabled")
        if contents.org not in user.orgs:
            audit.outcome = "denied"
            await self.store.write_audit([audit])
            audit.emit()
            raise ServiceError("denied", f"user is not a member of org {contents.org!r}")
        expires_at = int(time.time()) + min(self.config.discharge_ttl, contents.ttl)
        first = [f"user {username}", f"expires {format_time(expires_at)}"]
        sig = crypto.initial_signature(contents.caveat_key, ticket)
        for text in first:
            sig = crypto.first_party(sig, text.encode())
        token = Token(tokens.DISCHARGE, self.config.public_url, ticket, tuple(RawCaveat(t.encode()) for t in first), sig)
        await self.store.write_audit([audit])
        audit.emit()
        return {"discharge": token.encode(), "expires_at": caveats.format_time(expires_at)}
