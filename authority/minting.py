"""Making tokens: permission tokens with their authentication caveat (mint), and service
tokens traded for a permission token and its discharge (strip). Root keys stay inside the
key store; signatures are computed by `clients.macaroon`."""

from __future__ import annotations

import time

import nacl.utils

from authority.config import AuthorityConfig, TrustedDischarger
from authority.dischargers import TrustedDischargers
from authority.model import Minted, MintRequest, Stripped, StripRequest
from authority.orgs import Orgs
from authority.root_keys import RootKeys
from authority.store import AuthorityStore, DischargeUsed, TokenRow
from authority.verification import Checker, parse_presentation
from clients import caveats, macaroon, tickets, tokens
from clients.errors import BadRequest, CaveatError, Conflict, Forbidden, NotFound
from clients.tokens import Token
from server.audit import AuditRecord, Caller

MAX_EXPIRES_IN = 31_536_000  # one year
USER_TOKEN_TTL = 12 * 3600
_TIME_CAVEATS = (caveats.Expires, caveats.NotBefore)


def new_token_id() -> str:
    return nacl.utils.random(16).hex()


def build(keys: RootKeys, prefix: str, location: str, token_id: str, first_party: list[str],
          discharger: TrustedDischarger | None = None, org: str = "",
          ticket_ttl: int = tickets.MAX_TTL, name: str | None = None, role: str = "member",
          principal: str | None = None) -> tuple[Token, bytes]:
    """Sign a new token; returns it with its sealed root key for storage (b"" for a user
    token, whose key is derived from its identifier and never stored).

    With a discharger, an authentication caveat for `org` is appended last: its ticket is
    sealed to the discharger's current key and holds a fresh caveat key, and names what the
    token is for and the role the user needs, and the service principal it is for, if any.
    """
    if prefix == tokens.USER:
        identifier = tokens.user_identifier(token_id, org, role)
        sealed, sig0 = b"", keys.user_token_signature(identifier)
    else:
        identifier = b"\x01" + bytes.fromhex(token_id)
        sealed, sig0 = keys.new_token_key(token_id, identifier)
    token = macaroon.mint(prefix, location, identifier, sig0, first_party)
    if discharger is not None:
        _, public_key = discharger.public_keys[0]
        caveat_key = nacl.utils.random(32)
        purpose = "user" if prefix == tokens.USER else "permission"
        ticket = tickets.seal(public_key, caveat_key, org, ticket_ttl, purpose, name, role, principal)
        token = macaroon.add_third_party(token, caveat_key, ticket, discharger.location)
    return token, sealed


def _expiry(now: int, seconds: int) -> str:
    return f"expires {caveats.format_time(now + seconds)}"


class Minting:
    def __init__(self, config: AuthorityConfig, store: AuthorityStore, keys: RootKeys, checker: Checker,
                 trust: TrustedDischargers, orgs: Orgs):
        self.config = config
        self.orgs = orgs
        self.store = store
        self.keys = keys
        self.checker = checker
        self.trust = trust

    def _discharger(self) -> TrustedDischarger:
        found = self.trust.first()
        if found is None:
            raise Conflict("this authority trusts no discharger, so it cannot mint")
        return found

    async def mint(self, req: MintRequest, caller: Caller, created_by: str = "@admin") -> Minted:
        """A permission token: `org O`, the given caveats, `expires`, the authentication caveat.
        `created_by` is the minting user, or "@admin" for the admin credential."""
        if len(req.caveats) > tokens.MAX_CAVEATS - 3:
            raise BadRequest(f"at most {tokens.MAX_CAVEATS - 3} caveats")
        for text in req.caveats:
            try:
                cav = caveats.parse_strict(text)
            except CaveatError as e:
                raise CaveatError(f"caveat {text[:80]!r}: {e}") from None
            if isinstance(cav, caveats.User | caveats.Role | caveats.DischargeId):
                raise BadRequest(f"the {cav.name} caveat is added by the discharger, not at mint")
        discharger = self._discharger()
        if not await self.store.org_exists(req.org):
            raise NotFound(f"org {req.org!r} does not exist")
        now = int(time.time())
        expires_in = await self._lifetime(req.org, req.expires_in, self.config.default_expires_in)
        assert expires_in is not None  # a default was given
        if not 1 <= expires_in <= MAX_EXPIRES_IN:
            raise BadRequest(f"expires_in must be 1 to {MAX_EXPIRES_IN} seconds (one year)")
        first = [f"org {req.org}", *req.caveats, _expiry(now, expires_in)]
        token_id = new_token_id()
        token, sealed = build(self.keys, tokens.PERMISSION, self.config.public_url, token_id, first,
                              discharger, req.org, self.config.ticket_ttl, req.name, principal=req.principal)
        row = TokenRow(token_id, "permission", req.name, req.org, None, None, len(token.caveats), sealed, now,
                       created_by=created_by, caveats=first, expires_at=now + expires_in, principal=req.principal,
                       strip_once=req.strip_once)
        detail = {k: v for k, v in (("for", req.principal), ("strip_once", req.strip_once)) if v}
        audit = caller.record("mint", token_id=token_id, org=req.org, user=None if created_by == "@admin" else created_by,
                              detail=detail or None)
        await self.store.insert_token(row, audit)
        audit.emit()
        return Minted(token.encode(), token_id, first, req.principal, req.strip_once)

    async def reissue(self, old: TokenRow, caller: Caller, created_by: str) -> tuple[Minted, TokenRow, AuditRecord]:
        """A new permission token like `old` (SPEC §18, regenerate): its org, name, caveats,
        principal and single-use setting, and a lifetime as long as `old`'s was. Not stored:
        `Regeneration` stores it as it revokes `old`."""
        if old.kind != "permission":
            raise BadRequest("only permission tokens are regenerated; strip a new service token from the new one")
        if old.caveats is None:
            raise BadRequest("this token was minted before its caveats were kept (0.3): mint a new one instead")
        discharger = self._discharger()
        now = int(time.time())
        lifetime = old.expires_at - old.created_at if old.expires_at else self.config.default_expires_in
        limit = await self.orgs.max_token_lifetime(old.org)
        lifetime = lifetime if limit is None else min(lifetime, limit)
        middle = [c for c in old.caveats if not c.startswith(("org ", "expires "))]
        first = [f"org {old.org}", *middle, _expiry(now, lifetime)]
        token_id = new_token_id()
        token, sealed = build(self.keys, tokens.PERMISSION, self.config.public_url, token_id, first, discharger,
                              old.org, self.config.ticket_ttl, old.name, principal=old.principal)
        row = TokenRow(token_id, "permission", old.name, old.org, None, None, len(token.caveats), sealed, now,
                       created_by=created_by, caveats=first, expires_at=now + lifetime, principal=old.principal,
                       strip_once=old.strip_once)
        audit = caller.record("mint", token_id=token_id, org=old.org, user=None if created_by == "@admin" else created_by,
                              detail={"regenerates": old.id})
        return Minted(token.encode(), token_id, first, old.principal, old.strip_once), row, audit

    async def _lifetime(self, org: str, asked: int | None, default: int | None) -> int | None:
        """The lifetime a new token of `org` gets (SPEC §18's org policy): what was asked, if
        within the policy (else 400), or the default capped by it."""
        limit = await self.orgs.max_token_lifetime(org)
        if limit is None:
            return default if asked is None else asked
        if asked is not None and asked > limit:
            raise BadRequest(f"--expires-in (expires_in {asked} s) is longer than org {org}'s max token lifetime "
                             f"({limit} s)")
        if asked is not None:
            return asked
        return limit if default is None else min(default, limit)

    def mint_user(self, org: str, role: str, caller: Caller) -> Minted:
        """A user token (SPEC §11): `org O`, `expires` in 12 h, and the authentication caveat
        for O needing `role`. Not stored: its key derives from its identifier."""
        discharger = self._discharger()
        now = int(time.time())
        first = [f"org {org}", _expiry(now, USER_TOKEN_TTL)]
        token_id = new_token_id()
        token, _ = build(self.keys, tokens.USER, self.config.public_url, token_id, first, discharger,
                         org, self.config.ticket_ttl, None, role)
        caller.record("user_token", token_id=token_id, org=org, detail={"role": role}).emit()
        return Minted(token.encode(), token_id, first)

    async def strip(self, req: StripRequest, caller: Caller, bind: bool = False) -> Stripped:
        """Trade (permission token, bound discharge) for a service token (SPEC §4, strip).
        With `bind` (token exchange) an unbound discharge is bound here. A single-use token's
        discharge strips it once: Conflict (409, `discharge_used`) after that (SPEC §16)."""
        presented = parse_presentation(req.tokens)
        if sorted(t.prefix for t in presented) != [tokens.DISCHARGE, tokens.PERMISSION]:
            raise BadRequest("strip takes exactly [permission token, discharge]")
        pt = next(t for t in presented if t.prefix == tokens.PERMISSION)
        if sum(c.third_party for c in pt.caveats) != 1:
            raise BadRequest("the permission token must carry only its authentication caveat")
        for t in presented:
            for c in t.caveats:
                cav = caveats.parse(c.cid) if not c.third_party else None
                if isinstance(cav, caveats.Unparseable):
                    raise BadRequest(cav.prohibits(None, 0))  # type: ignore[arg-type]
        verified = await self.checker.check(presented, None, caller, bind=bind)  # Denial: 403
        rec = verified.record
        once = None
        if rec.strip_once:
            if verified.discharge_id is None or verified.discharge_expires is None:
                raise Forbidden("this token strips once per discharge, and its discharge carries no discharge-id: "
                                "its discharger must be upgraded", reason="discharge_id_missing")
            once = (verified.discharge_id, verified.discharge_expires)
        kept = [c.text for c in verified.caveats[: len(pt.caveats) - 1] if not isinstance(c, _TIME_CAVEATS)]
        now = int(time.time())
        expires_in = await self._lifetime(rec.org, req.expires_in, None)
        if expires_in is not None:
            kept.append(_expiry(now, expires_in))
        token_id = new_token_id()
        token, sealed = build(self.keys, tokens.SERVICE, self.config.public_url, token_id, kept)
        row = TokenRow(token_id, "service", req.name, rec.org, rec.id, verified.user, len(kept), sealed, now,
                       created_by=verified.user, caveats=kept,
                       expires_at=now + expires_in if expires_in is not None else None)
        audit = caller.record("strip", token_id=token_id, parent=rec.id, org=rec.org, user=verified.user,
                              detail={"discharge_id": verified.discharge_id} if once else None)
        # Remember which attenuations of the permission token this came from, so revoking
        # one of them later revokes this service token too.
        sigs = macaroon.chain(rec.sig0, pt.caveats)  # type: ignore[arg-type]  # verified: key opened
        lineage = [macaroon.fingerprint(s) for s in sigs[rec.caveat_count:]]
        try:
            inserted = await self.store.insert_token(row, audit, lineage, once)
        except DischargeUsed:
            self.checker.denials.add(caller.record(
                "strip", outcome="denied", parent=rec.id, org=rec.org, user=verified.user,
                detail={"reason": "discharge_used", "discharge_id": verified.discharge_id}))
            raise Conflict("this discharge has stripped this token already; get a new discharge",
                           reason="discharge_used") from None
        if not inserted:
            raise Forbidden("token or this attenuation of it is revoked")
        audit.emit()
        return Stripped(token.encode(), token_id, rec.id, verified.user, kept)
