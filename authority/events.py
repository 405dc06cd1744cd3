"""Events from the discharger (SPEC §18): `user.disabled`, `user.removed_from_org` and
`principal.disabled`, posted to `POST /v1/events` with an admin credential. Each is taken once
by id; in the same transaction the user's console sessions end (all of them when the user is
disabled, those in the orgs left when removed from some), and the audit row it writes is
fanned out to the webhooks of each org it names by the audit trail's trigger."""

from __future__ import annotations

import time

from authority.store import AuthorityStore
from clients.caveats import NAME_RE
from clients.errors import BadRequest
from server.audit import Caller

TYPES = ("user.disabled", "user.removed_from_org", "principal.disabled")


class DischargerEvents:
    def __init__(self, store: AuthorityStore):
        self.store = store

    async def receive(self, body: dict, caller: Caller) -> bool:
        """Take one event; False if it was taken before (nothing changes then)."""
        event_id, kind, data = body.get("id"), body.get("type"), body.get("data")
        if not isinstance(event_id, str) or not 0 < len(event_id) <= 512:
            raise BadRequest("id must be a string of at most 512 characters")
        if kind not in TYPES:
            raise BadRequest(f"type must be one of {', '.join(TYPES)}")
        user = data.get("user") if isinstance(data, dict) else None
        orgs = data.get("orgs") if isinstance(data, dict) else None
        if not isinstance(user, str) or not 0 < len(user) <= 200:
            raise BadRequest("data.user must be a user or principal name")
        if not isinstance(orgs, list) or len(orgs) > 1000 or not all(isinstance(o, str) and NAME_RE.fullmatch(o)
                                                                       for o in orgs):
            raise BadRequest("data.orgs must be a list of org names")
        sessions = None if kind == "user.disabled" else orgs if kind == "user.removed_from_org" else []
        audit = caller.record("discharger_event", user=user,
                              detail={"id": event_id, "type": kind, "subject": user, "orgs": orgs})
        taken = await self.store.record_discharger_event(event_id, user, sessions, int(time.time()), audit)
        if taken:
            audit.emit()
        return taken
