"""Helpers shared by test modules: running the real `sable` binary, ports, and common API
steps. Test modules import from here, never from each other."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from authority.config import TrustedDischarger
from authority.keystore import KeyStore
from authority.minting import build
from clients import offline, tokens
from clients.tickets import b64d
from discharger.keys import DischargerKeys

SABLE = str(Path(sys.executable).parent / "sable")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
    keys = keys or DischargerKeys.load_or_create(env.config.keys_path)
    trust = TrustedDischarger(env.config.public_url, tuple((k["kid"], b64d(k["key"])) for k in keys.public_keys()))
    tok, _ = build(KeyStore(bytes(32)), tokens.PERMISSION, "http://auth", "ab" * 16, [f"org {org}"], trust, org, ttl)
    ticket = [c for c in tok.caveats if c.third_party][0].cid
    return tok.encode(), ticket
