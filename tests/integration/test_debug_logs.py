"""At --log-level DEBUG no logger, ours or a library's, writes a failed login's username, a
password, a session or its digest (SPEC §12): aiosqlite, for one, logs every query with its
parameters at DEBUG."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import urllib.request

import pytest

from tests.support import SABLE, free_port, wait_healthy

pytestmark = pytest.mark.slow


def post(url: str, body: dict, headers: dict | None = None) -> int:
    req = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def test_debug_logs_hold_no_secrets(tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    admin = "sable_adm_" + "A" * 43
    log = tmp_path / "d.log"
    env = {**os.environ, "SABLE_MASTER_KEY": "66" * 32, "SABLE_ADMIN_TOKEN": admin}
    proc = subprocess.Popen([SABLE, "discharger", "serve", "--port", str(port), "--data-dir", str(tmp_path),
                             "--log-level", "DEBUG"], env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT)
    try:
        wait_healthy(url, proc, log)
        assert post(url + "/v1/users", {"username": "alice", "password": "correct horse battery"},
                    {"Authorization": f"Bearer {admin}"}) in (201, 401)
        assert post(url + "/v1/sessions", {"username": "my-pasted-password-9", "password": "x" * 10}) == 401
        assert post(url + "/v1/sessions", {"username": "alice", "password": "wrong-password-7"}) == 401
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)
    text = log.read_text()
    assert "discharger_keys" in text  # the service did log
    for secret in ("my-pasted-password-9", "wrong-password-7", "correct horse battery", admin):
        assert secret not in text, secret
