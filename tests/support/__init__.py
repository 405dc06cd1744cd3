"""Helpers shared by test modules: running the real `sable` binary, ports, and common API
steps. Test modules import from here, never from each other."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

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
