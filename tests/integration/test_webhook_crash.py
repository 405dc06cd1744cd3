"""Webhook events survive a SIGKILL (SPEC §18): the authority is killed while its receiver is
down and events are pending; restarted, it delivers every one of them, each verified by the
`standardwebhooks` package."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import subprocess
import time
import urllib.request

import nacl.utils
import pytest

from clients import tokens
from tests.support import SABLE, free_port, wait_healthy
from tests.support.fakes import FakeDischarger
from tests.support.receiver import Receiver

pytestmark = pytest.mark.slow  # a real `sable authority serve`


def start(tmp_path, port, env):
    log = open(tmp_path / "authority.log", "a")
    proc = subprocess.Popen([SABLE, "authority", "serve", "--config", str(tmp_path / "sable.toml"), "--port", str(port)],
                            env=env, stdout=log, stderr=subprocess.STDOUT)
    wait_healthy(f"http://127.0.0.1:{port}", proc, tmp_path / "authority.log")
    return proc


async def test_pending_events_are_delivered_after_a_sigkill(tmp_path, aiohttp_server):
    d = FakeDischarger()
    admin = tokens.encode(tokens.ADMIN, nacl.utils.random(32))
    master = base64.urlsafe_b64encode(nacl.utils.random(32)).decode().rstrip("=")
    kid, key = d.trust.public_keys[0]
    (tmp_path / "sable.toml").write_text(
        f'[authority]\ndb = "{tmp_path}/authority.db"\npublic_url = "http://authority.test"\n'
        f'webhook_allow_private = true\n'
        f'[[authority.dischargers]]\nlocation = "{d.location}"\n'
        f'public_keys = [{{ kid = "{kid}", key = "{base64.urlsafe_b64encode(key).decode().rstrip("=")}" }}]\n')
    env = {**os.environ, "SABLE_MASTER_KEY": master, "SABLE_ADMIN_TOKEN": admin}
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    receiver_port = free_port()

    def call(path, body):
        req = urllib.request.Request(url + path, data=json.dumps(body).encode(), method="POST",
                                     headers={"Authorization": f"Bearer {admin}", "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())

    proc = await asyncio.to_thread(start, tmp_path, port, env)
    try:
        await asyncio.to_thread(call, "/v1/orgs", {"name": "acme"})
        hook = await asyncio.to_thread(call, "/v1/webhooks", {"org": "acme", "events": ["token.created"],
                                                               "url": f"http://127.0.0.1:{receiver_port}/hook"})
        minted = [(await asyncio.to_thread(call, "/v1/tokens", {"org": "acme"}))["id"] for _ in range(10)]
        await asyncio.sleep(0.5)  # the first attempts fail: nobody listens yet
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        receiver = Receiver()
        receiver.secret = hook["secret"]
        await aiohttp_server(receiver.app(), port=receiver_port)
        proc = await asyncio.to_thread(start, tmp_path, port, env)
        deadline = time.monotonic() + 20  # the retry after a first failure comes 5 s later
        while len(receiver.received) < 10:
            assert time.monotonic() < deadline, f"{len(receiver.received)} of 10 delivered"
            await asyncio.sleep(0.1)
        assert sorted(r["event"]["data"]["token_id"] for r in receiver.received) == sorted(minted)
        assert len({r["id"] for r in receiver.received}) == 10 and receiver.unverified == 0
    finally:
        proc.kill()
        proc.wait(timeout=10)
