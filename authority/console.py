"""The console's sign-in and sessions (SPEC §11). Identity comes from the discharger through
a user token and an interactive discharge, never from a session shared between services:

1. `start`: a random `state` (the sign-in cookie), a user token for the org, and an
   interactive discharge whose approval returns to `/console/callback?state=S`.
2. `finish`: only with the same state as the browser's cookie, the discharge is fetched with
   the approval's one-time code, verified with the user token once, and a console session
   made. Sessions store only {user, org, role, expires_at}, keyed by a cookie's digest.

A session lasts no longer than the discharge it was made from (SPEC §19): minutes. Past it,
the next page signs in again through the discharger, which approves a console sign-in
without a prompt for a browser signed in there, checking the user again each time: a
disabled user, or one who lost the org or the role, loses the console within a discharge's
lifetime. The role is the user's own, from the discharge's `role` caveat when the discharger
adds one (the user token's otherwise). Offboarding at the authority ends sessions at once.
"""

from __future__ import annotations

import hmac
import json
import time
from dataclasses import dataclass
from urllib.parse import urlencode

from authority.minting import Minting
from authority.root_keys import RootKeys
from authority.selfservice import Member, SelfService
from authority.store import AuthorityStore, ConsoleSessionRow
from clients import caveats, offline, tokens
from clients.errors import Forbidden, Gone, Unavailable
from clients.sdk import DischargerClient, SableAPIError
from clients.tickets import b64e
from server.audit import Caller
from server.pagekit import new_secret

SESSION_TTL = 3600  # at most; the discharge's expiry (300 s by default) ends a session sooner
SIGNIN_TTL = 600


@dataclass(frozen=True, slots=True)
class SignIn:
    cookie: str  # the state, held by the browser until the callback
    user_url: str


class Console:
    def __init__(self, public_url: str, store: AuthorityStore, keys: RootKeys, minting: Minting,
                 selfservice: SelfService):
        self.public_url = public_url.rstrip("/")
        self.store = store
        self.keys = keys
        self.minting = minting
        self.selfservice = selfservice

    def csrf(self, cookie: str) -> str:
        return self.keys.master.pseudonym(f"console-csrf:{cookie}")

    def _discharger(self) -> DischargerClient:
        discharger = self.minting.trust.first()
        if discharger is None:
            raise Unavailable("this authority trusts no discharger, so nobody can sign in")
        return DischargerClient(discharger.location, retries=1)

    async def start(self, org: str, role: str, caller: Caller, notice: str | None = None) -> SignIn:
        """Begin a sign-in; `notice` (why it began, one of the pages' known notices) comes back
        from `finish` to be shown once signed in."""
        state = new_secret()
        ut = self.minting.mint_user(org, role, caller).token
        ticket = tokens.parse(ut).caveats[-1].cid
        return_to = f"{self.public_url}/console/callback?{urlencode({'state': state})}"
        try:
            async with self._discharger() as d:
                # The discharger limits sessionless starts per client: name the browser, not us.
                flow = await d.interactive_discharge(b64e(ticket), return_to, forwarded_for=caller.client)
        except SableAPIError as e:
            raise Unavailable(f"the discharger did not start a sign-in: {e.message}", retry_after=5) from None
        now = int(time.time())
        sealed = self.keys.master.seal(json.dumps({"ut": ut, "poll": flow["poll_url"], "org": org,
                                                   "notice": notice}).encode())
        await self.store.add_signin(tokens.secret_digest(state), sealed, now + SIGNIN_TTL, now)
        return SignIn(state, flow["user_url"])

    async def finish(self, state: str, cookie: str | None, code: str, caller: Caller) -> tuple[str, str, str | None]:
        """(new session cookie, org, notice) once the flow this browser started was approved."""
        if not cookie or not hmac.compare_digest(state.encode(), cookie.encode()):
            raise Forbidden("this sign-in was started in another browser (or its cookie expired); start again")
        sealed = await self.store.take_signin(tokens.secret_digest(state), int(time.time()))
        plain = self.keys.master.unseal(sealed) if sealed else None
        if plain is None:
            raise Gone("this sign-in has expired or was already used; start again")
        started = json.loads(plain)
        try:
            async with self._discharger() as d:
                got = await d.poll_flow(started["poll"], code)
        except SableAPIError as e:
            if e.code == "unavailable":
                raise Unavailable(f"the discharger is unreachable: {e.message}", retry_after=5) from None
            raise Forbidden(f"sign-in was not approved: {e.message}") from None
        if got is None:
            raise Forbidden("sign-in was not approved yet; start again")
        ut = started["ut"]
        member = await self.selfservice.member([ut, offline.bind(ut, got["discharge"])], "r", caller)
        # Verified above. The discharge came from the discharger to us, never through a
        # holder, so its `role` is the discharger's word (the lowest, should there be more).
        said = [caveats.parse(c.cid) for c in tokens.parse(got["discharge"]).caveats if not c.third_party]
        until = min([c.at for c in said if isinstance(c, caveats.Expires)] + [int(time.time()) + SESSION_TTL])
        member = Member(member.username, member.org, caveats.lowest_role(said) or member.role)
        return await self._session(member, until, caller), member.org, started.get("notice")

    async def _session(self, m: Member, until: int, caller: Caller) -> str:
        cookie = new_secret()
        now = int(time.time())
        audit = caller.record("console_login", user=m.username, org=m.org, detail={"role": m.role, "until": until})
        await self.store.create_console_session(tokens.secret_digest(cookie),
                                                ConsoleSessionRow(m.username, m.org, m.role, until), now, audit)
        audit.emit()
        return cookie

    async def member(self, cookie: str | None) -> Member | None:
        if not cookie:
            return None
        row = await self.store.console_session(tokens.secret_digest(cookie), int(time.time()))
        return Member(row.username, row.org, row.role) if row else None

    async def sign_out(self, cookie: str | None) -> None:
        if cookie:
            await self.store.delete_console_session(tokens.secret_digest(cookie))
