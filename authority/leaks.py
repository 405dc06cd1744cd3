"""Leaked credentials (SPEC §18): what a found string is, and revoking exactly what leaked.

A string is *genuine* when its signature checks (time caveats are not judged, and one revoked
already still counts, so a repeated report gets the same labels and changes nothing more):

- a permission or service token is revoked by value: the whole token with its cascade, or
  only the attenuation that leaked, whose siblings on other hosts keep working;
- a user token is listed as revoked until it expires (user tokens are not stored); with a
  discharge bound to it in the same report, that user's console sessions end too;
- a discharge counts when it verifies with a genuine token of the same report (alone, its
  signature cannot be checked here; it expires by itself);
- an admin or introspect-only credential is disabled for good, even if it is this service's
  configured `SABLE_ADMIN_TOKEN` (which then stops the next start, naming the problem).

Every item gets an audit row `leak` with the URL and source it was found at, and its label.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from dataclasses import dataclass

import orjson
import structlog

from authority.minting import USER_TOKEN_TTL
from authority.records import TokenRecord
from authority.revocation import Revocation
from authority.store import AuthorityStore
from authority.verification import Checker, authenticate, verify
from clients import tokens
from clients.errors import Denial, MalformedToken, RateLimited, SableError, Unavailable
from clients.tokens import Token
from server.audit import AuditRecord, Caller
from server.masterkey import MasterKey
from server.periodic import Periodic
from server.secret_scanning import Reported

log = structlog.get_logger("sable.leaks")
USER_CREDENTIAL = "ut:"  # + a user token's id, in revoked_credentials
ADMIN_CREDENTIAL = "adm:"  # + the hex digest of an admin or introspect-only credential
FOREVER = 2**62
PARALLEL = 32  # items judged at once


@dataclass(slots=True)
class _Item:
    reported: Reported
    token: Token | None = None  # parsed, for macaroons
    genuine: bool = False
    audit: AuditRecord | None = None


class Leaks:
    def __init__(self, store: AuthorityStore, checker: Checker, revocation: Revocation):
        self.store = store
        self.checker = checker
        self.revocation = revocation

    async def report(self, reported: list[Reported], caller: Caller, via: str) -> list[bool]:
        """Judge every item and revoke the genuine ones (committed before this returns);
        whether each is genuine, in order. A string repeated in a report is judged once."""
        unique: dict[str, _Item] = {}
        for r in reported:
            unique.setdefault(r.token, _Item(r))
        items = list(unique.values())
        for item in items:
            item.audit = caller.record("leak", detail={"via": via, "url": item.reported.url,
                                                       "source": item.reported.source})
            try:
                item.token = tokens.parse(item.reported.token)
            except SableError:
                item.token = None
        # Tokens first, then the discharges that may go with them. Revocations of different
        # tokens are independent: run together, they share commits (SPEC §9: 1,000 in ≤ 2 s).
        gate = asyncio.Semaphore(PARALLEL)

        async def judge(item: _Item) -> None:
            async with gate:
                if item.token is None:
                    if item.reported.token.startswith(tokens.ADMIN):
                        item.genuine = await self._admin(item, caller)
                elif item.token.prefix in (tokens.PERMISSION, tokens.SERVICE):
                    item.genuine = await self._macaroon(item, caller)
                elif item.token.prefix == tokens.USER:
                    item.genuine = await self._user(item, caller)
        await asyncio.gather(*(judge(item) for item in items))
        for item in items:
            if item.token is not None and item.token.prefix == tokens.DISCHARGE:
                item.genuine = await self._discharge(item, items, caller)
        # One token.leaked webhook per token and report, and only when something was revoked
        # now: made-up attenuations of one token must not turn into a flood of events.
        announced: set[str] = set()
        for item in items:
            row = item.audit
            if row is not None and item.genuine and (row.detail or {}).get("revoked") and row.token_id not in announced:
                announced.add(row.token_id or "")
                row.add(announce=True)
        # A row for each genuine item; the false positives only as a count (anyone may report
        # a thousand made-up strings, and the audit trail is kept for good).
        genuine = [item.audit for item in items if item.genuine and item.audit is not None]
        for row in genuine:
            row.add(label="true_positive")
        summary = caller.record("leak_report", detail={"via": via, "items": len(reported), "genuine": len(genuine)})
        await self.store.write_audit([*genuine, summary])
        return [unique[r.token].genuine for r in reported]

    async def _macaroon(self, item: _Item, caller: Caller) -> bool:
        assert item.token is not None and item.audit is not None
        rec = await self.checker.records.get(item.token.token_id)  # type: ignore[arg-type]  # not a discharge
        try:
            if rec is not None and rec.revoked:  # dead already: genuine, and nothing more to write
                authenticate(item.token, rec, self.checker.location, revoked_ok=True)
                revoked = []
            else:
                revoked = await self.revocation.revoke_value([item.reported.token], caller)
        except Denial:  # forged, unknown, or another authority's
            return False
        item.audit.token_id = item.token.token_id
        item.audit.add(kind=tokens.KIND_NAMES[item.token.prefix], revoked=[r.id for r in revoked])
        return True

    async def _user(self, item: _Item, caller: Caller) -> bool:
        assert item.token is not None and item.audit is not None
        try:
            rec = self.checker.user_record(item.token)
            authenticate(item.token, rec, self.checker.location, revoked_ok=True)
        except (Denial, MalformedToken):
            return False
        now = int(time.time())
        item.audit.token_id, item.audit.org = rec.id, rec.org
        item.audit.add(kind="user")
        revoked = caller.record("revoke", token_id=rec.id, org=rec.org, detail={"by": "leak", "kind": "user"})
        if await self.store.revoke_credential(USER_CREDENTIAL + rec.id, now + USER_TOKEN_TTL + 60, now, revoked):
            item.audit.add(revoked=[rec.id])
        return True

    async def _discharge(self, item: _Item, items: list[_Item], caller: Caller) -> bool:
        """A discharge counts when it verifies with a genuine token of the same report; bound
        to a user token, it names whose console sessions end."""
        assert item.token is not None and item.audit is not None
        for main in items:
            if not main.genuine or main.token is None or main.token.prefix == tokens.DISCHARGE:
                continue
            # Only a token with a third-party caveat of this discharge's id can be its match:
            # known without any cryptography, so a report of many strings costs one check each.
            if not any(c.third_party and c.cid == item.token.identifier for c in main.token.caveats):
                continue
            rec: TokenRecord | None
            try:
                if main.token.prefix == tokens.USER:
                    rec = self.checker.user_record(main.token)
                else:
                    rec = await self.checker.records.get(main.token.token_id)  # type: ignore[arg-type]
                    if rec is not None:  # a copy: it was just revoked for this very leak
                        rec = dataclasses.replace(rec, revoked=False, revoked_fps=set())
                verified = verify(main.token, [item.token], rec, None, time.time(), self.checker.location,
                                  self.checker.trusted)
            except (Denial, MalformedToken):
                return False
            item.audit.token_id = main.token.token_id
            item.audit.add(kind="discharge", user=verified.user)
            if main.token.prefix == tokens.USER and verified.user:
                ended = caller.record("console_logout", user=verified.user, detail={"by": "leak"})
                await self.store.end_console_sessions(
                    verified.user, lambda n, a=ended: a.add(sessions=n) if n else None)  # type: ignore[misc]
            return True
        return False

    async def _admin(self, item: _Item, caller: Caller) -> bool:
        assert item.audit is not None
        try:
            digest = tokens.secret_digest(item.reported.token)
        except SableError:
            return False
        key = ADMIN_CREDENTIAL + digest.hex()
        admin = await self.store.is_admin(item.reported.token)
        introspector = not admin and await self.store.introspector(digest) is not None
        if not (admin or introspector or await self.store.credential_revoked(key)):
            return False
        # Listed before it is removed: a replica starting meanwhile sees the listing after
        # adding its SABLE_ADMIN_TOKEN and takes it out again (Authority.open).
        disabled = caller.record("admin_disabled", detail={"by": "leak"})
        await self.store.revoke_credential(key, FOREVER, int(time.time()), disabled)
        if admin:
            await self.store.remove_admin(digest)
        elif introspector:
            await self.store.remove_introspector(digest)
        item.audit.add(kind="admin")
        return True


class PublicRevocation:
    """`POST /v1/credentials/revoke` for anyone who finds a token (SPEC §18): counted per
    address in the database (so across replicas), queued durably, answered before anything is
    judged, and worked off by whichever process claims the report first."""

    EVERY = 1.0  # seconds between looks at the queue (a local submit wakes it at once)
    LEASE = 60  # seconds a claimed report is held before another process may take it
    MAX_QUEUED = 10_000  # reports waiting, from everyone: past it, 503 until the queue drains

    def __init__(self, store: AuthorityStore, leaks: Leaks, master: MasterKey, per_hour: int):
        self.store = store
        self.leaks = leaks
        self.master = master  # queued strings may be live secrets: they wait sealed
        self.per_hour = per_hour
        self.loop = Periodic("public-revocations", self.work, self.EVERY, at_start=True)

    async def admit(self, caller: Caller) -> None:
        """Count a request from this address (before its body is read); RateLimited past the
        hour's limit, Unavailable while the queue is full."""
        now = int(time.time())
        if not await self.store.count_public_revocation(caller.client or "-", now // 3600, self.per_hour):
            raise RateLimited(f"at most {self.per_hour} reports an hour from one address",
                              retry_after=3600 - now % 3600)
        if await self.store.leak_queue_depth() >= self.MAX_QUEUED:
            raise Unavailable("too many reports are waiting; try again later", retry_after=60)

    async def submit(self, credentials: list[str], caller: Caller) -> None:
        await self.store.queue_leak_report(self.master.seal(orjson.dumps(credentials)), caller.client,
                                           int(time.time()))
        self.loop.wake()

    async def work(self) -> int:
        """Judge queued reports, one claimed at a time, until none is left; how many were done."""
        done = 0
        while rows := await self.store.claim_leak_reports(int(time.time()), self.LEASE, 1):
            seq, sealed, client = rows[0]
            plain = self.master.unseal(sealed)
            if plain is not None:  # else sealed under a master key since replaced: nothing to judge
                items = [Reported(text, "", "", "public") for text in orjson.loads(plain)]
                genuine = await self.leaks.report(items, Caller(client=client), via="public")
                log.info("public_revocation", items=len(items), genuine=sum(genuine))
            await self.store.finish_leak_report(seq)
            done += 1
        return done

    async def start(self) -> None:
        self.loop.start()

    async def stop(self) -> None:
        await self.loop.stop()
