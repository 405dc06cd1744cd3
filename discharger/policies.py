"""Org policies (SPEC §15): how the sessions behind an org's discharges must have been made.
Judged when the discharger discharges a ticket of the org and when a browser approves one of
its flows, against the session's `auth_method`."""

from __future__ import annotations

from clients.errors import BadRequest, Forbidden
from discharger.providers import ProviderSettings
from discharger.store import DischargerStore, OrgPolicy
from server.audit import Caller

# Sign-ins with a second factor at Sable. A provider's sign-in counts only for an org that also
# requires that provider: Sable cannot see a provider's factors, so only an org that chose the
# provider vouches for them (an org requiring MFA alone must not be satisfied by any provider,
# one with `auto` provisioning or no MFA included).
STRONG = ("password+totp", "password+passkey", "passkey")


def satisfies(policy: OrgPolicy, auth_method: str) -> tuple[str, str] | None:
    """None if a session made by `auth_method` meets the policy; else (reason, what to do)."""
    if policy.require_idp is not None and auth_method != f"idp:{policy.require_idp}":
        return "idp_required", (f"org {policy.org} requires signing in with identity provider {policy.require_idp!r}: "
                                "sign in again with it (sable login --web)")
    if policy.require_mfa and auth_method not in STRONG and (policy.require_idp is None
                                                              or auth_method != f"idp:{policy.require_idp}"):
        return "mfa_policy", (f"org {policy.org} requires a second factor: set one up at the discharger's "
                              "/account/security, then sign in again")
    return None


class Policies:
    def __init__(self, store: DischargerStore, providers: tuple[ProviderSettings, ...]):
        self.store = store
        self.providers = providers

    async def set(self, policy: OrgPolicy, caller: Caller) -> OrgPolicy:
        if policy.require_idp is not None and all(p.name != policy.require_idp for p in self.providers):
            raise BadRequest(f"no identity provider named {policy.require_idp!r} is configured at this discharger")
        audit = caller.record("org_policy", org=policy.org,
                              detail={"require_idp": policy.require_idp, "require_mfa": policy.require_mfa})
        await self.store.set_org_policy(policy, audit)
        audit.emit()
        return policy

    async def judge(self, org: str, auth_method: str) -> None:
        """Forbidden (403, with `reason`) unless a session made by `auth_method` may act in `org`."""
        failed = satisfies(await self.store.org_policy(org), auth_method)
        if failed is not None:
            raise Forbidden(failed[1], reason=failed[0])
