"""`sable dev` as a real process on free ports: both services, org acme, user alice."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from tests.support import SABLE, free_port, wait_healthy


@pytest.fixture
def dev(tmp_path):
    a_port, d_port = free_port(), free_port()
    log = tmp_path / "dev.log"
    config_home = tmp_path / "dev-config"  # where `sable dev` notes its data dir: not the real ~/.config
    proc = subprocess.Popen([SABLE, "dev", "--data-dir", str(tmp_path / "var"), "--authority-port", str(a_port),
                             "--discharger-port", str(d_port)], stdout=open(log, "w"), stderr=subprocess.STDOUT,
                            env={**os.environ, "XDG_CONFIG_HOME": str(config_home)})
    a_url, d_url = f"http://127.0.0.1:{a_port}", f"http://127.0.0.1:{d_port}"
    try:
        wait_healthy(d_url, proc, log)
        wait_healthy(a_url, proc, log)
        for _ in range(100):  # dev.json is written once both are up and alice exists
            if (tmp_path / "var" / "dev.json").exists():
                break
            time.sleep(0.1)
        info = json.loads((tmp_path / "var" / "dev.json").read_text())
        yield {"a": a_url, "d": d_url, "admin": info["admin_token"], "password": info["users"][0]["password"],
               "log": log, "config_home": config_home}
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)
