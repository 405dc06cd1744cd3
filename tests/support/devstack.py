"""`sable dev` as a real process on free ports: both services, org acme, user alice."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import SABLE, free_port, wait_healthy


@contextlib.contextmanager
def running_dev(data_dir: Path, log: Path, config_home: Path, ports: tuple[int, int] | None = None) -> Iterator[dict]:
    """`sable dev` on `data_dir` until the block ends (SIGTERM, then waited for). Tokens name
    the authority's URL, so a restart that should keep them working passes the same `ports`."""
    a_port, d_port = ports or (free_port(), free_port())
    # where `sable dev` notes its data dir: not the real ~/.config
    proc = subprocess.Popen([SABLE, "dev", "--data-dir", str(data_dir), "--authority-port", str(a_port),
                             "--discharger-port", str(d_port)], stdout=open(log, "a"), stderr=subprocess.STDOUT,
                            env={**os.environ, "XDG_CONFIG_HOME": str(config_home)})
    a_url, d_url = f"http://127.0.0.1:{a_port}", f"http://127.0.0.1:{d_port}"
    try:
        wait_healthy(d_url, proc, log)
        wait_healthy(a_url, proc, log)
        deadline = time.monotonic() + 30  # dev.json is written once both are up and alice exists
        while not (data_dir / "dev.json").exists():
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        info = json.loads((data_dir / "dev.json").read_text())
        yield {"a": a_url, "d": d_url, "admin": info["admin_token"], "password": info["users"][0]["password"],
               "log": log, "config_home": config_home, "ports": (a_port, d_port)}
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)


@pytest.fixture
def dev(tmp_path):
    with running_dev(tmp_path / "var", tmp_path / "dev.log", tmp_path / "dev-config") as stack:
        yield stack
