"""Failover (SPEC §19): a primary with a synchronous hot standby, both throwaway; an authority
on a multi-host URL (`target_session_attrs=read-write`) under strips and revocations; the
primary killed with `-m immediate` and the standby promoted. The authority follows the new
primary without a restart, every acknowledged write is on it, and nothing answered 500."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import aiohttp
import nacl.utils
import pytest

from clients import tokens
from tests.support import AuthorityProcess
from tests.support.fakes import FakeDischarger
from tests.support.postgres import Cluster, Standby, bin_dir

pytestmark = pytest.mark.slow  # two clusters and a real `sable` process


@pytest.fixture
def pair(pg_cluster):  # pg_cluster: only so that a missing PostgreSQL fails or skips as elsewhere
    primary = Cluster(bin_dir()).start()
    standby = None
    try:
        standby = Standby(primary).start()
        yield primary, standby
    finally:
        for c in (standby, primary):
            if c is not None:
                c.destroy()


async def test_a_promoted_standby_takes_over_with_nothing_acknowledged_lost(tmp_path, pair):
    primary, standby = pair
    primary.psql("CREATE DATABASE sable")
    for _ in range(100):  # the new database reaches the standby before the authority starts
        if standby.psql("SELECT 1 FROM pg_database WHERE datname = 'sable'") == "1":
            break
        time.sleep(0.05)
    url = (f"postgresql://postgres@127.0.0.1:{primary.port},127.0.0.1:{standby.port}/sable"
           "?target_session_attrs=read-write")
    d = FakeDischarger()
    admin = tokens.encode(tokens.ADMIN, nacl.utils.random(32))
    a = AuthorityProcess(tmp_path, url, d, admin)
    statuses: Counter[int] = Counter()
    strips: dict[str, str] = {}
    revoked: set[str] = set()
    stop = asyncio.Event()
    try:
        async with aiohttp.ClientSession() as http:
            headers = {"Authorization": f"Bearer {admin}"}
            async with http.post(a.url + "/v1/orgs", json={"name": "acme"}, headers=headers) as r:
                assert r.status == 201
            async with http.post(a.url + "/v1/tokens", json={"org": "acme"}, headers=headers) as r:
                pt = (await r.json())["token"]

            async def load() -> None:
                while not stop.is_set():
                    async with http.post(a.url + "/v1/service-tokens",
                                         json={"tokens": [pt, d.discharge(pt)]}) as r:
                        statuses[r.status] += 1
                        if r.status != 201:
                            await asyncio.sleep(0.05)
                            continue
                        st = await r.json()
                    strips[st["id"]] = st["token"]
                    async with http.post(a.url + f"/v1/tokens/{st['id']}/revoke", json={}, headers=headers) as r:
                        statuses[r.status] += 1
                        if r.status == 200:
                            revoked.add(st["id"])

            workers = [asyncio.create_task(load()) for _ in range(4)]
            await asyncio.sleep(1.0)
            before = len(revoked)
            primary.stop("immediate")
            await asyncio.sleep(0.3)
            standby.promote()
            promoted = time.monotonic()
            while len(revoked) <= before + 10:  # writes acknowledged by the new primary
                assert time.monotonic() - promoted < 30, f"no recovery after promotion: {statuses}"
                await asyncio.sleep(0.05)
            print(f"failover: {before} revocations before, {len(revoked)} after; answers {dict(statuses)}")
            stop.set()
            await asyncio.gather(*workers)

            # Every acknowledged revocation holds on the new primary, through the authority...
            for token_id in sorted(revoked):
                async with http.post(a.url + "/v1/verify", json={"tokens": [strips[token_id]],
                                                                 "access": {"org": "acme", "action": "r"}}) as r:
                    assert r.status == 403, token_id
        # ...and in its tables, with every acknowledged strip.
        ids = ",".join(f"'{i}'" for i in strips)
        assert standby.psql(f"SELECT count(*) FROM authority.tokens WHERE id IN ({ids})", "sable") == str(len(strips))
        ids = ",".join(f"'{i}'" for i in revoked)
        assert standby.psql(f"SELECT count(*) FROM authority.tokens WHERE id IN ({ids}) AND revoked_at IS NOT NULL",
                            "sable") == str(len(revoked))
        assert set(statuses) <= {200, 201, 503}, statuses  # never a 500
        assert a.proc.poll() is None  # no restart
    finally:
        a.stop()
