"""Crash safety: SIGKILL the authority at random points while it strips and revokes, then
restart it and check that every acknowledged write survived and the database is sound."""

import asyncio
import base64
import json
import os
import random
import signal
import subprocess
import urllib.request

import aiohttp
import nacl.utils
import pytest

from authority.store import open_store
from clients import tokens
from tests.support import SABLE, free_port, wait_healthy
from tests.support.fakes import FakeDischarger

# 8 kills in the suite (about 10 s); SABLE_CRASH_CYCLES=100 for a long soak.
CYCLES = int(os.environ.get("SABLE_CRASH_CYCLES", "8"))


pytestmark = pytest.mark.slow  # real `sable` subprocesses


async def integrity_ok(path) -> bool:
    store = await open_store(str(path))
    try:
        return await store.integrity_ok()
    finally:
        await store.close()


def start(tmp_path, port, env):
    log = open(tmp_path / "authority.log", "a")
    proc = subprocess.Popen([SABLE, "authority", "serve", "--config", str(tmp_path / "sable.toml"), "--port", str(port)],
                            env=env, stdout=log, stderr=subprocess.STDOUT)
    wait_healthy(f"http://127.0.0.1:{port}", proc, tmp_path / "authority.log")
    return proc


async def drive(url, pt, dt, strips, revoked, stop_after):
    """Concurrent strips and revokes until the server dies; record what was acknowledged."""
    async with aiohttp.ClientSession() as http:
        async def worker(n):
            rng = random.Random(n)
            while True:
                try:
                    if strips and rng.random() < 0.3:
                        victim_id = rng.choice(sorted(strips))
                        async with http.post(url + "/v1/revoke", json={"tokens": [strips[victim_id]]}) as r:
                            if r.status == 200:
                                revoked.update(x["id"] for x in (await r.json())["revoked"])
                    else:
                        async with http.post(url + "/v1/service-tokens", json={"tokens": [pt, dt]}) as r:
                            if r.status == 201:
                                body = await r.json()
                                strips[body["id"]] = body["token"]
                except (TimeoutError, aiohttp.ClientError, ConnectionError):
                    return
        tasks = [asyncio.create_task(worker(n)) for n in range(8)]
        await stop_after()
        await asyncio.wait(tasks, timeout=10)


def test_sigkill_keeps_every_acknowledged_strip_and_revoke(tmp_path):
    d = FakeDischarger()
    admin = tokens.encode(tokens.ADMIN, nacl.utils.random(32))
    master = base64.urlsafe_b64encode(nacl.utils.random(32)).decode().rstrip("=")
    kid, key = d.trust.public_keys[0]
    (tmp_path / "sable.toml").write_text(
        f'[authority]\ndb = "{tmp_path}/authority.db"\npublic_url = "http://authority.test"\nrevoke_per_minute = 1000000\n'
        f'[[authority.dischargers]]\nlocation = "{d.location}"\n'
        f'public_keys = [{{ kid = "{kid}", key = "{base64.urlsafe_b64encode(key).decode().rstrip("=")}" }}]\n'
    )
    env = {**os.environ, "SABLE_MASTER_KEY": master, "SABLE_ADMIN_TOKEN": admin}
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    auth = {"Authorization": f"Bearer {admin}", "Content-Type": "application/json"}

    def call(path, body=None):
        req = urllib.request.Request(url + path, data=None if body is None else json.dumps(body).encode(),
                                     headers=auth, method="GET" if body is None else "POST")
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    proc = start(tmp_path, port, env)
    call("/v1/orgs", {"name": "acme"})
    pt = call("/v1/tokens", {"org": "acme"})[1]["token"]
    dt = d.discharge(pt)
    strips: dict[str, str] = {}
    revoked: set[str] = set()
    rng = random.Random(7)
    try:
        for cycle in range(CYCLES):
            async def kill_soon():
                await asyncio.sleep(rng.uniform(0.05, 0.4))
                proc.send_signal(signal.SIGKILL)  # noqa: B023  (this cycle's process, awaited below)
            asyncio.run(drive(url, pt, dt, strips, revoked, kill_soon))
            proc.wait(timeout=10)
            assert asyncio.run(integrity_ok(tmp_path / "authority.db")), f"cycle {cycle}"
            proc = start(tmp_path, port, env)
            listed = {t["id"]: t for t in call("/v1/tokens?org=acme")[1]["tokens"]}
            missing = set(strips) - set(listed)
            assert not missing, f"cycle {cycle}: acknowledged strips lost: {sorted(missing)[:3]}"
            alive = {i for i in revoked if listed[i]["revoked_at"] is None}
            assert not alive, f"cycle {cycle}: acknowledged revocations lost"
            for token_id in rng.sample(sorted(revoked), min(5, len(revoked))):
                status, body = call("/v1/verify", {"tokens": [strips[token_id]], "access": {"org": "acme", "action": "r"}})
                assert status == 403 and "revoked" in body["message"]
        print(f"{CYCLES} kills: {len(strips)} acknowledged strips, {len(revoked)} acknowledged revocations")
        assert len(strips) > CYCLES and len(revoked) > 0
    finally:
        proc.kill()
        proc.wait(timeout=10)
