"""Service principals (SPEC §16): non-human members of one org, named `ci:NAME`, with trust
policies saying which CI identity tokens speak for them, and the discharge such a token buys:
for a ticket sealed for that principal, and for nothing else.

Every refusal of an ID token answers the same 401 (`no_trust_policy`), so a caller holding a
ticket learns nothing about the principal or its policies; which check failed goes to the
audit only. A replay is its own answer (`id_token_replayed`): the job should fetch a new token.
"""

from __future__ import annotations

import math
import re
import time

import nacl.utils

from clients.errors import BadRequest, Conflict, Forbidden, NotFound, Unauthorized
from clients.tickets import PRINCIPAL_RE
from discharger.config import DischargerConfig
from discharger.discharges import Discharges
from discharger.id_tokens import LEEWAY, Issuers, SignInRefused, audiences, unverified_claims
from discharger.model import ROLES, Discharge, role_at_least
from discharger.store import DischargerStore, PrincipalRow, TrustPolicy
from discharger.ticket_keys import TicketKeys
from discharger.trust import DEFAULT_MAX_AGE, MAX_MAX_AGE, check_policy, mismatch
from server.audit import AuditRecord, Caller

NAME_RE = re.compile(r"[a-z0-9-]{1,40}")
MAX_JTI = 256
REFUSED = "this ID token matches no trust policy of the principal this ticket is for"


def principal_name(value: object) -> str:
    """`ci:NAME` from `NAME` or `ci:NAME`; BadRequest naming the rule otherwise."""
    if isinstance(value, str) and NAME_RE.fullmatch(value):
        value = f"ci:{value}"
    if not isinstance(value, str) or not PRINCIPAL_RE.fullmatch(value):
        raise BadRequest("a principal is named ci:NAME, NAME matching [a-z0-9-]{1,40}")
    return value


class _Refused(Exception):
    """An ID token that speaks for nobody here; `reason` names the check, for the audit only."""

    def __init__(self, reason: str):
        self.reason = reason


class Principals:
    def __init__(self, config: DischargerConfig, store: DischargerStore, keys: TicketKeys, discharges: Discharges):
        self.config = config
        self.store = store
        self.keys = keys
        self.discharges = discharges
        self.issuers = Issuers()

    async def close(self) -> None:
        await self.issuers.close()

    # --- administration ---------------------------------------------------------------------

    async def create(self, name: str, org: str, role: str, caller: Caller) -> PrincipalRow:
        if role not in ROLES:
            raise BadRequest("role must be member or admin")
        row = PrincipalRow(principal_name(name), org, role, False, int(time.time()))
        audit = caller.record("principal_create", user=row.name, org=org, detail={"role": role})
        if not await self.store.create_principal(row, audit):
            raise Conflict(f"principal {row.name} already exists")
        audit.emit()
        return row

    async def get(self, name: str) -> PrincipalRow:
        found = await self.store.principal(principal_name(name))
        if found is None:
            raise NotFound(f"no principal {name}")
        return found

    async def list(self, org: str | None = None) -> list[PrincipalRow]:
        return await self.store.list_principals(org)

    async def set_disabled(self, name: str, disabled: bool, caller: Caller) -> PrincipalRow:
        name = principal_name(name)
        audit = caller.record("principal_disable" if disabled else "principal_enable", user=name)
        if not await self.store.set_principal_disabled(name, disabled, audit):
            raise NotFound(f"no principal {name}")
        audit.emit()
        return await self.get(name)

    async def remove(self, name: str, caller: Caller) -> None:
        name = principal_name(name)
        audit = caller.record("principal_remove", user=name)
        if not await self.store.remove_principal(name, audit):
            raise NotFound(f"no principal {name}")
        audit.emit()

    async def trust(self, name: str, issuer: str, audience: str | None, claims: dict[str, str],
                    max_age: int | None, caller: Caller) -> TrustPolicy:
        name = principal_name(name)
        max_age = DEFAULT_MAX_AGE if max_age is None else max_age
        check_policy(issuer, audience, claims, max_age)
        policy = TrustPolicy(nacl.utils.random(4).hex(), issuer, audience, dict(claims), max_age)
        audit = caller.record("principal_trust", user=name, detail={
            "policy": policy.id, "issuer": issuer, "audience": audience, "claims": claims, "max_age": max_age})
        if not await self.store.add_trust_policy(name, policy, int(time.time()), audit):
            raise NotFound(f"no principal {name}")
        audit.emit()
        return policy

    async def untrust(self, name: str, policy_id: str, caller: Caller) -> None:
        name = principal_name(name)
        audit = caller.record("principal_untrust", user=name, detail={"policy": policy_id})
        if not await self.store.remove_trust_policy(name, policy_id, audit):
            raise NotFound(f"principal {name} has no trust policy {policy_id!r}")
        audit.emit()

    # --- discharging with an ID token ---------------------------------------------------------

    async def discharge(self, ticket: bytes, id_token: str, caller: Caller) -> Discharge:
        """A discharge for the principal the ticket is sealed for, if the ID token matches one
        of its trust policies: Unauthorized (401) otherwise, Forbidden (403) if the principal
        may not act in the ticket's org."""
        contents = await self.keys.unseal_ticket(ticket)  # TicketError: 400
        if contents.principal is None:
            raise Forbidden("this ticket is not sealed for a service principal: a person discharges it, "
                            "with a session")
        name = contents.principal
        audit = caller.record("discharge", user=name, org=contents.org, detail={"auth_method": "id_token"})
        try:
            principal, policy, claims = await self._judge(name, id_token)
        except _Refused as e:
            await self._refuse(audit, e.reason)
            raise Unauthorized(REFUSED, reason="no_trust_policy") from None
        audit.detail = {**(audit.detail or {}), "policy": policy.id, "issuer": policy.issuer,
                        "subject": str(claims.get("sub", ""))[:256]}
        if contents.org != principal.org or not role_at_least(principal.role, contents.role):
            refusal = (f"{name} is not a member of org {contents.org!r}" if contents.org != principal.org
                       else f"this needs role {contents.role} in org {contents.org!r}")
            await self._refuse(audit, "org_or_role")
            raise Forbidden(refusal)
        # Claimed last: a token refused above stays usable for a policy fixed meanwhile. Kept
        # for as long as any policy could take the token, whichever matched this time.
        until = math.ceil(min(claims["exp"], claims["iat"] + MAX_MAX_AGE)) + LEEWAY
        if not await self.store.claim_id_token(policy.issuer, claims["jti"], until, int(time.time())):
            await self._refuse(audit, "id_token_replayed")
            raise Unauthorized("this ID token was used already; ask the CI for a fresh one", reason="id_token_replayed")
        await self.store.write_audit([audit])
        audit.emit()
        return await self.discharges.sign(contents, ticket, name, principal.role, "id_token")

    async def _refuse(self, audit: AuditRecord, reason: str) -> None:
        audit.outcome = "denied"
        audit.detail = {**(audit.detail or {}), "reason": reason}
        await self.store.write_audit([audit])
        audit.emit()

    async def _judge(self, name: str, id_token: str) -> tuple[PrincipalRow, TrustPolicy, dict]:
        """(principal, the policy that matched, the token's claims), or _Refused naming the
        first check that failed."""
        if not isinstance(id_token, str) or not id_token:
            raise _Refused("id_token_format")
        principal = await self.store.principal(name)
        if principal is None or principal.disabled:
            raise _Refused("principal_disabled" if principal else "principal_unknown")
        iss = unverified_claims(id_token).get("iss")
        candidates = [p for p in principal.policies if p.issuer == iss]
        if not candidates:
            raise _Refused("issuer_not_trusted")
        issuer = await self.issuers.get(candidates[0].issuer)  # Unavailable: 503, the CI may retry
        now = time.time()
        try:
            claims = await issuer.verify(self.issuers.http, id_token, now)
        except SignInRefused as e:
            raise _Refused(e.reason or "id_token") from None
        jti = claims.get("jti")
        if not isinstance(jti, str) or not 0 < len(jti) <= MAX_JTI:
            raise _Refused("id_token_jti")
        first_failure = None
        for policy in candidates:
            failure = self._fails(policy, claims, now)
            if failure is None:
                return principal, policy, claims
            first_failure = first_failure or f"{policy.id}:{failure}"
        raise _Refused(first_failure or "no_policy")

    def _fails(self, policy: TrustPolicy, claims: dict, now: float) -> str | None:
        if (policy.audience or self.config.public_url) not in audiences(claims):
            return "aud"
        if now - claims["iat"] > policy.max_age + LEEWAY:
            return "too_old"
        key = mismatch(policy, claims)
        return None if key is None else f"claim:{key}"

