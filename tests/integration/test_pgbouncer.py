"""Both services behind PgBouncer in `pool_mode = transaction` (SPEC §19), as real processes:
a discharger and two authority replicas with `pooler = true`, the whole flow through them,
concurrent strips, a revocation reaching the other replica by polling (no LISTEN through a
pooler), an outage of the pooler and the recovery, and every table in its service's schema."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time

import aiohttp
import nacl.utils
import pytest

from clients import offline, tokens
from clients.sdk import AuthorityClient, DischargerClient
from clients.tickets import b64e
from tests.support import SABLE, free_port, wait_healthy

pytestmark = pytest.mark.slow  # real `sable` processes

MASTER = "55" * 32


class Proc:
    def __init__(self, tmp_path, service: str, args: list[str], env: dict):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tmp_path / f"{service}-{self.port}.log"
        self.proc = subprocess.Popen([SABLE, service, "serve", "--port", str(self.port), *args],
                                     env={**os.environ, **env}, stdout=open(self.log, "w"), stderr=subprocess.STDOUT)
        wait_healthy(self.url, self.proc, self.log)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=15)


@pytest.fixture
def stack(tmp_path, pg_cluster, pgbouncer):
    name = pg_cluster.new_database().rsplit("/", 1)[1]
    url = pgbouncer.dsn(name)
    admin = tokens.encode(tokens.ADMIN, nacl.utils.random(32))
    env = {"SABLE_ADMIN_TOKEN": admin, "SABLE_MASTER_KEY": MASTER}
    d = Proc(tmp_path, "discharger", ["--db", url, "--pooler"], env)
    # The env spelling of the setting, as a container would set it.
    a_env = {**env, "SABLE_AUTHORITY_POOLER": "true"}
    # B hears NOTIFY on a direct connection (listen_database); A polls the feed.
    direct = {"SABLE_AUTHORITY_LISTEN_DATABASE": pg_cluster.dsn(name)}
    authorities = [Proc(tmp_path, "authority", ["--db", url, "--discharger", d.url, "--public-url",
                                                 "http://authority.test"], {**a_env, **extra}) for extra in ({}, direct)]
    yield {"a": authorities, "d": d, "admin": admin, "name": name}
    for p in (*authorities, d):
        p.stop()


async def test_the_whole_flow_through_pgbouncer_with_two_replicas(stack, pg_cluster, pgbouncer):
    (a, b), d, admin = stack["a"], stack["d"], stack["admin"]
    async with AuthorityClient(a.url, admin_token=admin) as ca, AuthorityClient(b.url, admin_token=admin) as cb, \
            DischargerClient(d.url, admin_token=admin) as cd:
        await ca.create_org("acme")
        await cd.create_user("alice", "correct horse", ["acme"])
        session = (await cd.login("alice", "correct horse"))["session"]
        pt = (await cb.mint("acme", ["apps orders"]))["token"]
        ticket = [c for c in tokens.parse(pt).caveats if c.third_party][0].cid
        dt = offline.bind(pt, (await cd.discharge(session, b64e(ticket)))["discharge"])

        # 40 strips at once through both replicas: every one answered 201 (the statement cache
        # a pooler breaks would answer some with "prepared statement does not exist").
        sts = await asyncio.gather(*[(ca if i % 2 else cb).strip(pt, dt, name=f"s{i}") for i in range(40)])
        assert len({st["id"] for st in sts}) == 40
        access = {"org": "acme", "action": "r", "app": "orders"}
        assert (await cb.verify([sts[0]["token"]], access))["allowed"] is True

        # A revocation through A is enforced by B within 1 s: B hears no NOTIFY through the
        # pooler and polls the feed.
        await ca.revoke(sts[0]["token"])
        started = time.monotonic()
        while (await cb.verify([sts[0]["token"]], access))["allowed"]:
            assert time.monotonic() - started < 1.0, "replica B still allows a token A revoked"
            await asyncio.sleep(0.01)
        assert await ca.revocations() == await cb.revocations()
    assert "listen_off" in a.log.read_text() and "listen_off" not in b.log.read_text()

    # Every table is in its service's schema; nothing landed in public.
    tables = pg_cluster.psql("SELECT schemaname || '.' || tablename FROM pg_tables WHERE schemaname NOT IN"
                             " ('pg_catalog', 'information_schema') ORDER BY 1", database=stack["name"]).split()
    assert "authority.tokens" in tables and "discharger.users" in tables
    assert not [t for t in tables if not t.startswith(("authority.", "discharger."))], tables


async def test_an_outage_of_the_pooler_is_503_and_the_services_recover_by_themselves(stack, pgbouncer):
    (a, _), admin = stack["a"], stack["admin"]
    async with aiohttp.ClientSession() as http:
        headers = {"Authorization": f"Bearer {admin}"}
        async with http.post(a.url + "/v1/orgs", json={"name": "acme"}, headers=headers) as r:
            assert r.status == 201
        pgbouncer.stop()
        try:
            async with http.post(a.url + "/v1/tokens", json={"org": "acme"}, headers=headers) as r:
                body = await r.json()
                assert r.status == 503 and r.headers.get("Retry-After"), body
                assert str(pgbouncer.port) not in str(body) and "postgres" not in str(body)
            async with http.get(a.url + "/readyz") as r:
                assert r.status == 503
        finally:
            pgbouncer.start()
        deadline = time.monotonic() + 10
        while True:
            async with http.post(a.url + "/v1/tokens", json={"org": "acme"}, headers=headers) as r:
                if r.status == 201:
                    break
                assert r.status == 503, await r.text()
            assert time.monotonic() < deadline, "the authority did not recover after the pooler came back"
            await asyncio.sleep(0.2)
    assert [line for line in a.log.read_text().splitlines() if "Traceback" in line] == []
