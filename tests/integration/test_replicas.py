"""Several authority processes on one PostgreSQL database (SPEC §10): any replica mints,
strips, revokes and verifies; a revocation through one is enforced by the others within 1 s;
the feed is the same, gap-free and in commit order on every replica, even while revocations
commit concurrently through different replicas; a replica killed with SIGKILL loses nothing
acknowledged."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import nacl.utils
import pytest

from clients import tokens
from tests.support import AuthorityProcess
from tests.support.fakes import FakeDischarger

pytestmark = pytest.mark.slow  # real `sable` processes


@pytest.fixture
def cluster_of_two(tmp_path, pg_url):
    d = FakeDischarger()
    admin = tokens.encode(tokens.ADMIN, nacl.utils.random(32))
    a = AuthorityProcess(tmp_path, pg_url, d, admin, name="a")
    b = AuthorityProcess(tmp_path, pg_url, d, admin, name="b")
    yield a, b, d, admin
    a.stop()
    b.stop()


class Api:
    def __init__(self, http: aiohttp.ClientSession, admin: str, discharger: FakeDischarger):
        self.http, self.admin, self.d = http, {"Authorization": f"Bearer {admin}"}, discharger

    async def post(self, url: str, path: str, body: dict, admin: bool = False):
        async with self.http.post(url + path, json=body, headers=self.admin if admin else {}) as r:
            return r.status, await r.json()

    async def get(self, url: str, path: str):
        async with self.http.get(url + path) as r:
            return r.status, await r.json()

    async def service_token(self, url: str, pt: str) -> dict:
        status, body = await self.post(url, "/v1/service-tokens", {"tokens": [pt, self.d.discharge(pt)]})
        assert status == 201, body
        return body

    async def verify(self, url: str, token: str) -> int:
        status, _ = await self.post(url, "/v1/verify", {"tokens": [token], "access": {"org": "acme", "action": "r"}})
        return status


async def test_any_replica_serves_and_revocations_reach_the_other_within_a_second(cluster_of_two):
    a, b, d, admin = cluster_of_two
    async with aiohttp.ClientSession() as http:
        api = Api(http, admin, d)
        assert (await api.post(a.url, "/v1/orgs", {"name": "acme"}, admin=True))[0] == 201
        assert (await api.post(b.url, "/v1/orgs", {"name": "acme"}, admin=True))[0] == 409  # shared state
        status, minted = await api.post(b.url, "/v1/tokens", {"org": "acme"}, admin=True)
        assert status == 201
        delays = []
        for _ in range(5):
            st = await api.service_token(a.url, minted["token"])
            assert await api.verify(a.url, st["token"]) == 200
            assert await api.verify(b.url, st["token"]) == 200  # B now holds it in memory
            status, _ = await api.post(a.url, "/v1/revoke", {"tokens": [st["token"]]})
            assert status == 200
            started = time.monotonic()
            while await api.verify(b.url, st["token"]) != 403:
                assert time.monotonic() - started < 1.0, "replica B still allows a token A revoked"
                await asyncio.sleep(0.005)
            delays.append(time.monotonic() - started)
        print(f"revoke at A -> enforced at B: max {max(delays) * 1000:.1f} ms over {len(delays)}")
        # Listings and the feed are the same through either replica.
        assert (await api.get(a.url, "/v1/revocations"))[1] == (await api.get(b.url, "/v1/revocations"))[1]


async def test_the_feed_is_gap_free_under_concurrent_revocations_through_both(cluster_of_two):
    a, b, d, admin = cluster_of_two
    async with aiohttp.ClientSession() as http:
        api = Api(http, admin, d)
        await api.post(a.url, "/v1/orgs", {"name": "acme"}, admin=True)
        pt = (await api.post(a.url, "/v1/tokens", {"org": "acme"}, admin=True))[1]["token"]
        sts = [await api.service_token(a.url if i % 2 else b.url, pt) for i in range(60)]
        start = (await api.get(b.url, "/v1/revocations"))[1]["cursor"]

        seen: list[str] = []
        cursors: list[int] = []
        done = asyncio.Event()

        async def follow(url: str) -> None:
            cursor = start
            while not (done.is_set() and len(seen) >= len(sts)):
                status, page = await api.get(url, f"/v1/revocations?after={cursor}&wait=1")
                assert status == 200, page
                seen.extend(e["id"] for e in page["revoked"])
                if page["revoked"]:
                    assert page["cursor"] > cursor
                    cursors.append(page["cursor"])
                cursor = page["cursor"]

        async def revoke(url: str, batch: list[dict]) -> None:
            for st in batch:
                status, _ = await api.post(url, f"/v1/tokens/{st['id']}/revoke", {}, admin=True)
                assert status == 200

        reader = asyncio.create_task(follow(b.url))
        await asyncio.gather(revoke(a.url, sts[0::2]), revoke(b.url, sts[1::2]))
        done.set()
        await asyncio.wait_for(reader, 10)
        assert sorted(seen) == sorted(st["id"] for st in sts)  # every one, exactly once
        # A second reader from the same start through the other replica sees the same entries.
        status, page = await api.get(a.url, f"/v1/revocations?after={start}")
        assert [e["id"] for e in page["revoked"]] == seen


async def test_sigkill_of_one_replica_loses_nothing_acknowledged(cluster_of_two):
    a, b, d, admin = cluster_of_two
    async with aiohttp.ClientSession() as http:
        api = Api(http, admin, d)
        await api.post(a.url, "/v1/orgs", {"name": "acme"}, admin=True)
        pt = (await api.post(a.url, "/v1/tokens", {"org": "acme"}, admin=True))[1]["token"]
        start = (await api.get(b.url, "/v1/revocations"))[1]["cursor"]
        acked_strips: dict[str, str] = {}
        acked_revokes: set[str] = set()

        async def load(url: str) -> None:
            i = 0
            while True:
                i += 1
                try:
                    st = await api.service_token(url, pt)
                    acked_strips[st["id"]] = st["token"]
                    if i % 3 == 0:
                        status, body = await api.post(url, "/v1/revoke", {"tokens": [st["token"]]})
                        if status == 200:
                            acked_revokes.update(x["id"] for x in body["revoked"])
                except (aiohttp.ClientError, AssertionError, ConnectionError):
                    return

        tasks = [asyncio.create_task(load(a.url)) for _ in range(4)]
        await asyncio.sleep(1.0)
        a.kill()
        await asyncio.wait(tasks, timeout=10)
        assert acked_revokes, "the load never revoked anything"

        # B keeps serving, and holds everything A acknowledged.
        for token_id, token in list(acked_strips.items())[:20]:
            assert await api.verify(b.url, token) == (403 if token_id in acked_revokes else 200)
        status, page = await api.get(b.url, f"/v1/revocations?after={start}")
        assert acked_revokes <= {e["id"] for e in page["revoked"]}
        st = await api.service_token(b.url, pt)
        assert await api.verify(b.url, st["token"]) == 200


def test_two_workers_on_postgres_enforce_each_others_revocations(tmp_path, pg_url):
    import http.client
    import json

    d = FakeDischarger()
    admin = tokens.encode(tokens.ADMIN, nacl.utils.random(32))
    server = AuthorityProcess(tmp_path, pg_url, d, admin, workers=2)
    try:
        def request(conn, method, path, body=None, auth=False):
            headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {admin}"} if auth else {})}
            conn.request(method, path, None if body is None else json.dumps(body), headers)
            r = conn.getresponse()
            return r.status, json.loads(r.read())

        by_pid: dict = {}
        deadline = time.monotonic() + 20
        while len(by_pid) < 2:
            assert time.monotonic() < deadline, "never reached both workers"
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
            by_pid.setdefault(request(conn, "GET", "/v1/info")[1]["worker"], conn)
        w1, w2 = by_pid.values()
        request(w1, "POST", "/v1/orgs", {"name": "acme"}, auth=True)
        pt = request(w1, "POST", "/v1/tokens", {"org": "acme"}, auth=True)[1]["token"]
        st = request(w2, "POST", "/v1/service-tokens", {"tokens": [pt, d.discharge(pt)]})[1]["token"]
        check = {"tokens": [st], "access": {"org": "acme", "action": "r"}}
        assert request(w1, "POST", "/v1/verify", check)[0] == 200
        assert request(w2, "POST", "/v1/verify", check)[0] == 200
        assert request(w1, "POST", "/v1/revoke", {"tokens": [st]})[0] == 200
        started = time.monotonic()
        while request(w2, "POST", "/v1/verify", check)[0] != 403:
            assert time.monotonic() - started < 1.0
            time.sleep(0.01)
    finally:
        server.stop()
