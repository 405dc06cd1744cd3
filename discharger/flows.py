"""Interactive discharges (SPEC §11), modelled on Fly's third-party protocol: a client with a
ticket but no session starts a flow and gets two URLs, each with its own secret: `user_url`,
where a signed-in browser approves or denies, and `poll_url`, where the client collects the
discharge, once. A flow started with `return_to` (the console's sign-in) hands its discharge
only to a poll carrying the one-time code that the approval redirect added to `return_to`,
so a flow approved in one browser never signs in another."""

from __future__ import annotations

import hmac
import time
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from clients import tokens
from clients.errors import Forbidden, Gone, NotFound
from clients.tickets import TicketContents, b64d, b64e
from discharger.discharges import Discharges
from discharger.model import Discharge, role_at_least
from discharger.policies import satisfies
from discharger.store import DischargerStore, GrantRow
from discharger.ticket_keys import TicketKeys
from server.audit import Caller
from server.pagekit import new_secret

EXPIRES_IN = 600
CODE_TTL = 60


def _now() -> float:  # tests move it
    return time.time()


@dataclass(frozen=True, slots=True)
class Started:
    user_url: str
    poll_url: str
    expires_in: int


def describe(t: TicketContents, to_console: bool) -> tuple[str, str | None]:
    """What approving a ticket grants, worded by where its discharge goes (for the approval
    page): a heading, and a plain warning when it hands a user's rights to a program."""
    if t.purpose == "user" and to_console:
        return (f"Sign in to the console of org {t.org}" if t.role == "member" else
                f"Sign in to the console of org {t.org} as {t.role}"), None
    if t.purpose == "user":  # the discharge goes to whoever holds the poll URL
        heading = f"Let a program act as you in org {t.org}" + (" with admin rights" if t.role == "admin" else "")
        power = ("list, create and revoke any of the org's tokens" if t.role == "admin" else
                 "list the org's tokens, create tokens and revoke the ones you made")
        return heading, (f"The program that started this request gets your {t.role} rights in org {t.org} for "
                         f"a few minutes: it can {power}. Approve only if you started it yourself.")
    name = f' "{t.name}"' if t.name else ""
    return f"Authorize permission token{name} for org {t.org}", None


class Flows:
    def __init__(self, public_url: str, authority_urls: tuple[str, ...], store: DischargerStore,
                 keys: TicketKeys, discharges: Discharges):
        self.public_url = public_url.rstrip("/")
        self.authority_urls = authority_urls
        self.store = store
        self.keys = keys
        self.discharges = discharges

    async def start(self, ticket: bytes, return_to: str | None, caller: Caller) -> Started:
        contents = await self.keys.unseal_ticket(ticket)  # TicketError (400) before anything is stored
        if contents.principal is not None:  # no person may approve it (SPEC §16): say so now, not at approval
            raise Forbidden(f"this ticket is for {contents.principal}; only that principal's CI identity can "
                            "discharge it (sable discharge --id-token-env)")
        user_secret, poll_secret = new_secret(), new_secret()
        now = int(_now())
        what, warning = describe(contents, self.returns_to_authority(return_to))
        data = {"ticket": b64e(ticket), "return_to": return_to, "what": what, "warning": warning,
                "org": contents.org, "role": contents.role, "purpose": contents.purpose, "client": caller.client}
        row = GrantRow(tokens.secret_digest(user_secret), "flow", tokens.secret_digest(poll_secret).hex(), data,
                       "pending", now, now + EXPIRES_IN)
        await self.store.add_grant(row, now)
        caller.record("flow_start", org=contents.org).emit()
        return Started(f"{self.public_url}/flows/{user_secret}", f"{self.public_url}/v1/flows/{poll_secret}",
                       EXPIRES_IN)

    async def pending(self, user_secret: str) -> GrantRow:
        """The flow a `user_url` names, while it waits for a decision."""
        row = await self.store.get_grant("flow", digest=tokens.secret_digest(user_secret))
        if row is None:
            raise NotFound("this sign-in link is unknown")
        if _now() >= row.expires_at:
            raise Gone("this sign-in link has expired; start again")
        if row.status != "pending":
            raise Gone("this request was already answered")
        return row

    def returns_to_authority(self, return_to: str | None) -> bool:
        """Whether `return_to` is under a configured authority's /console/ (scheme, host and
        port equal): only then does Approve redirect there."""
        if not return_to:
            return False
        try:
            target = urlsplit(return_to)
            trusted = [urlsplit(u) for u in self.authority_urls]
            port = target.port
        except ValueError:
            return False
        segments = unquote(target.path).split("/")
        return any((target.scheme, target.hostname, port) == (t.scheme, t.hostname, t.port) for t in trusted) \
            and target.path.startswith("/console/") and "\\" not in return_to and target.username is None \
            and not any(seg in (".", "..") for seg in segments)

    async def _may_approve(self, username: str, row: GrantRow) -> bool:
        user = await self.store.get_user(username)
        return user is not None and not user.disabled and role_at_least(user.roles.get(row.data["org"]),
                                                                         row.data["role"])

    async def approves_silently(self, username: str, row: GrantRow, auth_method: str = "password") -> bool:
        """Whether this flow is approved without a prompt (SPEC §19): a console sign-in (a user
        token's flow returning to a configured authority's /console/) for a signed-in user who
        may approve it, signed in as the org's policy requires. So a console session, which
        lasts no longer than its discharge, renews itself, and each renewal checks the user
        again (disabled, membership, role, how they signed in)."""
        return row.data.get("purpose") == "user" and self.returns_to_authority(row.data["return_to"]) \
            and await self._may_approve(username, row) \
            and satisfies(await self.store.org_policy(row.data["org"]), auth_method) is None

    async def decide(self, username: str, user_secret: str, approve: bool, caller: Caller,
                     prompted: bool = True, auth_method: str = "password") -> tuple[GrantRow, str | None]:
        """Record the user's answer. Returns the row and, for an approved flow that returns to
        an authority, the one-time code to hand back; Denied if the user may not approve."""
        row = await self.pending(user_secret)
        allowed = await self._may_approve(username, row)
        policy_failed = satisfies(await self.store.org_policy(row.data["org"]), auth_method) if allowed else None
        allowed = allowed and policy_failed is None
        row.status, row.username = ("approved" if approve and allowed else "denied"), username
        row.data = {**row.data, "auth_method": auth_method}
        code = None
        if row.status == "approved" and self.returns_to_authority(row.data["return_to"]):
            code = new_secret()
            row.code_hash, row.code_expires_at = tokens.secret_digest(code), int(_now()) + CODE_TTL
        audit = caller.record("flow_approve" if row.status == "approved" else "flow_deny", user=username,
                              org=row.data["org"], outcome="ok" if row.status == "approved" else "denied",
                              detail=None if prompted else {"prompted": False})
        if not await self.store.update_grant(row, "pending", audit):
            raise Gone("this request was already answered")
        audit.emit()
        if approve and policy_failed is not None:
            raise Forbidden(policy_failed[1], reason=policy_failed[0])
        if approve and not allowed:
            raise Forbidden(f"you need role {row.data['role']} in org {row.data['org']} to approve this")
        return row, code

    async def poll(self, poll_secret: str, flow_code: str | None, caller: Caller) -> Discharge | None:
        """None while pending; the discharge once (then Gone); Denied if denied."""
        row = await self.store.get_grant("flow", lookup=tokens.secret_digest(poll_secret).hex())
        if row is None:
            raise NotFound("unknown poll URL")
        if row.status == "used":
            raise Gone("this discharge was already collected")
        if row.status == "denied":
            raise Forbidden("the user denied this request, or may not approve it")
        if _now() >= row.expires_at:
            raise Gone("this request has expired; start again")
        if row.status == "pending":
            return None
        if row.code_hash is not None:  # started with return_to: only the browser's code releases it
            if not flow_code or not hmac.compare_digest(tokens.secret_digest(flow_code), row.code_hash):
                raise Forbidden("this flow's discharge is released only with its one-time code (Sable-Flow-Code)")
            if _now() >= (row.code_expires_at or 0):
                raise Gone("the one-time code has expired; start again")
        elif row.data["return_to"]:
            raise Forbidden("this flow's discharge is released only with its one-time code (Sable-Flow-Code)")
        row.status = "used"
        if not await self.store.update_grant(row, "approved"):
            raise Gone("this discharge was already collected")
        assert row.username is not None
        return await self.discharges.issue(row.username, b64d(row.data["ticket"]), caller,
                                           row.data.get("auth_method", "password"))
