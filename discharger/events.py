"""The discharger's events for the authorities (SPEC §18): `user.disabled`,
`user.removed_from_org` and `principal.disabled`, queued by triggers in the transaction of
the change and sent to each authority's `POST /v1/events` with an authority admin credential
(`authority_admin_token`). The authority fans them out to the webhooks of each org concerned
and ends the user's console sessions there at once.

Events go to the first `authority_url` only: the credential is that authority's, and no
other authority should ever see it. Delivery is at least once: an event is sent again (after
5 s, 30 s, 2 min, 10 min, 1 h, then every 6 h) until the authority took it; it ignores an id
(random per event) it has seen.
"""

from __future__ import annotations

import time

import aiohttp
import orjson
import structlog

from clients.caveats import format_time
from discharger.store import DischargerStore
from server.periodic import Periodic

log = structlog.get_logger("sable.events")


class EventSender:
    RETRIES = (5, 30, 120, 600, 3600)
    EVERY_AFTER = 6 * 3600
    POLL = 0.5
    LEASE = 60
    BATCH = 1  # one at a time: a slow authority must not outlast the lease of events waiting behind
    TIMEOUT = 15.0

    def __init__(self, store: DischargerStore, authority_urls: tuple[str, ...], admin_token: str | None,
                 origin: str):
        self.store = store
        self.urls = authority_urls[:1]
        self.token = admin_token
        self.origin = origin  # the discharger's URL: event ids are unique per discharger
        self.sent = 0
        self.loop = Periodic("events", self.send_due, self.POLL, at_start=True)
        self._http: aiohttp.ClientSession | None = None

    @property
    def configured(self) -> bool:
        return bool(self.urls and self.token)

    async def start(self) -> None:
        if not self.configured:
            log.info("events_not_sent", why="authority_url and authority_admin_token are both needed")
            return
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.TIMEOUT),
                                           cookie_jar=aiohttp.DummyCookieJar())
        self.loop.start()

    async def stop(self) -> None:
        await self.loop.stop()
        if self._http is not None:
            await self._http.close()

    async def send_due(self) -> int:
        done = 0
        while rows := await self.store.claim_events(int(time.time()), self.LEASE, self.BATCH):
            for seq, event_id, kind, subject, orgs, at, attempts in rows:
                body = orjson.dumps({"id": f"{self.origin}#{event_id}", "type": kind, "timestamp": format_time(at),
                                     "data": {"user": subject, "orgs": orjson.loads(orgs)}})
                problem = await self._send_all(body)
                if problem is None:
                    await self.store.event_sent(seq)
                    self.sent += 1
                else:
                    wait = self.RETRIES[attempts] if attempts < len(self.RETRIES) else self.EVERY_AFTER
                    log.warning("event_not_sent", event_type=kind, problem=problem, retry_in=wait)
                    await self.store.event_failed(seq, int(time.time()) + wait)
                done += 1
        return done

    async def _send_all(self, body: bytes) -> str | None:
        assert self._http is not None
        for url in self.urls:
            try:
                async with self._http.post(url.rstrip("/") + "/v1/events", data=body, allow_redirects=False,
                                           headers={"Authorization": f"Bearer {self.token}",
                                                    "Content-Type": "application/json"}) as resp:
                    if resp.status >= 300:
                        return f"an authority answered {resp.status}"
            except (aiohttp.ClientError, OSError, TimeoutError) as e:
                return f"an authority cannot be reached ({type(e).__name__})"
        return None
