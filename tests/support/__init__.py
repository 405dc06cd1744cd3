"""Helpers shared by test modules: running the real `sable` binary, ports, and common API
steps. Test modules import from here, never from each other."""

from __future__ import annotations

import itertools
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from authority.config import TrustedDischarger
from authority.minting import build
from authority.root_keys import RootKeys
from clients import offline, tokens
from clients.tickets import b64d

SABLE = str(Path(sys.executable).parent / "sable")


def _port_block() -> range:
    """This pytest worker's own ports, below the kernel's ephemeral range (32768 and up here).
    A port the kernel hands out (`bind(0)`) can be taken again by any outgoing connection
    between the test choosing it and a child process binding it; that race made `sable dev`
    exit 2 on a busy machine. Ports outside that range are taken only by tests, and each
    worker draws from its own block, so none of them collide."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    index = int(worker[2:]) if worker[2:].isdigit() else 0
    start = 20000 + (index % 8) * 1500
    return range(start, start + 1500)


_ports = itertools.cycle(_port_block())


def free_port() -> int:
    """A loopback port nobody listens on now, from this worker's block (see `_port_block`)."""
    for _ in range(1500):
        port = next(_ports)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in this test worker's block")


def sable(env, *args, stdin=None) -> subprocess.CompletedProcess:
    return subprocess.run([SABLE, *args], env=env, input=stdin, capture_output=True, text=True, timeout=30)


def wait_healthy(url: str, proc: subprocess.Popen, log_path) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        assert proc.poll() is None, open(log_path).read()
        assert time.monotonic() < deadline, open(log_path).read()
        time.sleep(0.1)


async def strip(authority, pt, **extra) -> dict:
    """Strip through an `AuthorityEnv` (tests/conftest.py) with a fresh bound discharge."""
    dt = authority.discharger.discharge(pt)
    status, body = await authority.post("/v1/service-tokens", {"tokens": [pt, dt], **extra})
    assert status == 201, body
    return body


def authority_url(authority) -> str:
    return str(authority.client.make_url("")).rstrip("/")


async def service_token(authority, *extra) -> str:
    pt = await authority.mint(["apps orders"])
    st = (await strip(authority, pt))["token"]
    return offline.attenuate(st, ["hosts worker-7", *extra])


def ticket_for(env, org="acme", ttl=300, keys=None) -> tuple[str, bytes]:
    """A permission token whose authentication caveat is sealed to this discharger."""
    keys = keys or env.service.keys
    trust = TrustedDischarger(env.config.public_url, tuple((k["kid"], b64d(k["key"])) for k in keys.public_keys()))
    tok, _ = build(RootKeys(bytes(32)), tokens.PERMISSION, "http://auth", "ab" * 16, [f"org {org}"], trust, org, ttl)
    ticket = [c for c in tok.caveats if c.third_party][0].cid
    return tok.encode(), ticket


def sealed_ticket(env, org="acme", role="member", purpose="permission", name=None) -> bytes:
    """A ticket sealed to this discharger's current key, naming what it is for."""
    from clients import tickets

    key = env.service.keys.public_keys()[0]["key"]
    return tickets.seal(b64d(key), bytes(32), org, 300, purpose, name, role)


class AuthorityProcess:
    """`sable authority serve` as a real process, trusting `discharger` (a FakeDischarger),
    on a free port. Several may share one database (replicas)."""

    def __init__(self, tmp_path: Path, db: str, discharger, admin: str, master_key: str = "44" * 32,
                 workers: int = 1, name: str = "authority", extra_env: dict | None = None):
        import base64
        import os

        kid, key = discharger.trust.public_keys[0]
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tmp_path / f"{name}-{self.port}.log"
        config = tmp_path / f"{name}-{self.port}.toml"
        config.write_text(
            f'[authority]\npublic_url = "http://authority.test"\nrevoke_per_minute = 100000\n'
            f'[[authority.dischargers]]\nlocation = "{discharger.location}"\n'
            f'public_keys = [{{ kid = "{kid}", key = "{base64.urlsafe_b64encode(key).decode().rstrip("=")}" }}]\n')
        env = {**os.environ, "SABLE_ADMIN_TOKEN": admin, "SABLE_MASTER_KEY": master_key, **(extra_env or {})}
        self.args = [SABLE, "authority", "serve", "--port", str(self.port), "--db", db, "--config", str(config),
                     "--workers", str(workers)]
        self.env = env
        self.proc = self._spawn()

    def _spawn(self) -> subprocess.Popen:
        proc = subprocess.Popen(self.args, env=self.env, stdout=open(self.log, "a"), stderr=subprocess.STDOUT)
        wait_healthy(self.url, proc, self.log)
        return proc

    def restart(self) -> None:
        self.stop()
        self.proc = self._spawn()

    def kill(self) -> None:
        import signal
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=15)


def audited(record):
    """An `AuditFor` for store tests: `record` with what the write changed (detail `changed`),
    nothing when it changed nothing."""
    return lambda change: record.add(changed=change) if change else None
