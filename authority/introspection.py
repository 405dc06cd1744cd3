"""RFC 7662 introspection (SPEC §17), for gateways that speak it: whether a presentation is
active, and what it says, for callers holding the admin credential or an introspect-only one.

Active means §3's rules 1-4 hold and every time caveat holds now; with an access given, it
also means allowed. Request-dependent caveats are returned, never judged, when no access is
given: the resource server judges `sable_caveats` itself (unknown names deny). Anything not
active is `{"active": false}` and nothing else, so the answer tells a caller nothing about why.
"""

from __future__ import annotations

from authority.verification import Checker, parse_presentation
from clients import caveats, tokens
from clients.caveats import Access
from clients.errors import BadRequest, Denial, MalformedToken
from server.audit import Caller

INACTIVE = {"active": False}


class Introspection:
    def __init__(self, checker: Checker):
        self.checker = checker

    async def introspect(self, presentation: str, access: Access | None, orgs: tuple[str, ...],
                         caller: Caller) -> dict:
        """The RFC 7662 answer. `orgs`: the orgs the caller may see (() for all)."""
        try:
            presented = parse_presentation(tokens.split_presentation(presentation))
            main = next((t for t in presented if t.prefix != tokens.DISCHARGE), None)
            if main is None or main.prefix == tokens.USER:
                return INACTIVE
            verified = await self.checker.check(presented, access, caller)
        except (Denial, MalformedToken, BadRequest):  # forged, revoked, lapsed, misshapen: all the same
            return INACTIVE
        rec = verified.record
        if orgs and rec.org not in orgs:
            return INACTIVE
        texts = [c.text for c in verified.caveats]
        expiries = [c.at for c in verified.caveats if isinstance(c, caveats.Expires)]
        starts = [c.at for c in verified.caveats if isinstance(c, caveats.NotBefore)]
        jkts = [c.jkt for c in verified.caveats if isinstance(c, caveats.CnfJkt)]
        answer: dict = {"active": True, "token_type": "DPoP" if jkts else "Bearer", "sable_kind": rec.kind,
                        "jti": rec.id, "org": rec.org, "iat": rec.created_at, "sable_caveats": texts}
        if verified.user is not None:
            answer["sub"] = verified.user
        if expiries:
            answer["exp"] = min(expiries)
        if starts:
            answer["nbf"] = max(starts)
        if jkts:
            answer["cnf"] = {"jkt": jkts[0]}
        return answer

