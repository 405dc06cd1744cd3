"""The container image, started for real with podman (SPEC §13): both services from one image,
as user 10001, healthy by their HEALTHCHECK, a token minted, stripped and verified through them,
a clean stop on SIGTERM, and the data kept in the volume across a restart.

Runs when SABLE_TEST_IMAGE names a built image: `make image-test` builds it (deploy/image.sh)
and runs this file; .ci/run does so after the suite."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import time
import urllib.error
import urllib.request
import uuid

import nacl.utils
import pytest

from clients import offline, tokens
from clients.tickets import b64e
from tests.support import free_port

IMAGE = os.environ.get("SABLE_TEST_IMAGE")
pytestmark = pytest.mark.skipif(not IMAGE, reason="needs a built image: `make image-test` builds one and runs this")

# runc and explicit limits: the sandboxed machines refuse crun's and the default rlimits. The
# timers podman would run HEALTHCHECK with need systemd; the test runs the check itself.
RUN = ["run", "--detach", "--runtime", "runc", "--ulimit", "nofile=1024:1024",
       "--ulimit", "nproc=1024:1024", "--network", "host", "--health-interval", "disable"]


def podman(*args: str, check: bool = True, timeout: float = 60, env: dict[str, str] | None = None,
           ) -> subprocess.CompletedProcess:
    return subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout, check=check,
                          env={**os.environ, **(env or {})})


def request(method: str, url: str, body: dict | None = None, token: str | None = None) -> tuple[int, dict]:
    req = urllib.request.Request(url, method=method, data=json.dumps(body).encode() if body is not None else None)
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def wait_ready(url: str, name: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    logs = podman("logs", name, check=False)
    raise AssertionError(f"{name} not ready in {seconds} s:\n{logs.stdout[-2000:]}{logs.stderr[-2000:]}")


@pytest.fixture
def containers():
    """Start containers by (name suffix, env, command); removed afterwards with their volumes."""
    run_id = uuid.uuid4().hex[:8]
    started: list[str] = []
    volumes: list[str] = []

    def start(suffix: str, env: dict[str, str], *command: str) -> str:
        name = f"sable-test-{run_id}-{suffix}"
        volume = f"{name}-data"
        if volume not in volumes:
            volumes.append(volume)
        flags = [f"--env={k}" for k in env]  # values from podman's environment, not its arguments
        podman(*RUN, "--name", name, "--volume", f"{volume}:/var/lib/sable", *flags, IMAGE, *command, env=env)
        started.append(name)
        return name

    yield start
    for name in started:
        podman("rm", "--force", "--time", "0", name, check=False)
    for volume in volumes:
        podman("volume", "rm", "--force", volume, check=False)


def test_image_metadata_holds_to_the_rules():
    inspected = json.loads(podman("image", "inspect", IMAGE).stdout)[0]
    config = inspected["Config"]
    assert config["User"] == "10001:10001"
    assert config["Entrypoint"] == ["sable"]
    assert "SABLE_HEALTH_URL" in " ".join(inspected["Healthcheck"]["Test"])  # kept: built --format docker
    # Runtime dependencies only: no test or lint tools in the image.
    probe = subprocess.run(["podman", "run", "--rm", "--runtime", "runc", "--ulimit", "nofile=1024:1024",
                            "--ulimit", "nproc=1024:1024", "--entrypoint", "python3", IMAGE, "-c",
                            "import importlib.util as u; print([m for m in ('pytest', 'ruff', 'mypy', 'hypothesis',"
                            " 'mutmut', 'playwright', 'sable') if u.find_spec(m)])"],
                           capture_output=True, text=True, timeout=60)
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip() == "[]"  # `sable` is the console script, not a module


def test_both_services_start_serve_stop_and_keep_their_data(containers):
    admin = tokens.encode(tokens.ADMIN, nacl.utils.random(32))
    a_port, d_port = free_port(), free_port()
    a_url, d_url = f"http://127.0.0.1:{a_port}", f"http://127.0.0.1:{d_port}"

    def key() -> str:
        return base64.urlsafe_b64encode(nacl.utils.random(32)).decode().rstrip("=")

    d_env = {"SABLE_MASTER_KEY": key(), "SABLE_ADMIN_TOKEN": admin, "SABLE_HEALTH_URL": d_url + "/readyz"}
    a_env = {"SABLE_MASTER_KEY": key(), "SABLE_ADMIN_TOKEN": admin, "SABLE_HEALTH_URL": a_url + "/readyz"}
    discharger = containers("discharger", d_env, "discharger", "serve", "--port", str(d_port),
                            "--data-dir", "/var/lib/sable")
    wait_ready(d_url, discharger)
    authority_cmd = ("authority", "serve", "--port", str(a_port), "--data-dir", "/var/lib/sable",
                     "--discharger", d_url)
    authority = containers("authority", a_env, *authority_cmd)
    wait_ready(a_url, authority)

    for name in (discharger, authority):
        assert podman("healthcheck", "run", name, check=False).returncode == 0, name  # the image's own check
        assert podman("exec", name, "id", "-u").stdout.strip() == "10001"

    assert request("POST", a_url + "/v1/orgs", {"name": "acme"}, admin)[0] == 201
    status, _ = request("POST", d_url + "/v1/users", {"username": "ada", "password": "a long password",
                                                      "orgs": ["acme"]}, admin)
    assert status == 201
    session = request("POST", d_url + "/v1/sessions", {"username": "ada", "password": "a long password"})[1]["session"]
    status, minted = request("POST", a_url + "/v1/tokens", {"org": "acme", "caveats": ["apps orders"]}, admin)
    assert status == 201, minted
    pt = minted["token"]
    ticket = b64e(next(c for c in tokens.parse(pt).caveats if c.third_party).cid)
    status, discharged = request("POST", d_url + "/v1/discharges", {"ticket": ticket}, session)
    assert status == 201, discharged
    status, stripped = request("POST", a_url + "/v1/service-tokens",
                               {"tokens": [pt, offline.bind(pt, discharged["discharge"])]})
    assert status == 201, stripped
    host_token = offline.attenuate(stripped["token"], ["hosts worker-7"])
    access = {"org": "acme", "action": "r", "app": "orders", "host": "worker-7"}
    status, verified = request("POST", a_url + "/v1/verify", {"tokens": [host_token], "access": access})
    assert status == 200 and verified["user"] == "ada", verified

    # SIGTERM: a clean exit, well within podman's 10 s before it kills.
    started = time.monotonic()
    podman("stop", authority)
    assert time.monotonic() - started < 8
    state = json.loads(podman("inspect", authority).stdout)[0]["State"]
    assert state["ExitCode"] == 0, podman("logs", authority, check=False).stderr[-2000:]

    # The same volume, a new container: the service token still verifies, its revocation holds.
    podman("rm", authority)
    authority = containers("authority", a_env, *authority_cmd)
    wait_ready(a_url, authority)
    assert request("POST", a_url + "/v1/verify", {"tokens": [host_token], "access": access})[0] == 200
    assert request("POST", a_url + "/v1/revoke", {"tokens": [stripped["token"]]})[0] == 200
    assert request("POST", a_url + "/v1/verify", {"tokens": [host_token], "access": access})[0] == 403
