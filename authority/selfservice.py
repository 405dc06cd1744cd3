"""Self-service (SPEC §11): what a user may do with their own org's tokens, acting through a
user token and its discharge instead of the admin credential. The org is always the one
signed into the user token at mint, never one parsed from caveats a holder appended."""

from __future__ import annotations

from dataclasses import dataclass

from authority.listing import Listing
from authority.minting import Minting
from authority.model import Minted, MintRequest
from authority.revocation import Revocation
from authority.store import AuthorityStore, TokenRow
from authority.verification import Checker, parse_presentation
from clients import tokens
from clients.caveats import Access
from clients.errors import Denial, Forbidden, NotFound, TokenFormatError, Unauthorized
from server.audit import Caller


@dataclass(frozen=True, slots=True)
class Member:
    """Who acts through a user token: the discharged user, the org and role of the token."""

    username: str
    org: str
    role: str


class SelfService:
    def __init__(self, checker: Checker, minting: Minting, listing: Listing, revocation: Revocation,
                 store: AuthorityStore):
        self.checker = checker
        self.minting = minting
        self.listing = listing
        self.revocation = revocation
        self.store = store

    async def member(self, presented: list[str], action: str, caller: Caller) -> Member:
        """The member a user token and its discharge prove, for `action` on the token's org;
        Unauthorized (401) for anything missing, invalid or expired."""
        try:
            parsed = parse_presentation(presented)
            main = next((t for t in parsed if t.prefix == tokens.USER), None)
            if main is None:
                raise Denial("a user token (sable_ut_) is required")
            org, _ = tokens.user_claims(main)
            verified, org, role = await self.checker.check_user(parsed, Access(org, action), caller)
        except (Denial, TokenFormatError) as e:
            raise Unauthorized(f"the user token or its discharge is not valid: {e}") from None
        assert verified.user is not None
        return Member(verified.user, org, role)

    async def mint(self, m: Member, req: MintRequest, caller: Caller) -> Minted:
        if req.org != m.org:
            raise Forbidden(f"your user token is for org {m.org!r}, not {req.org!r}")
        return await self.minting.mint(req, caller, created_by=m.username)

    async def tokens(self, m: Member, org: str | None) -> list[TokenRow]:
        if org is not None and org != m.org:
            raise Forbidden(f"your user token is for org {m.org!r}, not {org!r}")
        return await self.listing.tokens(m.org)

    async def token(self, m: Member, token_id: str) -> TokenRow | None:
        """A token of the member's org (as its listing shows them); None for any other."""
        row = await self.listing.token(token_id)
        return row if row is not None and row.org == m.org else None

    def may_revoke(self, m: Member, row: TokenRow) -> bool:
        return row.org == m.org and (m.role == "admin" or m.username in (row.created_by, row.user))

    async def revocable(self, m: Member, token_id: str) -> TokenRow:
        """The token, if the member may revoke it (NotFound, Forbidden otherwise)."""
        row = await self.listing.token(token_id)
        if row is None:
            raise NotFound("no token with that id")
        if row.org != m.org:
            raise Forbidden("that token is not in your org")
        if not self.may_revoke(m, row):
            raise Forbidden("members may revoke only tokens they created or that belong to them; "
                            f"an admin of org {m.org!r} may revoke any")
        return row

    async def revoke(self, m: Member, token_id: str, caller: Caller) -> list[str]:
        await self.revocable(m, token_id)
        return await self.revocation.revoke_id(token_id, caller)
