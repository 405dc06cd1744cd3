"""The `sable dev` stack as a user starts it: a real subprocess on free ports."""

import json
import subprocess
import time

import pytest

from tests.support import SABLE, free_port


@pytest.fixture
def dev_stack(tmp_path):
    a_port, d_port = free_port(), free_port()
    data = tmp_path / "var"
    log = open(tmp_path / "dev.log", "w")
    proc = subprocess.Popen(
        [SABLE, "dev", "--data-dir", str(data), "--authority-port", str(a_port), "--discharger-port", str(d_port)],
        stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path,
    )
    dev_json = data / "dev.json"
    deadline = time.monotonic() + 30
    while not dev_json.exists():
        assert proc.poll() is None, (tmp_path / "dev.log").read_text()
        assert time.monotonic() < deadline, "sable dev did not come up"
        time.sleep(0.1)
    yield proc, json.loads(dev_json.read_text()), tmp_path
    proc.terminate()
    proc.wait(timeout=10)
