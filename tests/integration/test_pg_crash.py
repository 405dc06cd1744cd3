"""PostgreSQL stopped with `-m immediate` in the middle of concurrent strips and revokes, then
started again (SPEC §10, "When the database is unreachable", and §4 durability): every
acknowledged write is there, unacknowledged ones are either fully there or absent, the
authority answered 503 with Retry-After (never a 500, never a dropped connection or a hang)
meanwhile, and it recovered by itself, without a restart."""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp
import nacl.utils
import pytest

from clients import tokens
from tests.support import AuthorityProcess
from tests.support.fakes import FakeDischarger

pytestmark = pytest.mark.slow  # a real `sable` process, and PostgreSQL stopped under it

WORKERS = 8
LOAD_BEFORE = 1.0  # seconds of load before the stop
OUTAGE = 2.0  # seconds of load while PostgreSQL is down
LOAD_AFTER = 0.5  # seconds of load once /readyz is 200 again
RECOVERY = 15.0  # /readyz must be 200 again within this many seconds of the restart
ANSWER_WITHIN = 5.0  # SPEC §10: a request that needs the database answers 503 within 5 s


@dataclass
class Answer:
    kind: str  # "strip" or "revoke"
    started: float
    ended: float
    status: int | None  # None: no HTTP answer at all (connection error or client timeout)
    retry_after: str | None = None
    error: str | None = None
    failure: str | None = None  # the client-side exception, when there was no answer


class Load:
    """WORKERS tasks stripping the permission token and revoking (by value) service tokens
    they were given, recording every answer and every acknowledged write."""

    def __init__(self, http: aiohttp.ClientSession, url: str, pt: str, dt: str):
        self.http, self.url, self.pt, self.dt = http, url, pt, dt
        self.answers: list[Answer] = []
        self.strips: dict[str, str] = {}  # acknowledged (201): id -> token
        self.revoked: set[str] = set()  # acknowledged (200): ids the answers listed
        self.revoke_acked: set[str] = set()  # ids whose revoke request itself was answered 200
        self.stop = asyncio.Event()

    async def _call(self, kind: str, path: str, body: dict) -> tuple[Answer, dict | None]:
        started = time.monotonic()
        try:
            async with self.http.post(self.url + path, json=body) as r:
                payload = await r.json(content_type=None)
                answer = Answer(kind, started, time.monotonic(), r.status, r.headers.get("Retry-After"),
                                payload.get("error") if isinstance(payload, dict) else None)
        except (TimeoutError, aiohttp.ClientError, ConnectionError, ValueError) as e:
            answer, payload = Answer(kind, started, time.monotonic(), None, failure=repr(e)), None
        self.answers.append(answer)
        return answer, payload

    async def worker(self, n: int) -> None:
        rng = random.Random(n)
        while not self.stop.is_set():
            candidates = [i for i in self.strips if i not in self.revoke_acked]
            if candidates and rng.random() < 0.3:
                victim = rng.choice(candidates)
                answer, body = await self._call("revoke", "/v1/revoke", {"tokens": [self.strips[victim]]})
                if answer.status == 200 and body is not None:
                    self.revoke_acked.add(victim)
                    self.revoked.update(x["id"] for x in body["revoked"])
            else:
                answer, body = await self._call("strip", "/v1/service-tokens", {"tokens": [self.pt, self.dt]})
                if answer.status == 201 and body is not None:
                    self.strips[body["id"]] = body["token"]
            if answer.status is None or answer.status == 503:
                await asyncio.sleep(0.02)  # a client backing off a little, as Retry-After asks


async def read_feed(http: aiohttp.ClientSession, url: str, after: int) -> list[str]:
    """Every feed entry's id after `after`, paging until the end."""
    ids: list[str] = []
    cursor = after
    while True:
        async with http.get(f"{url}/v1/revocations?after={cursor}") as r:
            assert r.status == 200, await r.text()
            page = await r.json()
        if not page["revoked"]:
            return ids
        assert page["cursor"] > cursor
        ids.extend(e["id"] for e in page["revoked"])
        cursor = page["cursor"]


async def test_pg_immediate_stop_under_strips_and_revokes(tmp_path, pg_url, pg_cluster):
    d = FakeDischarger()
    admin = tokens.encode(tokens.ADMIN, nacl.utils.random(32))
    auth = AuthorityProcess(tmp_path, pg_url, d, admin, name="pgcrash")
    pid = auth.proc.pid
    admin_h = {"Authorization": f"Bearer {admin}"}
    pg_running = True
    try:
        timeout = aiohttp.ClientTimeout(total=10)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            async with http.post(auth.url + "/v1/orgs", json={"name": "acme"}, headers=admin_h) as r:
                assert r.status == 201, await r.text()
            async with http.post(auth.url + "/v1/tokens", json={"org": "acme"}, headers=admin_h) as r:
                assert r.status == 201, await r.text()
                minted = await r.json()
            pt = minted["token"]
            async with http.get(auth.url + "/v1/revocations") as r:
                start_cursor = (await r.json())["cursor"]

            load = Load(http, auth.url, pt, d.discharge(pt, ttl=600))
            tasks = [asyncio.create_task(load.worker(n)) for n in range(WORKERS)]
            try:
                await asyncio.sleep(LOAD_BEFORE)
                acked_before = len(load.strips)
                await asyncio.to_thread(pg_cluster.stop, "immediate")
                pg_running = False
                down_at = time.monotonic()
                await asyncio.sleep(OUTAGE)
                up_at = time.monotonic()
                await asyncio.to_thread(pg_cluster.pg_ctl_start)
                pg_running = True
                restarted_at = time.monotonic()

                # Back by itself: no restart of the authority.
                while True:
                    async with http.get(auth.url + "/readyz") as r:
                        if r.status == 200:
                            break
                        assert r.status == 503, await r.text()
                    assert time.monotonic() - restarted_at < RECOVERY, "the authority did not become ready again"
                    await asyncio.sleep(0.1)
                ready_at = time.monotonic()
                await asyncio.sleep(LOAD_AFTER)
            finally:
                load.stop.set()
                await asyncio.wait(tasks, timeout=15)
            assert all(t.done() for t in tasks), "a load worker hung"
            for t in tasks:
                t.result()
            assert auth.proc.poll() is None and auth.proc.pid == pid, "the authority died or was restarted"

            answers = load.answers
            lost = [a for a in answers if a.status is None]
            assert not lost, f"{len(lost)} requests got no HTTP answer, e.g. {lost[0]}"
            bad = [a for a in answers if a.status not in (200, 201, 503)]
            assert not bad, f"unexpected answers: {bad[:5]}"
            unavailable = [a for a in answers if a.status == 503]
            assert all(a.error == "unavailable" and a.retry_after for a in unavailable), \
                [a for a in unavailable if not (a.error == "unavailable" and a.retry_after)][:5]
            slow = [a for a in answers if a.ended - a.started > ANSWER_WITHIN]
            assert not slow, f"{len(slow)} answers took over {ANSWER_WITHIN} s, e.g. {slow[0]}"
            # Requests made entirely while PostgreSQL was down all failed, and as 503s.
            during = [a for a in answers if a.started >= down_at and a.ended <= up_at]
            assert during, "no request was made during the outage"
            assert all(a.status == 503 for a in during), [a for a in during if a.status != 503][:5]
            assert {a.kind for a in during} == {"strip", "revoke"}
            # And it serves writes again after the restart.
            after = [a for a in answers if a.started >= ready_at]
            assert any(a.kind == "strip" and a.status == 201 for a in after), "no strip succeeded after recovery"
            assert acked_before > 0 and load.revoked, "the load acknowledged too little to test anything"

            # Every acknowledged strip is stored; every acknowledged revocation is in force.
            async with http.get(auth.url + "/v1/tokens?org=acme", headers=admin_h) as r:
                assert r.status == 200
                listed = {t["id"]: t for t in (await r.json())["tokens"]}
            missing = set(load.strips) - set(listed)
            assert not missing, f"{len(missing)} acknowledged strips lost, e.g. {sorted(missing)[:3]}"
            assert all(listed[i]["parent"] == minted["id"] and listed[i]["user"] == "alice" for i in load.strips)
            alive = {i for i in load.revoked if listed[i]["revoked_at"] is None}
            assert not alive, f"{len(alive)} acknowledged revocations lost, e.g. {sorted(alive)[:3]}"

            # The feed holds each revocation exactly once, acknowledged or not, and nothing else:
            # an unacknowledged revoke either committed fully (row revoked and in the feed) or not at all.
            feed = await read_feed(http, auth.url, start_cursor)
            assert len(feed) == len(set(feed)), "a revocation appears twice in the feed"
            assert load.revoked <= set(feed), f"acknowledged revocations missing from the feed: {load.revoked - set(feed)}"
            revoked_rows = {i for i, t in listed.items() if t["revoked_at"] is not None}
            assert set(feed) == revoked_rows, (
                f"feed and token rows disagree: only in feed {set(feed) - revoked_rows}, "
                f"only revoked in rows {revoked_rows - set(feed)}")

            # Unacknowledged strips that committed anyway are whole: a token row with its audit row.
            db = urlsplit(pg_url).path.lstrip("/")
            orphans = pg_cluster.psql(
                "SELECT count(*) FROM authority.tokens t WHERE t.kind = 'service' AND NOT EXISTS"
                " (SELECT 1 FROM authority.audit a WHERE a.event = 'strip' AND a.token_id = t.id)", db)
            assert orphans == "0", f"{orphans} stored strips without their audit row"
            ghosts = pg_cluster.psql(
                "SELECT count(*) FROM authority.audit a WHERE a.event = 'strip' AND NOT EXISTS"
                " (SELECT 1 FROM authority.tokens t WHERE t.id = a.token_id)", db)
            assert ghosts == "0", f"{ghosts} strip audit rows without their token"

            # What the authority enforces matches what is stored.
            sem = asyncio.Semaphore(16)

            async def verify(token_id: str) -> tuple[str, int, str]:
                body = {"tokens": [load.strips[token_id]], "access": {"org": "acme", "action": "r"}}
                async with sem, http.post(auth.url + "/v1/verify", json=body) as r:
                    return token_id, r.status, (await r.json()).get("message", "")

            results = await asyncio.gather(*(verify(i) for i in load.strips))
            for token_id, status, message in results:
                if token_id in revoked_rows:
                    assert status == 403 and "revoked" in message, (token_id, status, message)
                else:
                    assert status == 200, (token_id, status, message)
            print(f"{len(answers)} requests: {len(load.strips)} acknowledged strips ({acked_before} before the stop),"
                  f" {len(load.revoked)} acknowledged revocations, {len(unavailable)} 503s,"
                  f" {len(set(listed) - set(load.strips) - {minted['id']})} unacknowledged strips that committed,"
                  f" {len(revoked_rows - load.revoked)} unacknowledged revocations that committed;"
                  f" ready {ready_at - restarted_at:.2f} s after the restart")
    finally:
        if not pg_running:
            pg_cluster.pg_ctl_start()
        auth.stop()
