"""A caching verifier for services that check Sable tokens on every request (SPEC §7).

    async with Verifier("http://127.0.0.1:8700") as v:
        decision = await v.check(tokens, {"org": "acme", "action": "r", "host": "worker-7"})

- Allowed decisions are cached for `ttl` seconds (LRU, at most `max_entries`); their time
  caveats are re-checked on every hit. Denials are never cached.
- A background task long-polls the authority's revocation feed and drops every entry of a
  revoked token id. A decision for an id revoked moments ago is not cached at all, since
  another authority worker may not have seen the revocation yet.
- If the feed has been unreachable for longer than `stale_after`, the cache is emptied and
  every check goes to the authority until the feed recovers.
- If the authority cannot be reached on a miss, the decision is a denial: never an allow.
- A DPoP proof (`dpop=`, with the request's `htm` and `htu`) is checked here on every call,
  hits included, against the decision's `cnf-jkt` caveats, and forwarded on a miss; a proof
  problem is a denial with `error="invalid_dpop_proof"` (SPEC §14).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict
from dataclasses import dataclass, field

import aiohttp

from clients import caveats
from clients import tokens as token_format
from clients.errors import TokenFormatError
from clients.proof_check import Proof, ProofError, ReplayCache, check_proof
from clients.sdk import AuthorityClient, SableAPIError

RECENT_REVOCATION = 5.0  # seconds during which a revoked id's decisions are not cached


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    reason: str | None = None
    id: str | None = None
    kind: str | None = None
    org: str | None = None
    user: str | None = None
    caveats: tuple[str, ...] = ()
    error: str | None = None  # the API error code of a denial: denied, malformed_token, unavailable...
    cached: bool = False


@dataclass(slots=True)
class Stats:
    hits: int = 0
    misses: int = 0
    evictions: int = 0
    fail_closed: int = 0
    revocations: int = 0
    feed_errors: int = 0
    last_feed_ok: float = field(default_factory=time.monotonic)

    @property
    def feed_lag(self) -> float:
        """Seconds since the feed last answered."""
        return time.monotonic() - self.last_feed_ok


@dataclass(slots=True)
class _Entry:
    decision: Decision
    until: float  # monotonic
    timed: tuple[caveats.Caveat, ...]  # time caveats, re-checked on every hit
    jkts: frozenset[str]  # the keys its cnf-jkt caveats name: a proof with each is needed on every hit


class Verifier:
    def __init__(self, authority_url: str, ttl: float = 60.0, stale_after: float = 30.0,
                 max_entries: int = 100_000, timeout: float = 5.0, session: aiohttp.ClientSession | None = None):
        self.ttl = ttl
        self.stale_after = stale_after
        self.max_entries = max_entries
        self.stats = Stats()
        self._client = AuthorityClient(authority_url, timeout=timeout, retries=0, session=session)
        self._entries: OrderedDict[tuple, _Entry] = OrderedDict()
        self._by_id: dict[str, set[tuple]] = {}
        self._recent: dict[str, float] = {}  # id -> monotonic time of its revocation
        self.replay = ReplayCache()  # DPoP proofs of allowed checks (SPEC §14: per Verifier)
        self._generation = 0
        self._task: asyncio.Task | None = None
        self.cursor: int | None = None

    async def __aenter__(self) -> Verifier:
        await self.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._follow_feed())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._client.close()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, token_id: str) -> bool:
        """Whether any decision for this token id is cached."""
        return token_id in self._by_id

    # --- checks ----------------------------------------------------------------------------

    async def check(self, tokens: list[str], access: dict, *, dpop: str | None = None, htm: str | None = None,
                    htu: str | None = None) -> Decision:
        proof: Proof | None = None
        if dpop is not None:
            if htm is None or htu is None:
                return Decision(False, "a DPoP proof is checked against the request's htm and htu: give both",
                                error="bad_request")
            now = time.time()
            try:
                proof = check_proof(dpop, htm=htm, htu=htu, token=_main_token(tokens), now=now)
                self.replay.claim(proof, now)
            except ProofError as e:
                return Decision(False, e.message, error="invalid_dpop_proof")
        decision = await self._check(tokens, access, proof, dpop, htm, htu)
        if proof is not None and not decision.allowed:
            self.replay.release(proof)  # only allowed requests use a proof up
        return decision

    async def _check(self, tokens: list[str], access: dict, proof: Proof | None, dpop: str | None,
                     htm: str | None, htu: str | None) -> Decision:
        key = (tuple(tokens), access.get("org"), access.get("action"), access.get("app"), access.get("host"),
               access.get("instance"), access.get("user"))
        entry = self._entries.get(key)
        if entry is not None:
            mono = time.monotonic()
            if mono - self.stats.last_feed_ok > self.stale_after:
                self.clear()  # the feed is down: we may have missed revocations
            elif mono < entry.until:
                now = time.time()
                for cav in entry.timed:
                    reason = cav.prohibits(None, now)  # type: ignore[arg-type]  # time caveats ignore access
                    if reason:
                        self._drop(key)
                        return Decision(False, reason, entry.decision.id, error="denied")
                if entry.jkts and (missing := _unproven(entry.jkts, proof)):
                    return Decision(False, missing, entry.decision.id, error="invalid_dpop_proof")
                self._entries.move_to_end(key)
                self.stats.hits += 1
                return entry.decision
            else:
                self._drop(key)
        self.stats.misses += 1
        try:  # malformed tokens are refused here, not sent to the authority
            parsed = [token_format.parse(text) for text in tokens]
        except TokenFormatError as e:
            return Decision(False, f"malformed token: {e}", error="malformed_token")
        # A bound token without the right proof is refused here, so the answer says it is the
        # proof (401 from the middleware), not the token, that is wrong.
        if missing := _unproven(_bound_keys(parsed), proof):
            return Decision(False, missing, error="invalid_dpop_proof")
        forwarded = None if proof is None else {"dpop": dpop, "htm": htm, "htu": htu}
        return await self._ask(key, tokens, access, forwarded)

    async def _ask(self, key: tuple, tokens: list[str], access: dict, proof: dict | None = None) -> Decision:
        # Cache only if no revocation can slip between the authority's answer and the insert:
        # the feed must already have a cursor, and nothing may be revoked meanwhile.
        generation = self._generation if self.cursor is not None else None
        try:
            out = await self._client.verify(tokens, access, proof)
        except SableAPIError as e:
            if e.status in (400, 401, 403, 404, 413, 429) and e.code != "wrong_url":  # a wrong URL fails closed
                return Decision(False, e.message, error=e.code)
            self.stats.fail_closed += 1
            return Decision(False, f"authority unavailable, failing closed: {e.message}", error="unavailable")
        if not out.get("allowed"):
            return Decision(False, out.get("message"), error=out.get("error", "denied"))
        decision = Decision(True, None, out["id"], out["kind"], out["org"], out.get("user"), tuple(out["caveats"]))
        fresh = time.monotonic() - self.stats.last_feed_ok <= self.stale_after
        if generation == self._generation and fresh and decision.id not in self._recent:
            parsed = [caveats.parse(t.encode()) for t in decision.caveats]
            timed = tuple(c for c in parsed if c.time_bound)
            jkts = frozenset(c.jkt for c in parsed if isinstance(c, caveats.CnfJkt))
            cached = Decision(True, None, decision.id, decision.kind, decision.org, decision.user, decision.caveats,
                              cached=True)
            self._store(key, _Entry(cached, time.monotonic() + self.ttl, timed, jkts))
        return decision

    def _store(self, key: tuple, entry: _Entry) -> None:
        self._drop(key)
        self._entries[key] = entry
        assert entry.decision.id is not None  # only allowed decisions are stored
        self._by_id.setdefault(entry.decision.id, set()).add(key)
        while len(self._entries) > self.max_entries:
            old_key, old = self._entries.popitem(last=False)
            self._unindex(old_key, old)
            self.stats.evictions += 1

    def _drop(self, key: tuple) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._unindex(key, entry)

    def _unindex(self, key: tuple, entry: _Entry) -> None:
        token_id = entry.decision.id or ""
        keys = self._by_id.get(token_id)
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self._by_id[token_id]

    def revoke(self, token_ids: list[str]) -> None:
        """Drop every cached decision for these token ids."""
        now = time.monotonic()
        self._generation += 1
        for token_id in token_ids:
            self._recent[token_id] = now
            for key in self._by_id.pop(token_id, ()):
                self._entries.pop(key, None)
        self.stats.revocations += len(token_ids)
        for token_id, at in list(self._recent.items()):
            if now - at > RECENT_REVOCATION:
                del self._recent[token_id]

    def clear(self) -> None:
        self._generation += 1
        self._entries.clear()
        self._by_id.clear()

    # --- the revocation feed ---------------------------------------------------------------

    async def _follow_feed(self) -> None:
        wait = max(0.0, min(20.0, self.stale_after / 2))  # a healthy long-poll answers well within stale_after
        backoff = 0.1
        while True:
            try:
                if self.cursor is None:
                    out = await self._client.revocations()
                else:
                    out = await self._client.revocations(self.cursor, wait)
                    if out["revoked"]:
                        self.revoke(sorted({r["id"] for r in out["revoked"]}))
                self.cursor = out["cursor"]
                self.stats.last_feed_ok = time.monotonic()
                backoff = 0.1
            except SableAPIError as e:
                self.stats.feed_errors += 1
                if e.status == 409:  # past the head: the authority's database was restored
                    self.clear()
                    self.cursor = None  # restart at the head
                    continue
                if self.stats.feed_lag > self.stale_after:
                    self.clear()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)


def _main_token(tokens: list[str]) -> str:
    """The one permission or service token of a presentation, as `ath` hashes it."""
    main = [t.strip() for t in tokens if not t.strip().startswith(token_format.DISCHARGE)]
    if len(main) != 1:
        raise ProofError("a DPoP proof goes with exactly one permission or service token")
    return main[0]


def _bound_keys(parsed: list[token_format.Token]) -> frozenset[str]:
    """The keys the presentation's cnf-jkt caveats name (read offline; the authority judges)."""
    jkts = set()
    for tok in parsed:
        for c in tok.caveats:
            if c.vid is None and c.cid.startswith(b"cnf-jkt "):
                cav = caveats.parse(c.cid)
                jkts.add(cav.jkt if isinstance(cav, caveats.CnfJkt) else "")
    return frozenset(jkts)


def _unproven(jkts: frozenset[str], proof: Proof | None) -> str | None:
    """Why a request bound to these keys is not proven by `proof`; None if it is."""
    if not jkts:
        return None
    if proof is None:
        return "this token is bound to a key (cnf-jkt): send it with a DPoP proof made with that key"
    if any(jkt != proof.jkt for jkt in jkts):
        return "the DPoP proof is made with another key than the token's cnf-jkt names"
    return None
