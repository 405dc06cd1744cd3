"""The authority's operations, independent of HTTP: orgs, admin credentials, mint,
verify, revoke (by id and by value), the feed and token listing.

Every failure is a `ServiceError` carrying an API error code.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass

import structlog

from clients import caveats, crypto, tokens
from clients.caveats import Access, CaveatError
from clients.tokens import TokenFormatError
from clients.web import ServiceError

from authority import minting
from authority.audit import AuditRecord, DenialLog
from authority.config import AuthorityConfig
from authority.feed import RevocationFeed
from authority.keystore import KeyStore
from authority.records import TokenCache
from authority.store import Store, StoreError, TokenRow
from authority.verification import ChainCache, Denial, Verified, chain, split_presentation, verify

log = structlog.get_logger("sable.authority")
MAX_EXPIRES_IN = 31_536_000


@dataclass(slots=True)
class Caller:
    """Who is asking, for the audit trail."""

    client: str | None = None
    request_id: str | None = None


def iso(epoch: int | None) -> str | None:
    return None if epoch is None else caveats.format_time(epoch)


class ParseCache:
    """Parsed tokens by their exact string: workloads present the same tokens over and over,
    and parsing is deterministic, so each string is parsed once. Bounded: emptied when full."""

    def __init__(self, max_entries: int = 10_000):
        self.max_entries = max_entries
        self._entries: dict[str, tokens.Token] = {}

    def parse(self, text: str) -> tokens.Token:
        tok = self._entries.get(text)
        if tok is None:
            tok = tokens.parse(text)
            if len(self._entries) >= self.max_entries:
                self._entries.clear()
            self._entries[text] = tok
        return tok


def parse_presentation(raw: object, cache: ParseCache | None = None) -> list[tokens.Token]:
    if not isinstance(raw, list) or not raw or not all(isinstance(t, str) for t in raw):
        raise ServiceError("bad_request", "tokens must be a non-empty list of strings")
    if len(raw) > tokens.MAX_PRESENTATION:
        raise ServiceError("bad_request", f"at most {tokens.MAX_PRESENTATION} tokens per presentation")
    try:
        return [cache.parse(t) for t in raw] if cache is not None else [tokens.parse(t) for t in raw]
    except TokenFormatError as e:
        raise ServiceError("malformed_token", str(e)) from None


class Authority:
    def __init__(self, config: AuthorityConfig, store: Store, keys: KeyStore):
        self.config = config
        self.store = store
        self.keys = keys
        self.cache = TokenCache(store, keys, config.key_cache_size)
        self.feed = RevocationFeed(store, self.cache, config.feed_poll_interval)
        self.denials = DenialLog()
        self.trusted = frozenset(d.location for d in config.dischargers)
        self.chains = ChainCache()
        self.parsed = ParseCache()  # for verify only: strip and revoke present new strings
        self._tasks: list[asyncio.Task] = []

    @classmethod
    async def open(cls, config: AuthorityConfig) -> Authority:
        keys = KeyStore(config.master_key)
        store = await Store.open(config.db_path)
        try:
            check = await store.get_meta("master_key_check")
            if check is None:
                await store.set_meta("master_key_check", keys.check_value())
            elif not keys.matches(check):
                raise StoreError(f"the master key does not match database {config.db_path}")
            if config.admin_token:
                await store.add_admin(tokens.secret_digest(config.admin_token), int(time.time()))
        except BaseException:
            await store.close()
            raise
        return cls(config, store, keys)

    async def start(self) -> None:
        await self.feed.start()
        self._tasks.append(asyncio.create_task(self._flush_loop()))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.feed.stop()
        await self.flush()
        await self.store.close()

    async def flush(self) -> None:
        """Write buffered denial audits and last-used times."""
        await self.store.write_audit(self.denials.take())
        await self.store.touch(self.cache.take_last_used())

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            try:
                await self.flush()
            except Exception:
                log.exception("flush_failed")

    # --- admin -----------------------------------------------------------------------------

    async def create_org(self, name: object, caller: Caller) -> dict:
        if not isinstance(name, str) or not caveats.NAME_RE.fullmatch(name):
            raise ServiceError("bad_request", "name must match [A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
        now = int(time.time())
        audit = AuditRecord("org_create", org=name, client=caller.client, request_id=caller.request_id)
        if not await self.store.create_org(name, now, audit):
            raise ServiceError("conflict", f"org {name!r} already exists")
        audit.emit()
        return {"name": name, "created_at": iso(now)}

    async def list_orgs(self) -> dict:
        return {"orgs": [{"name": n, "created_at": iso(t)} for n, t in await self.store.list_orgs()]}

    # --- mint ------------------------------------------------------------------------------

    async def mint(self, body: dict, caller: Caller) -> dict:
        org, name = body.get("org"), body.get("name")
        given, expires_in = body.get("caveats", []), body.get("expires_in", self.config.default_expires_in)
        if not isinstance(org, str) or not caveats.NAME_RE.fullmatch(org):
            raise ServiceError("bad_request", "org is required and must be a name")
        if name is not None and (not isinstance(name, str) or len(name) > 200):
            raise ServiceError("bad_request", "name must be a string of at most 200 characters")
        if not isinstance(given, list) or not all(isinstance(c, str) for c in given):
            raise ServiceError("bad_request", "caveats must be a list of strings")
        if type(expires_in) is not int or not 1 <= expires_in <= MAX_EXPIRES_IN:
            raise ServiceError("bad_request", f"expires_in must be an integer from 1 to {MAX_EXPIRES_IN}")
        if len(given) > tokens.MAX_CAVEATS - 3:
            raise ServiceError("bad_request", f"at most {tokens.MAX_CAVEATS - 3} caveats")
        for text in given:
            try:
                cav = caveats.parse_strict(text)
            except CaveatError as e:
                raise ServiceError("bad_request", f"caveat {text[:80]!r}: {e}") from None
            if isinstance(cav, caveats.User):
                raise ServiceError("bad_request", "the user caveat is added by the discharger, not at mint")
        if not self.config.dischargers:
            raise ServiceError("conflict", "this authority trusts no discharger, so it cannot mint")
        if not await self.store.org_exists(org):
            raise ServiceError("not_found", f"org {org!r} does not exist")
        now = int(time.time())
        first = [f"org {org}", *given, f"expires {caveats.format_time(now + expires_in)}"]
        token_id = minting.new_token_id()
        token, sealed = minting.build(
            self.keys, tokens.PERMISSION, self.config.public_url, token_id, first,
            self.config.dischargers[0], org, self.config.ticket_ttl,
        )
        row = TokenRow(token_id, "permission", name, org, None, None, len(token.caveats), sealed, now)
        audit = AuditRecord("mint", token_id=token_id, org=org, client=caller.client, request_id=caller.request_id)
        await self.store.insert_token(row, audit)
        audit.emit()
        return {"token": token.encode(), "id": token_id, "caveats": first}

    # --- verify ----------------------------------------------------------------------------

    async def check(self, presented: list[tokens.Token], access: Access | None, caller: Caller) -> Verified:
        """Verify a parsed presentation; raises Denial (audited) or ServiceError."""
        try:
            main, discharges = split_presentation(presented)
        except ValueError as e:
            raise ServiceError("bad_request", str(e)) from None
        rec = await self.cache.get(main.token_id)
        now = time.time()
        try:
            verified = verify(main, discharges, rec, access, now, self.config.public_url, self.trusted, self.chains)
        except Denial as e:
            self.denials.add(AuditRecord(
                "verify_denied", outcome="denied", token_id=main.token_id, org=rec.org if rec else None,
                client=caller.client, request_id=caller.request_id, detail={"reason": str(e)},
            ))
            raise
        self.cache.used(verified.record, int(now), self.config.last_used_interval)
        return verified

    async def verify(self, body: dict, caller: Caller) -> dict:
        presented = parse_presentation(body.get("tokens"), self.parsed)
        try:
            access = Access.from_dict(body.get("access"))
        except CaveatError as e:
            raise ServiceError("bad_request", str(e)) from None
        v = await self.check(presented, access, caller)
        rec = v.record
        return {
            "allowed": True, "id": rec.id, "kind": rec.kind, "org": rec.org, "user": v.user,
            "caveats": [c.text for c in v.caveats],
        }

    # --- strip -----------------------------------------------------------------------------

    async def strip(self, body: dict, caller: Caller) -> dict:
        """Trade (permission token, bound discharge) for a service token (SPEC §4, strip)."""
        presented = parse_presentation(body.get("tokens"))
        name, expires_in = body.get("name"), body.get("expires_in")
        if name is not None and (not isinstance(name, str) or len(name) > 200):
            raise ServiceError("bad_request", "name must be a string of at most 200 characters")
        if expires_in is not None and (type(expires_in) is not int or not 1 <= expires_in <= MAX_EXPIRES_IN):
            raise ServiceError("bad_request", f"expires_in must be an integer from 1 to {MAX_EXPIRES_IN}")
        kinds = sorted(t.prefix for t in presented)
        if kinds != [tokens.DISCHARGE, tokens.PERMISSION]:
            raise ServiceError("bad_request", "strip takes exactly [permission token, discharge]")
        pt = next(t for t in presented if t.prefix == tokens.PERMISSION)
        if sum(c.third_party for c in pt.caveats) != 1:
            raise ServiceError("bad_request", "the permission token must carry only its authentication caveat")
        for t in presented:
            for c in t.caveats:
                if not c.third_party and isinstance(caveats.parse(c.cid), caveats.Unparseable):
                    raise ServiceError("bad_request", caveats.parse(c.cid).prohibits(None, 0))
        audit = AuditRecord("strip", client=caller.client, request_id=caller.request_id, parent=pt.token_id)
        try:
            verified = await self.check(presented, None, caller)
        except Denial as e:
            raise ServiceError("denied", str(e)) from None
        rec = verified.record
        kept = [c.text for c in verified.caveats[: len(pt.caveats) - 1]
                if not isinstance(c, (caveats.Expires, caveats.NotBefore))]
        now = int(time.time())
        if expires_in is not None:
            kept.append(f"expires {caveats.format_time(now + expires_in)}")
        token_id = minting.new_token_id()
        token, sealed = minting.build(self.keys, tokens.SERVICE, self.config.public_url, token_id, kept)
        row = TokenRow(token_id, "service", name, rec.org, rec.id, verified.user, len(kept), sealed, now)
        audit.token_id, audit.org, audit.user = token_id, rec.org, verified.user
        # Remember which attenuations of the permission token this came from, so revoking
        # one of them later revokes this service token too.
        lineage = [crypto.fingerprint(s) for s in chain(pt, rec.sig0)[rec.caveat_count:]]
        if not await self.store.insert_token(row, audit, lineage):
            raise ServiceError("denied", "token or this attenuation of it is revoked")
        audit.emit()
        return {"token": token.encode(), "id": token_id, "parent": rec.id, "user": verified.user, "caveats": kept}

    # --- revoke ----------------------------------------------------------------------------

    async def revoke_id(self, token_id: str, caller: Caller) -> dict:
        audit = AuditRecord("revoke", token_id=token_id, client=caller.client, request_id=caller.request_id,
                            detail={"by": "id"})
        ids = await self.store.revoke_token(token_id, int(time.time()), audit)
        if ids is None:
            raise ServiceError("not_found", "no token with that id")
        if ids:
            audit.emit()
            self._revoked(ids)
        return {"revoked": ids}

    async def revoke_value(self, body: dict, caller: Caller) -> dict:
        presented = parse_presentation(body.get("tokens"))
        if len(presented) != 1 or presented[0].prefix == tokens.DISCHARGE:
            raise ServiceError("bad_request", "revoke takes exactly one permission or service token")
        tok = presented[0]
        rec = await self.cache.get(tok.token_id)
        # Holding a validly signed token is the right to kill it; discharges are not needed.
        sig = rec.sig0 if rec is not None and rec.kind == tok.kind and tok.location == self.config.public_url else None
        if sig is None:
            raise ServiceError("denied", "token is unknown or not signed by this authority")
        sig = chain(tok, sig)[-1] if tok.caveats else sig
        if not crypto.equal(sig, tok.signature):
            raise ServiceError("denied", "signature does not match")
        now = int(time.time())
        audit = AuditRecord("revoke", token_id=rec.id, parent=rec.parent, org=rec.org, client=caller.client,
                            request_id=caller.request_id)
        if len(tok.caveats) == rec.caveat_count:
            audit.detail = {"by": "value", "scope": "token"}
            stale = await self.store.revoke_token(rec.id, now, audit) or []
            revoked = [{"id": i, "scope": "token"} for i in stale]
        else:
            audit.detail = {"by": "value", "scope": "attenuation", "depth": len(tok.caveats)}
            fingerprint = crypto.fingerprint(sig)
            stale = await self.store.revoke_attenuation(rec.id, fingerprint, now, audit)
            if stale is None:
                return {"revoked": []}
            self.cache.revoke_attenuation(rec.id, fingerprint)  # at once, not at the feed's next poll
            revoked = [{"id": rec.id, "scope": "attenuation"}, *({"id": i, "scope": "token"} for i in stale)]
        if revoked:
            audit.emit()
        self._revoked(stale)
        return {"revoked": revoked}

    def _revoked(self, ids: list[str]) -> None:
        if ids:
            self.cache.invalidate(ids)
        self.feed.poke()

    async def revocations(self, after: int | None, wait: float) -> dict:
        if after is None:
            return {"cursor": await self.store.revocation_head(), "revoked": []}
        rows = await self.store.revocations_after(after, 1000)
        if not rows and wait > 0:
            await self.feed.wait_past(after, wait)
            rows = await self.store.revocations_after(after, 1000)
        cursor = rows[-1][0] if rows else max(after, await self.store.revocation_head())
        return {"cursor": cursor, "revoked": [{"id": r[1], "at": iso(r[3])} for r in rows]}

    # --- listing ---------------------------------------------------------------------------

    async def list_tokens(self, org: str | None) -> dict:
        if not org:
            raise ServiceError("bad_request", "the org query parameter is required")
        pending = self.cache.pending_last_used
        return {"tokens": [
            {
                "id": r.id, "kind": r.kind, "name": r.name, "org": r.org, "parent": r.parent, "user": r.user,
                "created_at": iso(r.created_at), "revoked_at": iso(r.revoked_at),
                "last_used_at": iso(pending.get(r.id, r.last_used_at)),
            }
            for r in await self.store.list_tokens(org)
        ]}
