"""The discharger's own secrets reported leaked (SPEC §18), through GitHub's secret scanning
(`server.secret_scanning`): a session (`sable_ss_`) ends, an admin credential is disabled for
good. Both are stored only as digests, so a string is genuine when its digest is one of ours,
or was (a repeated report gets the same label and changes nothing more). Macaroons are the
authority's business: here they are false positives.
"""

from __future__ import annotations

import time

from clients import tokens
from discharger.store import DischargerStore
from server.audit import Caller
from server.secret_scanning import Reported


class Leaks:
    def __init__(self, store: DischargerStore):
        self.store = store

    async def report(self, reported: list[Reported], caller: Caller) -> list[bool]:
        """Whether each item is genuine, in order; what is genuine is ended before this returns."""
        judged: dict[str, bool] = {}
        rows = []
        for item in reported:
            if item.token in judged:
                continue
            kind = "session" if item.token.startswith(tokens.SESSION) else \
                "admin" if item.token.startswith(tokens.ADMIN) else None
            genuine = False
            if kind is not None:
                audit = caller.record("leak", detail={"via": "github", "url": item.url, "source": item.source,
                                                      "kind": kind, "label": "true_positive"})
                genuine = await self._end(tokens.secret_digest(item.token), kind, item.token, caller)
                if genuine:
                    rows.append(audit)
            judged[item.token] = genuine
        rows.append(caller.record("leak_report", detail={"via": "github", "items": len(reported),
                                                         "genuine": len(rows)}))
        await self.store.write_audit(rows)
        return [judged[item.token] for item in reported]

    async def _end(self, digest: bytes, kind: str, secret: str, caller: Caller) -> bool:
        if kind == "session":
            ended = await self.store.delete_session(digest)
        else:
            ended = await self.store.is_admin(secret)
        if not ended:
            return await self.store.leaked(digest)
        # Recorded first: a replica starting meanwhile sees it after adding its
        # SABLE_ADMIN_TOKEN and takes that out again (Discharger.open).
        await self.store.record_leaked(digest, kind, int(time.time()),
                                       caller.record("session_end" if kind == "session" else "admin_disabled",
                                                     detail={"by": "leak"}))
        if kind == "admin":
            await self.store.remove_admin(digest)
        return True
