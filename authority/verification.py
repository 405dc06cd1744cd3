"""The verify algorithm of SPEC §3, as one pure function.

It is given parsed tokens, the token's record (initial signature, lineage, revocation) and
the request, and either returns a `Verified` or raises `Denial` naming the first rule or
caveat that failed. It never recurses: a discharge with third-party caveats of its own is
refused as nested, so self-referencing discharges cost one loop, not a stack overflow.
"""

from __future__ import annotations

from dataclasses import dataclass

from clients import caveats, crypto
from clients.caveats import Access, Caveat
from clients.tokens import Token

from authority.records import TokenRecord


class Denial(Exception):
    """Verification failed; the message says which rule or caveat, never a secret."""


@dataclass(slots=True)
class Verified:
    token: Token
    record: TokenRecord
    user: str | None
    caveats: list[Caveat]  # first-party caveats of the token, then of its discharges


class ChainCache:
    """Tokens whose signature chain verified, with the parsed caveats it produced.

    Keyed by the whole token (every byte), so a token differing anywhere misses. Only tokens
    whose record has no revoked attenuations are kept, since those need every intermediate
    signature re-checked. Bounded: emptied when full.
    """

    def __init__(self, max_entries: int = 10_000):
        self.max_entries = max_entries
        self._entries: dict[Token, tuple] = {}

    def get(self, token: Token) -> tuple | None:
        return self._entries.get(token)

    def put(self, token: Token, value: tuple) -> None:
        if len(self._entries) >= self.max_entries:
            self._entries.clear()
        self._entries[token] = value


def chain(token: Token, sig0: bytes) -> list[bytes]:
    """The signature after each caveat of the token, from its initial signature."""
    sigs = []
    sig = sig0
    for c in token.caveats:
        sig = crypto.first_party(sig, c.cid) if c.vid is None else crypto.third_party(sig, c.vid, c.cid)
        sigs.append(sig)
    return sigs


def split_presentation(tokens: list[Token]) -> tuple[Token, list[Token]]:
    """(the one permission or service token, its discharges); ValueError if not exactly one."""
    main = [t for t in tokens if t.prefix != "sable_dt_"]
    if len(main) != 1:
        raise ValueError("a presentation holds exactly one permission or service token")
    return main[0], [t for t in tokens if t.prefix == "sable_dt_"]


def verify(
    token: Token,
    discharges: list[Token],
    rec: TokenRecord | None,
    access: Access | None,
    now: float,
    location: str,
    trusted: frozenset[str],
    chains: ChainCache | None = None,
) -> Verified:
    """Judge a presentation. With `access=None` (strip) only time caveats are judged."""
    # Rule 1: a known, unrevoked token whose signature chain is valid.
    if token.location != location:
        raise Denial("token location is not this authority")
    if rec is None:
        raise Denial("unknown token")
    if rec.kind != token.kind:
        raise Denial("token prefix does not match its kind")
    if rec.revoked:
        raise Denial("token is revoked")
    if rec.sig0 is None:
        raise Denial("token key cannot be opened with this authority's master key")
    fps = rec.revoked_fps
    parse = caveats.parse
    known = chains.get(token) if chains is not None and not fps else None
    if known is not None:
        # This exact token (all its bytes) already passed rules 1-2 against this id's key,
        # which never changes; revocation was checked above, from the record.
        first, third = list(known[0]), known[1]
    else:
        sig = rec.sig0
        revoked_attenuation = False
        first: list[Caveat] = []
        third = []
        mac = crypto.digest  # the bare C HMAC: this loop is the hot path of every verify
        for i, c in enumerate(token.caveats):
            if c.vid is None:
                first.append(parse(c.cid))
                sig = mac(sig, c.cid, "sha256")
            else:
                third.append((i, c, sig))
                sig = crypto.third_party(sig, c.vid, c.cid)
            if fps and crypto.fingerprint(sig) in fps:
                revoked_attenuation = True
        if not crypto.equal(sig, token.signature):
            raise Denial("signature does not match")
        # Rule 2: no signature along the chain is a revoked attenuation.
        if revoked_attenuation:
            raise Denial("this attenuation of the token is revoked")
        if chains is not None and not fps:
            chains.put(token, (tuple(first), third))

    # Rule 3: each third-party caveat has exactly one bound, valid discharge.
    by_cid: dict[bytes, list[Token]] = {}
    for d in discharges:
        by_cid.setdefault(d.identifier, []).append(d)
    used: set[int] = set()
    # The authentication caveat is the last one minted; only its discharge names the user.
    auth_index = rec.caveat_count - 1 if rec.kind == "permission" else -1
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
        key = crypto.open_caveat_key(sig_before, c.vid)
        if key is None:
            raise Denial("third-party caveat cannot be opened")
        dsig = crypto.first_party(key, d.identifier)
        for dc in d.caveats:
            dsig = crypto.first_party(dsig, dc.cid) if dc.vid is None else crypto.third_party(dsig, dc.vid, dc.cid)
        if not crypto.equal(crypto.bind(token.signature, dsig), d.signature):
            if crypto.equal(dsig, d.signature):
                raise Denial("discharge is not bound to this token")
            raise Denial("discharge is bound to another token or its signature does not match")
        if i == auth_index:
            auth_discharge = d

    # Rule 4: nothing left over, nothing nested.
    if len(used) != len(discharges):
        raise Denial("a discharge matches no third-party caveat of this token")
    user = rec.user
    if auth_discharge is not None:
        user = next((c.value for c in map(parse, (dc.cid for dc in auth_discharge.caveats))
                     if isinstance(c, caveats.User)), None)
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
    return Verified(token, rec, user, first)

