"""`examples/workload/deploy.sh` as the README runs it: it returns once the workload answers,
and the host-bound token it leaves is private and outside the repository."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.support import free_port

pytestmark = pytest.mark.slow
DEPLOY = Path(__file__).parents[2] / "examples" / "workload" / "deploy.sh"


def deploy(dev_stack, **extra) -> tuple[dict, int, int, Path, dict]:
    """Run deploy.sh as the README does: (env, port, workload pid, tmp, the user)."""
    proc, dev, tmp = dev_stack
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SABLE_")}
    env.update(SABLE_AUTHORITY_URL=dev["authority_url"], SABLE_DISCHARGER_URL=dev["discharger_url"],
               SABLE_ADMIN_TOKEN=dev["admin_token"], XDG_CONFIG_HOME=str(tmp / "config"),
               XDG_CACHE_HOME=str(tmp / "cache"), PORT=str(port),
               PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    user = dev["users"][0]
    subprocess.run(["sable", "login", "-u", user["username"], "--password-stdin"], input=user["password"] + "\n",
                   env=env, check=True, capture_output=True, text=True)
    pt = subprocess.run(["sable", "token", "create", "--org", "acme", "--apps", "orders"], env=env, check=True,
                        capture_output=True, text=True).stdout.strip()
    r = subprocess.run(["bash", str(DEPLOY)], env={**env, "PT": pt, **extra}, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    return env, port, int(re.search(r"\(pid (\d+)\)", r.stderr).group(1)), tmp, user


def test_deploy_waits_for_readiness_and_keeps_the_token_private(dev_stack):
    env, port, pid, tmp, user = deploy(dev_stack)
    try:
        token_file = tmp / "cache" / "sable" / "workload.token"
        assert os.stat(token_file).st_mode & 0o077 == 0
        token = token_file.read_text().strip()
        # Ready when the script returns: no sleep, no retry.
        req = urllib.request.Request(f"http://127.0.0.1:{port}/orders", headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert resp.status == 200 and json.loads(resp.read())["user"] == user["username"]
    finally:
        os.kill(pid, signal.SIGTERM)


def test_deploy_with_dpop_binds_the_token_to_a_key_made_on_the_host(dev_stack):
    import asyncio
    import urllib.error

    from clients import pop

    env, port, pid, tmp, user = deploy(dev_stack, DPOP="1")
    try:
        cache = tmp / "cache" / "sable"
        key_file, token_file = cache / "workload.key", cache / "workload.token"
        assert os.stat(key_file).st_mode & 0o077 == 0
        token = token_file.read_text().strip()
        signer = pop.DPoPSigner(key_file)
        assert f"cnf-jkt {signer.jkt}" in json.loads(subprocess.run(
            ["sable", "inspect", token], env=env, check=True, capture_output=True, text=True).stdout)["caveats"]
        req = urllib.request.Request(f"http://127.0.0.1:{port}/orders", headers={"Authorization": f"Bearer {token}"})
        with pytest.raises(urllib.error.HTTPError) as e:  # the token file alone is not enough
            urllib.request.urlopen(req, timeout=10)
        assert e.value.code == 401 and e.value.headers["WWW-Authenticate"].startswith("DPoP")

        async def with_key() -> int:
            async with pop.session(token, signer) as http, http.get(f"http://127.0.0.1:{port}/orders") as resp:
                return resp.status

        assert asyncio.run(with_key()) == 200
    finally:
        os.kill(pid, signal.SIGTERM)


def test_deploy_refuses_a_port_another_workload_holds(dev_stack):
    """SPEC §19: the old workload answering on the port must not pass for the new one."""
    env, port, pid, tmp, _ = deploy(dev_stack)
    try:
        pt = subprocess.run(["sable", "token", "create", "--org", "acme", "--apps", "orders"], env=env, check=True,
                            capture_output=True, text=True).stdout.strip()
        r = subprocess.run(["bash", str(DEPLOY)], env={**env, "PT": pt}, capture_output=True, text=True, timeout=60)
        assert r.returncode == 1 and f"port {port} is in use" in r.stderr, r.stderr
        assert "workload ready" not in r.stderr
    finally:
        os.kill(pid, signal.SIGTERM)
