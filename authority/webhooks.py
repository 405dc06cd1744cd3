"""Webhooks (SPEC §18) in the Standard Webhooks format: per-org endpoints, and delivery from
the outbox that the audit trail's trigger fills in the transaction of each change.

- An endpoint's secret is `whsec_` + base64 of 32 random bytes, shown once and kept sealed
  with the master key. Each delivery carries `webhook-id` (the event's, the same on every
  retry), `webhook-timestamp` (this attempt) and `webhook-signature` (`v1,` + base64
  HMAC-SHA256 of `id.timestamp.body`).
- Each outbox row is held by one process at a time (a lease), so one event goes out once
  across replicas and workers; receivers may still see a repeat after a crash and
  deduplicate on `webhook-id`.
- A failed delivery is tried again after 5 s, 30 s, 2 min, 10 min and 1 h, then every 6 h;
  three days after its first failure the endpoint is disabled (audited).
- The target is checked at every delivery (`server.egress`): no private addresses unless
  allowed, no redirects, 15 s at most.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Sequence

import aiohttp
import orjson
import structlog

from authority.store import AuthorityStore, DeliveryRow, WebhookRow
from clients.caveats import format_time
from clients.errors import BadRequest, NotFound
from server.audit import Caller
from server.egress import Refused, check_target, check_url, guarded_session
from server.masterkey import MasterKey
from server.periodic import Periodic

log = structlog.get_logger("sable.webhooks")
EVENTS = ("token.created", "token.revoked", "token.leaked", "token.expiring", "user.disabled",
          "user.removed_from_org", "principal.disabled")
SECRET_PREFIX = "whsec_"
MAX_PER_ORG = 20


class Webhooks:
    RETRIES = (5, 30, 120, 600, 3600)  # seconds after the 1st..5th failure; then EVERY_AFTER
    EVERY_AFTER = 6 * 3600
    GIVE_UP_AFTER = 3 * 86400  # seconds after the first failure: the endpoint is disabled
    TIMEOUT = 15.0
    POLL = 0.5  # seconds between looks at the outbox
    LEASE = 60  # seconds a claimed delivery is held (longer than TIMEOUT)
    BATCH = 32
    PARALLEL = 16
    DEPTH_EVERY = 5.0

    def __init__(self, store: AuthorityStore, master: MasterKey, allow_private: bool):
        self.store = store
        self.master = master
        self.allow_private = allow_private
        self.results = {"delivered": 0, "failed": 0, "refused": 0}  # counted for /metrics
        self.depth: int | None = None  # the outbox's rows, counted every DEPTH_EVERY s for /metrics
        self._depth_at = 0.0
        self.loop = Periodic("webhooks", self.deliver_due, self.POLL, at_start=True)
        self._http: aiohttp.ClientSession | None = None

    # --- endpoints ---------------------------------------------------------------------

    async def create(self, org: str, url: str, events: Sequence[str], caller: Caller) -> tuple[WebhookRow, str]:
        """A new endpoint and its secret (shown once)."""
        check_url(url, self.allow_private)
        unknown = sorted(set(events) - set(EVENTS))
        if not events or unknown:
            raise BadRequest(f"events must be some of {', '.join(EVENTS)}" + (f" (not {', '.join(unknown)})"
                                                                               if unknown else ""))
        if not await self.store.org_exists(org):
            raise NotFound(f"no org {org}")
        if len(await self.store.webhooks(org)) >= MAX_PER_ORG:
            raise BadRequest(f"an org has at most {MAX_PER_ORG} webhooks; remove one first")
        key = secrets.token_bytes(32)
        row = WebhookRow(f"wh_{secrets.token_hex(8)}", org, url, tuple(sorted(set(events))), self.master.seal(key),
                         "active", int(time.time()))
        await self.store.create_webhook(row, caller.record("webhook_create", org=org,
                                                           detail={"id": row.id, "events": list(row.events)}))
        return row, SECRET_PREFIX + base64.b64encode(key).decode()

    async def list(self, org: str | None = None) -> list[WebhookRow]:
        return await self.store.webhooks(org)

    async def get(self, webhook_id: str) -> WebhookRow:
        row = await self.store.webhook(webhook_id)
        if row is None:
            raise NotFound("no webhook with that id")
        return row

    async def remove(self, webhook_id: str, caller: Caller) -> None:
        row = await self.get(webhook_id)
        await self.store.remove_webhook(row.id, caller.record("webhook_remove", org=row.org, detail={"id": row.id}))

    async def test(self, webhook_id: str, caller: Caller) -> bool:
        """Send one `webhook.test` event now; whether it was delivered (why not: the audit)."""
        row = await self.get(webhook_id)
        event_id = f"msg_test_{secrets.token_hex(8)}"
        body = orjson.dumps({"type": "webhook.test", "timestamp": format_time(int(time.time())),
                             "data": {"webhook_id": row.id, "org": row.org}})
        outcome = await self._send(row, event_id, body)
        await self.store.write_audit([caller.record("webhook_test", org=row.org, outcome="ok" if outcome is None
                                                    else "failed", detail={"id": row.id, "problem": outcome})])
        return outcome is None

    # --- delivery ----------------------------------------------------------------------

    async def start(self) -> None:
        self._http = guarded_session(self.allow_private, timeout=aiohttp.ClientTimeout(total=self.TIMEOUT))
        self.loop.start()

    async def stop(self) -> None:
        await self.loop.stop()
        if self._http is not None:
            await self._http.close()

    async def deliver_due(self) -> int:
        """Deliver what is due, a batch at a time, until nothing is; how many were attempted."""
        done = 0
        gate = asyncio.Semaphore(self.PARALLEL)

        async def one(row: DeliveryRow) -> None:
            async with gate:
                await self._deliver(row)
        while rows := await self.store.claim_deliveries(int(time.time()), self.LEASE, self.BATCH):
            for failed in await asyncio.gather(*(one(r) for r in rows), return_exceptions=True):
                if isinstance(failed, BaseException):  # a store error: the lease runs out and it is tried again
                    log.warning("webhook_delivery_error", error=type(failed).__name__)
            done += len(rows)
        if time.monotonic() - self._depth_at >= self.DEPTH_EVERY:
            self.depth, self._depth_at = await self.store.outbox_depth(), time.monotonic()
        return done

    async def _deliver(self, row: DeliveryRow) -> None:
        if row.type == "token.expiring" and (row.token is None or row.token.revoked_at is not None):
            await self.store.delivered(row.seq)  # no notice for a revoked token
            return
        problem = await self._send(row.endpoint, event_id(row), body(row))
        now = int(time.time())
        if problem is None:
            await self.store.delivered(row.seq)
            return
        first = row.first_at or now
        attempts = row.attempts + 1
        wait = self.RETRIES[attempts - 1] if attempts <= len(self.RETRIES) else self.EVERY_AFTER
        # Tried until three days after the first failure (the last try at that moment), then given up.
        due: int | None = min(now + wait, first + self.GIVE_UP_AFTER)
        if now - first >= self.GIVE_UP_AFTER:
            due = None
        log.warning("webhook_failed", webhook=row.endpoint.id, event_type=row.type, attempts=attempts, problem=problem,
                    gave_up=due is None)
        await self.store.delivery_failed(row.seq, now, due, Caller().record(
            "webhook_disabled", org=row.endpoint.org,
            detail={"id": row.endpoint.id, "problem": problem, "after_attempts": attempts}))

    async def _send(self, endpoint: WebhookRow, message_id: str, payload: bytes) -> str | None:
        """POST one signed message; None when the receiver took it (2xx), else what went wrong
        (never the URL, which may hold a path the org considers secret)."""
        key = self.master.unseal(endpoint.sealed_secret)
        if key is None:
            self.results["failed"] += 1
            return "its secret does not open with this master key"
        timestamp = str(int(time.time()))
        signature = base64.b64encode(hmac.new(key, f"{message_id}.{timestamp}.".encode() + payload,
                                              hashlib.sha256).digest()).decode()
        headers = {"webhook-id": message_id, "webhook-timestamp": timestamp, "webhook-signature": f"v1,{signature}",
                   "Content-Type": "application/json", "User-Agent": "Sable-Webhooks"}
        http = self._http or guarded_session(self.allow_private, timeout=aiohttp.ClientTimeout(total=self.TIMEOUT))
        try:
            check_target(endpoint.url, self.allow_private)
            async with http.post(endpoint.url, data=payload, headers=headers, allow_redirects=False) as resp:
                await resp.content.read(64 * 1024)
                if 200 <= resp.status < 300:
                    self.results["delivered"] += 1
                    return None
                self.results["failed"] += 1
                return f"the receiver answered {resp.status}"
        except Refused as e:
            self.results["refused"] += 1
            return str(e)
        except TimeoutError:
            self.results["failed"] += 1
            return f"no answer within {self.TIMEOUT:g} s"
        except (aiohttp.ClientError, OSError) as e:
            self.results["failed"] += 1
            return f"cannot connect ({type(e).__name__})"
        except Exception as e:  # anything else a strange target causes is its failure, not ours
            self.results["failed"] += 1
            return f"cannot deliver ({type(e).__name__})"
        finally:
            if http is not self._http:
                await http.close()


def event_id(row: DeliveryRow) -> str:
    """The event's id: the audit row it came from (a mint has two notices: their outbox
    rows tell them apart), so the same on every retry and replica."""
    if row.type == "token.expiring":
        return f"msg_{row.audit_seq:012d}_{row.seq}"
    return f"msg_{row.audit_seq:012d}"


def body(row: DeliveryRow) -> bytes:
    """The event as sent: no token string, ever (only ids and what the token row says)."""
    detail = row.detail or {}
    if row.type.startswith(("user.", "principal.")):  # from the discharger (authority.events)
        # Only the receiving org: a user's other orgs are none of its business.
        return orjson.dumps({"type": row.type, "timestamp": format_time(int(row.at)),
                             "data": {"user": detail.get("subject"), "orgs": [row.endpoint.org]}})
    token = row.token
    data: dict[str, object] = {
        "token_id": row.token_id,
        "org": row.org or (token.org if token else None),
        "kind": token.kind if token else detail.get("kind"),
        "name": token.name if token else None,
        "created_by": token.created_by if token else None,
        "expires_at": format_time(token.expires_at) if token and token.expires_at else None,
    }
    if row.type in ("token.revoked", "token.leaked"):
        data["revoked"] = list(detail.get("revoked", []))
        if detail.get("scope") == "attenuation":  # one attenuation of token_id, not the token itself
            data["scope"] = "attenuation"
    if row.type == "token.leaked":
        data["url"], data["source"] = detail.get("url"), detail.get("source")
    return orjson.dumps({"type": row.type, "timestamp": format_time(int(row.at)), "data": data})
