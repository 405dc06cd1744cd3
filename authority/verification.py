"""Verification (SPEC §3): the pure `verify` algorithm, the one signature check that revoke
by value reuses, and the `Checker` that runs them for requests with its caches.

`verify` is given parsed tokens, the token's record (initial signature, lineage, revocation)
and the request, and either returns a `Verified` or raises `Denial` naming the first rule or
caveat that failed. It never recurses: a discharge with third-party caveats of its own is
refused as nested, so self-referencing discharges cost one loop, not a stack overflow.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from authority.audit import DenialLog
from authority.records import TokenCache, TokenRecord
from authority.usage import Usage
from clients import caveats, macaroon, tokens
from clients.caveats import Access, Caveat
from clients.errors import BadRequest, Denial, Unavailable
from clients.proof_check import Proof, ProofRequest, ReplayCache, check_proof
from clients.tokens import DISCHARGE, Token
from server.audit import Caller


@dataclass(slots=True)
class Verified:
    token: Token
    record: TokenRecord
    user: str | None
    caveats: list[Caveat]  # first-party caveats of the token, then of its discharges
    # Fingerprints of the chain's attenuations that rule 2 could not judge from the record
    # (past its in-memory cap): the caller must ask the store before allowing (Checker.check).
    unjudged: tuple[bytes, ...] = ()
    # The authentication discharge's `discharge-id` (its first caveat, which only the discharger
    # writes) and the discharger's `expires`: what a single-use strip records (SPEC §16).
    discharge_id: str | None = None
    discharge_expires: int | None = None


Walk = tuple[list[bytes], list[Any], list[tuple[int, tokens.RawCaveat, bytes]]]


class ChainCache:
    """Tokens whose signature chain verified, with the parsed caveats it produced.

    Keyed by the whole token (every byte), so a token differing anywhere misses. Only tokens
    whose record has no revoked attenuations are kept, since those need every intermediate
    signature re-checked. Bounded: emptied when full.
    """

    def __init__(self, max_entries: int = 10_000):
        self.max_entries = max_entries
        self._entries: dict[Token, tuple] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, token: Token) -> tuple | None:
        return self._entries.get(token)

    def put(self, token: Token, value: tuple) -> None:
        if len(self._entries) >= self.max_entries:
            self._entries.clear()
        self._entries[token] = value


class ParseCache:
    """Parsed tokens by their exact string: workloads present the same tokens over and over,
    and parsing is deterministic, so each string is parsed once. Bounded: emptied when full."""

    def __init__(self, max_entries: int = 10_000):
        self.max_entries = max_entries
        self._entries: dict[str, Token] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def parse(self, text: str) -> Token:
        tok = self._entries.get(text)
        if tok is None:
            tok = tokens.parse(text)
            if len(self._entries) >= self.max_entries:
                self._entries.clear()
            self._entries[text] = tok
        return tok


def separate_discharges(presented: list[Token]) -> tuple[Token, list[Token]]:
    """(the one permission or service token, its discharges); BadRequest if not exactly one."""
    main = [t for t in presented if t.prefix != DISCHARGE]
    if len(main) != 1:
        raise BadRequest("a presentation holds exactly one permission or service token")
    return main[0], [t for t in presented if t.prefix == DISCHARGE]


def _identify(token: Token, rec: TokenRecord | None, location: str, revoked_ok: bool) -> bytes:
    """Rule 1 up to the signature: the token is this authority's, known, of its recorded kind,
    not revoked (unless `revoked_ok`) and its key opens. Returns its initial signature."""
    if token.location != location:
        raise Denial("token location is not this authority")
    if rec is None:
        raise Denial("unknown token")
    if rec.kind != token.kind:
        raise Denial("token prefix does not match its kind")
    if rec.revoked and not revoked_ok:
        raise Denial("token is revoked")
    if rec.sig0 is None:
        raise Denial("token key cannot be opened with this authority's master key")
    return rec.sig0


def authenticate(token: Token, rec: TokenRecord | None, location: str, revoked_ok: bool = False,
                 parse: Callable[[bytes], Any] = bytes) -> Walk:
    """Rule 1 whole: the token's signature chain is valid for its recorded key (compared in
    constant time). Returns `macaroon.walk`'s (signatures, first-party caveats, third-party
    caveats with the signature before each)."""
    sig0 = _identify(token, rec, location, revoked_ok)
    walked = macaroon.walk(sig0, token.caveats, parse)
    sigs = walked[0]
    if not macaroon.equal(sigs[-1] if sigs else sig0, token.signature):
        raise Denial("signature does not match")
    return walked


def verify(
    token: Token,
    discharges: list[Token],
    rec: TokenRecord | None,
    access: Access | None,
    now: float,
    location: str,
    trusted: frozenset[str],
    chains: ChainCache | None = None,
    bind: bool = False,
) -> Verified:
    """Judge a presentation. With `access=None` (strip) only time caveats are judged. With
    `bind` (token exchange) an unbound discharge counts as bound to this token, as if the
    holder had bound it: binding is public, and its key still comes from this token."""
    parse = caveats.parse
    fps = rec.revoked_fps if rec is not None else set()
    # Only tokens with no revoked attenuations are cached: the others need every signature.
    cache = chains if fps is not None and not fps else None
    known = cache.get(token) if cache is not None else None
    unjudged: tuple[bytes, ...] = ()
    if known is not None:
        # This exact token (all its bytes) already passed rules 1-2 against this id's key,
        # which never changes; location, kind and revocation are re-checked from the record.
        _identify(token, rec, location, revoked_ok=False)
        first, third = list(known[0]), known[1]
    else:
        # Rule 1: a known, unrevoked token whose signature chain is valid.
        sigs, first, third = authenticate(token, rec, location, parse=parse)
        assert rec is not None
        # Rule 2: no signature along the chain is a revoked attenuation.
        if fps is None:  # too many to hold in memory: the caller asks the store
            unjudged = tuple(map(macaroon.fingerprint, sigs[rec.caveat_count:]))
        elif fps and not fps.isdisjoint(map(macaroon.fingerprint, sigs)):
            raise Denial("this attenuation of the token is revoked")
        if cache is not None:
            cache.put(token, (tuple(first), third))
    assert rec is not None

    # Rule 3: each third-party caveat has exactly one bound, valid discharge.
    by_cid: dict[bytes, list[Token]] = {}
    for d in discharges:
        by_cid.setdefault(d.identifier, []).append(d)
    used: set[int] = set()
    # The authentication caveat is the last one minted; only its discharge names the user.
    auth_index = rec.caveat_count - 1 if rec.kind in ("permission", "user") else -1
    auth_discharge = None
    for i, c, sig_before in third:
        if c.location not in trusted:
            raise Denial("third-party caveat is not addressed to a trusted discharger")
        found = by_cid.get(c.cid)
        if not found:
            raise Denial(f"no discharge for the third-party caveat of {c.location}")
        if len(found) > 1:
            raise Denial("more than one discharge for one third-party caveat")
        d = found[0]
        if id(d) in used:
            raise Denial("one discharge used for two caveats")
        used.add(id(d))
        if d.location != c.location:
            raise Denial("discharge location does not match its caveat")
        key = macaroon.open_caveat_key(sig_before, c.vid)
        if key is None:
            raise Denial("third-party caveat cannot be opened")
        dsig = macaroon.discharge_signature(key, d)
        if not macaroon.equal(macaroon.bind(token.signature, dsig), d.signature):
            if not macaroon.equal(dsig, d.signature):
                raise Denial("discharge is bound to another token or its signature does not match")
            if not bind:
                raise Denial("discharge is not bound to this token")
        if i == auth_index:
            auth_discharge = d

    # Rule 4: nothing left over, nothing nested.
    if len(used) != len(discharges):
        raise Denial("a discharge matches no third-party caveat of this token")
    user = rec.user
    discharge_id, discharge_expires = None, None
    if auth_discharge is not None:
        said = [parse(dc.cid) for dc in auth_discharge.caveats]
        user = next((c.value for c in said if isinstance(c, caveats.User)), None)
        # Only the discharger writes a discharge's first caveat (a holder can only append), so
        # only a `discharge-id` there names the discharge, and the first `expires` is the
        # discharger's: a holder's shorter one must not end the single-use record early.
        if said and isinstance(said[0], caveats.DischargeId):
            discharge_id = said[0].value
        discharge_expires = next((c.at for c in said if isinstance(c, caveats.Expires)), None)
    # A token sealed for a principal opens only with that principal's discharge.
    if rec.principal is not None and (auth_discharge is None or user != rec.principal):
        raise Denial(f"this token is for {rec.principal}; its discharge is not that principal's")
    for d in discharges:
        for dc in d.caveats:
            if dc.vid is not None:
                raise Denial("nested discharge: a discharge may not carry third-party caveats")
            cav = parse(dc.cid)
            first.append(cav)
            # A holder may add third-party caveats of their own; their discharges must not
            # name another user than the authenticated one.
            if isinstance(cav, caveats.User) and cav.value != user:
                raise Denial("discharges name more than one user")

    # Rule 5: every first-party caveat allows the request.
    for cav in first:
        if access is None:  # strip: request-dependent caveats are copied, not judged
            reason = cav.prohibits(None, now) if cav.time_bound else None
        else:
            reason = cav.prohibits(access, now)
        if reason:
            raise Denial(reason)
    if access is not None and access.user is not None and rec.user is not None and access.user != rec.user:
        raise Denial(f"token belongs to user {rec.user!r}, not {access.user!r}")
    return Verified(token, rec, user, first, unjudged, discharge_id, discharge_expires)


def parse_presentation(texts: list[str], parse=tokens.parse) -> list[Token]:
    if not texts:
        raise BadRequest("tokens must be a non-empty list of strings")
    if len(texts) > tokens.MAX_PRESENTATION:
        raise BadRequest(f"at most {tokens.MAX_PRESENTATION} tokens per presentation")
    return [parse(t) for t in texts]


USER_TOKEN_CAVEATS = 3  # org, expires, the authentication caveat


class Checker:
    """Verifies presentations for requests: records from the cache, denials to the audit
    trail, successful uses to the usage recorder."""

    def __init__(self, location: str, trusted: frozenset[str], records: TokenCache, usage: Usage,
                 denials: DenialLog, fresh: Callable[[], bool] = lambda: True,
                 user_signature: Callable[[bytes], bytes] | None = None,
                 user_revoked: Callable[[str], Awaitable[bool]] | None = None):
        self.location = location
        self.user_revoked = user_revoked  # whether a user token's id was reported leaked (SPEC §18)
        self.user_signature = user_signature  # a user token's initial signature (derived key)
        self.fresh = fresh  # whether the revocation view is recent enough to trust
        self.trusted = trusted
        self.records = records
        self.usage = usage
        self.denials = denials
        self.chains = ChainCache()
        self.parsed = ParseCache()  # for verify only: strip and revoke present new strings
        self.replay = ReplayCache()  # DPoP proofs of allowed requests (per process, SPEC §14)

    def parse(self, texts: list[str]) -> list[Token]:
        """Parse a verify presentation through the cache (repeated strings parse once)."""
        return parse_presentation(texts, self.parsed.parse)

    async def check(self, presented: list[Token], access: Access | None,
                    caller: Caller | Callable[[], Caller], proof: ProofRequest | None = None,
                    bind: bool = False) -> Verified:
        """Verify a parsed presentation; raises Denial (audited) or BadRequest. `caller` may be
        a function making it: only a denial needs it, and most verifies are allowed. A DPoP
        `proof`, when given, must be valid and unused; its key is what `cnf-jkt` compares."""
        main, discharges = separate_discharges(presented)
        if main.prefix == tokens.USER:
            raise Denial("user tokens are not accepted here")
        if not self.fresh():
            raise Unavailable("the revocation feed has not been read for 5 s (database unreachable?)", retry_after=1)
        rec = await self.records.get(main.token_id)  # type: ignore[arg-type]  # not a discharge
        now = time.time()
        checked: Proof | None = None
        try:
            if proof is not None and access is not None:
                valid = check_proof(proof.dpop, htm=proof.htm, htu=proof.htu, token=main.encode(), now=now)
                self.replay.claim(valid, now)  # a replay raises here, before `checked` is set
                checked = valid
                access = dataclasses.replace(access, jkt=valid.jkt)
            verified = verify(main, discharges, rec, access, now, self.location, self.trusted, self.chains, bind)
            if verified.unjudged and await self.records.attenuation_revoked(verified.record, verified.unjudged):
                raise Denial("this attenuation of the token is revoked")
        except Denial as e:
            if checked is not None:
                self.replay.release(checked)
            who = caller if isinstance(caller, Caller) else caller()
            self.denials.add(who.record(
                "verify_denied", outcome="denied", token_id=main.token_id, org=rec.org if rec else None,
                detail={"reason": str(e)},
            ))
            raise
        self.usage.used(verified.record, int(now))
        return verified

    async def check_user(self, presented: list[Token], access: Access, caller: Caller) -> tuple[Verified, str, str]:
        """Verify a user token with its discharge (self-service and the console): returns the
        verification, the org and the role signed into the token at mint. Denial otherwise."""
        main, discharges = separate_discharges(presented)
        if main.prefix != tokens.USER:
            raise Denial("a user token (sable_ut_) is required here")
        rec = self.user_record(main)
        verified = verify(main, discharges, rec, access, time.time(), self.location, self.trusted)
        if verified.user is None:
            raise Denial("the discharge names no user")
        if self.user_revoked is not None and await self.user_revoked(rec.id):
            raise Denial("this user token was reported leaked and is revoked")
        return verified, rec.org, tokens.user_claims(main)[1]

    def user_record(self, main: Token) -> TokenRecord:
        """The record a user token is judged against: user tokens are not stored, their key
        is derived from their identifier."""
        if self.user_signature is None:
            raise Denial("this authority issues no user tokens")
        org, _ = tokens.user_claims(main)
        return TokenRecord(id=main.token_id or "", kind="user", org=org, user=None, parent=None,
                           caveat_count=USER_TOKEN_CAVEATS, sig0=self.user_signature(main.identifier), revoked=False,
                           revoked_fps=set(), last_used_at=0)
