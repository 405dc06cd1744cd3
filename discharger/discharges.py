"""Discharges: proof, for one ticket, that an authenticated user (or a service principal,
`discharger.principals`) belongs to its org."""

from __future__ import annotations

import time

import nacl.utils

from clients import macaroon
from clients.caveats import format_time
from clients.errors import Forbidden
from clients.tickets import TicketContents
from discharger.authorities import Authorities
from discharger.config import DischargerConfig
from discharger.model import Discharge, role_at_least
from discharger.policies import Policies, satisfies
from discharger.store import DischargerStore
from discharger.ticket_keys import TicketKeys
from server.audit import Caller


class Discharges:
    def __init__(self, config: DischargerConfig, store: DischargerStore, keys: TicketKeys,
                 authorities: Authorities, policies: Policies):
        self.config = config
        self.store = store
        self.keys = keys
        self.authorities = authorities
        self.policies = policies

    async def issue(self, username: str, ticket: bytes, caller: Caller, auth_method: str = "password") -> Discharge:
        """A discharge for `username` (already authenticated by session); TicketError (400) if
        the ticket can't be opened, Forbidden (403) if the user may not have one."""
        contents = await self.keys.unseal_ticket(ticket)
        user = await self.store.get_user(username)
        audit = caller.record("discharge", user=username, org=contents.org, detail={"auth_method": auth_method})
        refusal, reason = None, None
        if contents.principal is not None:  # SPEC §16: only that principal, through its ID token
            refusal = f"this ticket is for {contents.principal}; only that principal's CI identity can discharge it"
        elif user is None or user.disabled:
            refusal = "user is disabled"
        elif contents.org not in user.roles:
            refusal = f"user is not a member of org {contents.org!r}"
        elif not role_at_least(user.roles[contents.org], contents.role):
            refusal = f"this needs role {contents.role} in org {contents.org!r}"
        else:
            failed = satisfies(await self.store.org_policy(contents.org), auth_method)
            if failed is not None:
                reason, refusal = failed
        if refusal is not None:
            audit.outcome = "denied"
            if reason is not None:
                audit.detail = {**(audit.detail or {}), "reason": reason}
        await self.store.write_audit([audit])
        audit.emit()
        if refusal is not None:
            raise Forbidden(refusal, reason=reason)
        assert user is not None
        return await self.sign(contents, ticket, username, user.roles[contents.org], auth_method)

    async def sign(self, contents: TicketContents, ticket: bytes, who: str, role: str, auth_method: str) -> Discharge:
        """The discharge itself, for a user or principal judged already: `user`, `expires`, and,
        once every authority understands them, a fresh `discharge-id` before them (single-use
        strips count by it) and `role` (the console signs in with it)."""
        expires_at = int(time.time()) + min(self.config.discharge_ttl, contents.ttl)
        understood = await self.authorities.understood()
        # discharge-id first: a holder can only append, so an authority believes it only there.
        said = [f"discharge-id {nacl.utils.random(16).hex()}"] if "discharge-id" in understood else []
        said += [f"user {who}", f"expires {format_time(expires_at)}"]
        if "role" in understood:
            said.append(f"role {role}")
        token = macaroon.discharge(contents.caveat_key, ticket, self.config.public_url, said)
        return Discharge(token.encode(), expires_at, auth_method)
