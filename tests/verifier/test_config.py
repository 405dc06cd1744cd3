"""The verifier process's settings (SPEC §17) and `sable verifier serve` as a real process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request

import pytest

from clients.errors import ConfigError
from tests.support import SABLE, free_port
from verifier.config import load

FILE = """
authority = "http://127.0.0.1:8700"
gateway = "nginx"
ttl = "30s"
stale_after = 10
instance = "i-1"

[[route]]
host = "*.example.com"
path = "/orders*"
org = "acme"
app = "orders"
actions = { GET = "r", POST = "w" }
public_url = "https://api.example.com"
"""


def test_a_file_with_routes(tmp_path, monkeypatch):
    monkeypatch.delenv("SABLE_VERIFIER_AUTHORITY", raising=False)
    path = tmp_path / "verifier.toml"
    path.write_text(FILE)
    c = load(str(path), host="worker-7")
    assert c.authority == "http://127.0.0.1:8700" and c.gateway == "nginx" and c.ttl == 30 and c.stale_after == 10
    assert (c.listen_host, c.listen_port) == ("127.0.0.1", 8702) and c.trusted_proxies == ("127.0.0.0/8", "::1/128")
    assert c.host == "worker-7" and c.instance == "i-1"
    (route,) = c.routes
    assert route.public_url == "https://api.example.com" and route.actions == {"GET": "r", "POST": "w"}
    # the environment beats the file, a flag beats both
    monkeypatch.setenv("SABLE_VERIFIER_TTL", "5m")
    monkeypatch.setenv("SABLE_VERIFIER_GATEWAY", "caddy")
    assert load(str(path)).ttl == 300 and load(str(path)).gateway == "caddy"
    assert load(str(path), gateway="nginx").gateway == "nginx"
    # a [verifier] table works too
    path.write_text("[verifier]\n" + FILE.replace("[[route]]", "[[verifier.route]]"))
    assert len(load(str(path)).routes) == 1


@pytest.mark.parametrize("text, why", [
    ("gateway = 'nginx'", "authority is required"),
    ("authority = 'http://a'\ngateway = 'haproxy'", "gateway must be one of"),
    ("authority = 'http://a'\nttl = 'soon'", "ttl must be a duration"),
    ("authority = 'http://a'\nlisten = '8702'", "listen must be HOST:PORT"),
    ("authority = 'http://a'\ntrusted_proxy = ['not an address']", "trusted_proxy"),
    ("authority = 'http://a'\nhost = 'a b'", "host must be a name"),
    ("authority = 'http://a'\nroute = 'x'", "route must be"),
    ("authority = 'http://a'\ncolour = 'red'", "unknown key 'colour'"),
    ("authority = 'http://u:p@a'", "user name or password"),
])
def test_mistakes_are_named(tmp_path, monkeypatch, text, why):
    for name in ("AUTHORITY", "GATEWAY", "TTL"):
        monkeypatch.delenv(f"SABLE_VERIFIER_{name}", raising=False)
    path = tmp_path / "v.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as e:
        load(str(path))
    assert why in str(e.value)


def test_serve_as_a_process(dev, tmp_path):
    port = free_port()
    path = tmp_path / "verifier.toml"
    path.write_text(f'authority = "{dev["a"]}"\nlisten = "127.0.0.1:{port}"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("SABLE_")}
    log = tmp_path / "verifier.log"
    proc = subprocess.Popen([SABLE, "verifier", "serve", "--config", str(path), "--log-level", "WARNING"], env=env,
                            stdout=open(log, "w"), stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 15
        while True:
            try:
                with urllib.request.urlopen(url + "/readyz", timeout=1) as r:
                    assert r.status == 200
                    break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
        body = json.dumps({"tokens": ["sable_st_x"], "access": {"org": "acme", "action": "r"}}).encode()
        req = urllib.request.Request(url + "/v1/check", body, {"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(req, timeout=5)
        assert e.value.code == 400  # a malformed token, answered as /v1/verify would
        with urllib.request.urlopen(url + "/metrics", timeout=5) as r:
            assert b"sable_verifier_decisions_total" in r.read()
        # no gateway configured: forward-auth is refused, not guessed
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(url + "/v1/forward-auth", timeout=5)
        assert e.value.code == 403 and "gateway" in e.value.headers["Sable-Denied"]
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
    r = subprocess.run([SABLE, "verifier", "serve", "--listen", "nowhere"], env=env, capture_output=True, text=True)
    assert r.returncode == 2 and "authority is required" in r.stderr


def test_the_example_settings_load(monkeypatch):
    from pathlib import Path

    for name in ("AUTHORITY", "GATEWAY", "TTL"):
        monkeypatch.delenv(f"SABLE_VERIFIER_{name}", raising=False)
    c = load(str(Path(__file__).parents[2] / "examples" / "gateways" / "verifier.toml"))
    assert c.gateway == "nginx" and [r.app for r in c.routes] == ["orders", "admin"]
    assert c.routes[1].actions == {"GET": "r", "POST": "C"}


def test_the_readme_settings_and_the_systemd_units_command_work_as_written(tmp_path, monkeypatch):
    """README's verifier.toml block loads as written; deploy/sable-verifier.service's ExecStart,
    with the example file installed where it says, starts a verifier that answers /healthz."""
    import re
    import shlex
    from pathlib import Path

    root = Path(__file__).parents[2]
    for name in ("AUTHORITY", "GATEWAY", "TTL"):
        monkeypatch.delenv(f"SABLE_VERIFIER_{name}", raising=False)
    readme = (root / "README.md").read_text()
    block = re.search(r"\*\*Any language, behind a gateway\.\*\*.*?```toml\n(.*?)```", readme, re.S).group(1)
    (tmp_path / "readme.toml").write_text(block)
    c = load(str(tmp_path / "readme.toml"))
    assert c.gateway == "nginx" and c.routes[0].app == "orders" and c.routes[0].public_url == "https://api.example.com"

    unit = (root / "deploy" / "sable-verifier.service").read_text()
    command = shlex.split(re.search(r"^ExecStart=(.*)$", unit, re.M).group(1))
    assert command[0] == "/opt/sable/.venv/bin/sable" and command[-1] == "/etc/sable/verifier.toml"
    port = free_port()
    installed = tmp_path / "verifier.toml"  # examples/gateways/verifier.toml, on a free port
    installed.write_text((root / "examples" / "gateways" / "verifier.toml").read_text()
                         .replace('listen = "127.0.0.1:8702"', f'listen = "127.0.0.1:{port}"'))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SABLE_")}
    proc = subprocess.Popen([SABLE, *command[1:-1], str(installed)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
                    assert r.status == 200
                    break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline
                time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
