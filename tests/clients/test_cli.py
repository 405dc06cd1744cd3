"""The `sable` CLI as a user runs it: services started separately, configuration errors,
admin credentials, durations and exit codes."""

import base64
import json
import os
import signal
import subprocess
import time
import urllib.request

import nacl.utils
import pytest
from click.testing import CliRunner

from cli.main import main
from clients import tokens
from clients.cli.common import DURATION
from tests.support import SABLE, free_port, sable, wait_healthy

pytestmark = pytest.mark.slow  # real `sable` subprocesses


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read())


def test_services_started_separately(tmp_path):
    admin = tokens.encode(tokens.ADMIN, nacl.utils.random(32))
    master = base64.urlsafe_b64encode(nacl.utils.random(32)).decode().rstrip("=")
    a_port, d_port = free_port(), free_port()
    a_url, d_url = f"http://127.0.0.1:{a_port}", f"http://127.0.0.1:{d_port}"
    env = {**os.environ, "SABLE_ADMIN_TOKEN": admin, "SABLE_MASTER_KEY": master,
           "SABLE_AUTHORITY_URL": a_url, "SABLE_DISCHARGER_URL": d_url}
    procs = []
    try:
        # The authority starts first and waits for the discharger's keys.
        a_log = tmp_path / "a.log"
        procs.append(subprocess.Popen([SABLE, "authority", "serve", "--port", str(a_port), "--data-dir", str(tmp_path),
                                       "--discharger", d_url], env=env, stdout=open(a_log, "w"), stderr=subprocess.STDOUT))
        d_log = tmp_path / "d.log"
        d_env = {**env, "SABLE_MASTER_KEY": "66" * 32}  # each service has its own master key
        procs.append(subprocess.Popen([SABLE, "discharger", "serve", "--port", str(d_port), "--data-dir", str(tmp_path)],
                                      env=d_env, stdout=open(d_log, "w"), stderr=subprocess.STDOUT))
        wait_healthy(d_url, procs[1], d_log)
        wait_healthy(a_url, procs[0], a_log)
        d_info, a_info = get_json(d_url + "/v1/info"), get_json(a_url + "/v1/info")
        assert a_info["dischargers"] == [{"location": d_url, "public_keys": d_info["public_keys"]}]
        assert a_info["location"] == a_url
        assert sable(env, "org", "create", "acme").returncode == 0
        # The URLs swapped: a setting to fix (exit 2), said as such, not "Not Found".
        r = sable({**env, "SABLE_AUTHORITY_URL": d_url}, "org", "list")
        assert r.returncode == 2 and f"{d_url} has no such endpoint: is it the authority's URL?" in r.stderr
        r = sable(env, "token", "create", "--org", "acme", "--expires-in", "1h", "--json")
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["caveats"][0] == "org acme"
        assert not (tmp_path / "discharger.keys").exists()  # its keys are sealed in its database
        for name in ("authority.db", "discharger.db"):
            assert os.stat(tmp_path / name).st_mode & 0o077 == 0, name
        # JSON logs with request ids, and no token in them.
        lines = [json.loads(line) for line in open(a_log) if line.startswith("{")]
        assert any(line.get("event") == "mint" and line.get("request_id") for line in lines)
        assert json.loads(r.stdout)["token"][9:50] not in open(a_log).read()
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        codes = [p.wait(timeout=10) for p in procs]
    assert codes == [0, 0]


def test_authority_without_a_master_key_fails_cleanly(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SABLE_")}
    r = subprocess.run([SABLE, "authority", "serve", "--data-dir", str(tmp_path), "--port", str(free_port())],
                       env=env, capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "no master key" in r.stderr and "Traceback" not in r.stderr


def test_master_key_file_readable_by_others_is_refused(tmp_path):
    key = tmp_path / "master.key"
    key.write_text(base64.urlsafe_b64encode(bytes(32)).decode())
    key.chmod(0o644)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SABLE_")}
    r = subprocess.run([SABLE, "authority", "serve", "--data-dir", str(tmp_path), "--master-key-file", str(key)],
                       env=env, capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "chmod 600" in r.stderr


def test_wrong_master_key_for_a_database_is_refused(tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SABLE_")}
    first = subprocess.Popen([SABLE, "authority", "serve", "--data-dir", str(tmp_path), "--port", str(port)],
                             env={**env, "SABLE_MASTER_KEY": "11" * 32}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_healthy(f"http://127.0.0.1:{port}", first, os.devnull)
    first.terminate()
    first.wait(timeout=10)
    r = subprocess.run([SABLE, "authority", "serve", "--data-dir", str(tmp_path), "--port", str(port)],
                       env={**env, "SABLE_MASTER_KEY": "22" * 32}, capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and "master key does not match" in r.stderr and "Traceback" not in r.stderr


def test_admin_create_registers_a_working_credential(tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SABLE_")}
    db = tmp_path / "authority.db"
    r = subprocess.run([SABLE, "admin", "create", "--authority-db", str(db)], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    credential = r.stdout.strip()
    assert credential.startswith(tokens.ADMIN)
    proc = subprocess.Popen([SABLE, "authority", "serve", "--db", str(db), "--port", str(port)],
                            env={**env, "SABLE_MASTER_KEY": "33" * 32}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_healthy(f"http://127.0.0.1:{port}", proc, os.devnull)
        cli_env = {**env, "SABLE_AUTHORITY_URL": f"http://127.0.0.1:{port}", "SABLE_ADMIN_TOKEN": credential}
        assert sable(cli_env, "org", "create", "acme").returncode == 0
        r = sable({**cli_env, "SABLE_ADMIN_TOKEN": tokens.encode(tokens.ADMIN, bytes(32))}, "org", "list")
        assert r.returncode == 1 and "unauthorized" in r.stderr
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_unreachable_service_is_a_clear_failure():
    env = {**os.environ, "SABLE_AUTHORITY_URL": f"http://127.0.0.1:{free_port()}"}
    r = sable(env, "verify", tokens.encode(tokens.SERVICE, b"\x02"), "--org", "a", "--action", "r")
    assert r.returncode == 2  # a malformed token is caught offline, before any request
    r = sable(env, "revoke", "sable_st_x")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    r = sable({**env, "SABLE_ADMIN_TOKEN": "sable_adm_x"}, "org", "list")
    assert r.returncode == 3 and "cannot reach" in r.stderr  # 3: unavailable, worth retrying
    assert "connection refused" in r.stderr and "Error" not in r.stderr  # no exception class names
    r = sable({**env, "SABLE_ADMIN_TOKEN": "sable_adm_x", "SABLE_AUTHORITY_URL": "ftp://example"}, "org", "list")
    assert r.returncode in (2, 3) and "Error" not in r.stderr and "Traceback" not in r.stderr
    r = sable(env, "revoke", "ab" * 16)
    assert r.returncode == 2 and "sable token revoke" in r.stderr


@pytest.mark.parametrize("text, seconds", [("90s", 90), ("15m", 900), ("12h", 43200), ("30d", 2592000), ("45", 45)])
def test_durations(text, seconds):
    assert DURATION.convert(text, None, None) == seconds


@pytest.mark.parametrize("text", ["", "1w", "-5m", "0s", "1.5h", "abc"])
def test_bad_durations(text):
    result = CliRunner().invoke(main, ["attenuate", "sable_st_x", "--expires-in", text])
    assert result.exit_code == 2


def test_attenuate_needs_a_caveat_and_reads_stdin(tmp_path):
    runner = CliRunner()
    assert runner.invoke(main, ["attenuate", "-"], input="sable_st_x\n").exit_code == 2
    r = runner.invoke(main, ["inspect", "@" + str(tmp_path / "missing")])
    assert r.exit_code == 2 and "cannot read" in r.output


def test_two_workers_enforce_each_others_revocations(tmp_path):
    import http.client

    from tests.support.fakes import FakeDischarger

    d = FakeDischarger()
    kid, key = d.trust.public_keys[0]
    (tmp_path / "sable.toml").write_text(
        f'[authority]\npublic_url = "http://authority.test"\n[[authority.dischargers]]\nlocation = "{d.location}"\n'
        f'public_keys = [{{ kid = "{kid}", key = "{base64.urlsafe_b64encode(key).decode().rstrip("=")}" }}]\n')
    admin = tokens.encode(tokens.ADMIN, nacl.utils.random(32))
    env = {**os.environ, "SABLE_ADMIN_TOKEN": admin, "SABLE_MASTER_KEY": "44" * 32}
    port = free_port()
    log = tmp_path / "a.log"
    proc = subprocess.Popen([SABLE, "authority", "serve", "--workers", "2", "--port", str(port), "--data-dir",
                             str(tmp_path), "--config", str(tmp_path / "sable.toml")],
                            env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT)
    try:
        wait_healthy(f"http://127.0.0.1:{port}", proc, log)

        def request(conn, method, path, body=None, auth=False):
            headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {admin}"} if auth else {})}
            conn.request(method, path, None if body is None else json.dumps(body), headers)
            r = conn.getresponse()
            return r.status, json.loads(r.read())

        # Keep-alive connections pinned to each of the two worker processes.
        by_pid = {}
        deadline = time.monotonic() + 20
        while len(by_pid) < 2:
            assert time.monotonic() < deadline, "never reached both workers"
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            by_pid.setdefault(request(conn, "GET", "/v1/info")[1]["worker"], conn)
        a, b = by_pid.values()
        request(a, "POST", "/v1/orgs", {"name": "acme"}, auth=True)
        pt = request(a, "POST", "/v1/tokens", {"org": "acme"}, auth=True)[1]["token"]
        st = request(b, "POST", "/v1/service-tokens", {"tokens": [pt, d.discharge(pt)]})[1]["token"]
        check = {"tokens": [st], "access": {"org": "acme", "action": "r"}}
        assert request(a, "POST", "/v1/verify", check)[0] == 200  # both workers now hold it in memory
        assert request(b, "POST", "/v1/verify", check)[0] == 200
        assert request(a, "POST", "/v1/revoke", {"tokens": [st]})[0] == 200
        revoked_at = time.monotonic()
        while request(b, "POST", "/v1/verify", check)[0] != 403:
            assert time.monotonic() - revoked_at < 1.0, "the other worker still allowed a revoked token"
            time.sleep(0.02)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0


def test_sable_dev_on_a_taken_port_says_how_to_choose_another(tmp_path):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = subprocess.run([SABLE, "dev", "--data-dir", str(tmp_path), "--authority-port", str(port),
                            "--discharger-port", str(free_port())], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stderr
    assert f"127.0.0.1:{port}" in r.stderr and "AUTHORITY_PORT=" in r.stderr and "Traceback" not in r.stderr
    makefile = open(os.path.join(os.path.dirname(__file__), "..", "..", "Makefile")).read()
    assert "--authority-port $(AUTHORITY_PORT) --discharger-port $(DISCHARGER_PORT)" in makefile


def test_a_connected_client_does_not_hold_up_a_stop(tmp_path):
    """A workload's verifier long-polling the feed must not keep a stopping service up (was 11 s)."""
    import socket

    a_port, d_port = free_port(), free_port()
    log = tmp_path / "dev.log"
    proc = subprocess.Popen([SABLE, "dev", "--data-dir", str(tmp_path / "var"), "--authority-port", str(a_port),
                             "--discharger-port", str(d_port)], stdout=open(log, "w"), stderr=subprocess.STDOUT)
    try:
        wait_healthy(f"http://127.0.0.1:{a_port}", proc, log)
        head = get_json(f"http://127.0.0.1:{a_port}/v1/revocations")["cursor"]
        held = socket.create_connection(("127.0.0.1", a_port))
        held.sendall(f"GET /v1/revocations?after={head}&wait=25 HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        time.sleep(0.3)  # the long poll is waiting
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert time.monotonic() - started < 5  # the level is 2 s; CI machines vary
        held.close()
    finally:
        if proc.poll() is None:
            proc.kill()


def test_input_errors_name_the_flag_and_give_hints():
    from authority.minting import build
    from authority.root_keys import RootKeys

    runner = CliRunner()
    token = build(RootKeys(bytes(32)), tokens.SERVICE, "http://a", "ab" * 16, ["org acme"])[0].encode()
    r = runner.invoke(main, ["verify", token, "--org", "acme", "--action", "x"])
    assert r.exit_code == 2 and "--action" in r.output and "access." not in r.output
    r = runner.invoke(main, ["inspect", f'"{token}"'])
    assert r.exit_code == 2 and "remove them" in r.output
    r = runner.invoke(main, ["inspect", f"Bearer {token}"])  # a pasted header: Bearer is dropped
    assert r.exit_code == 0 and "ab" * 16 in r.output


def test_dev_env_works_from_another_folder_and_fails_visibly(dev, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "cfg")}
    r = subprocess.run([SABLE, "dev-env"], cwd=elsewhere, env=env, capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and "false" in r.stdout and "sable dev" in r.stderr  # eval shows it too
    # `sable dev` (the fixture) noted its data dir in its user's config home.
    env = {**os.environ, "XDG_CONFIG_HOME": str(dev["config_home"])}
    r = subprocess.run([SABLE, "dev-env"], cwd=elsewhere, env=env, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and f"SABLE_AUTHORITY_URL={dev['a']}" in r.stdout


def test_waiting_for_a_discharger_is_said_on_stderr(tmp_path):
    d_url = f"http://127.0.0.1:{free_port()}"  # nothing there yet
    env = {**os.environ, "SABLE_MASTER_KEY": "44" * 32}
    proc = subprocess.Popen([SABLE, "authority", "serve", "--port", str(free_port()), "--data-dir", str(tmp_path),
                             "--discharger", d_url], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    try:
        line = proc.stderr.readline()
        assert f"waiting for the discharger at {d_url}" in line and "connection refused" in line
    finally:
        proc.kill()
        proc.wait()


def test_service_urls_with_credentials_are_refused_without_echoing_them(tmp_path):
    """A URL's user:password@ would reach error messages and trace spans, and aiohttp refuses
    it beside an Authorization header with a traceback: every command refuses it up front,
    naming the setting, exit 2, the password nowhere in the output."""
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path), "SABLE_ADMIN_TOKEN": "sable_adm_x",
           "SABLE_AUTHORITY_URL": "http://ops:hunter2secret@127.0.0.1:1",
           "SABLE_DISCHARGER_URL": "http://ops:hunter2secret@127.0.0.1:2"}
    for args in (["token", "list", "--org", "acme"], ["org", "create", "beta"],
                 ["token", "revoke", "0" * 32], ["login", "-u", "alice", "--password-stdin"]):
        r = subprocess.run([SABLE, *args], env=env, input="pw\n", capture_output=True, text=True, timeout=30)
        assert r.returncode == 2, (args, r.stderr)
        assert "hunter2secret" not in r.stdout + r.stderr and "Traceback" not in r.stderr, (args, r.stderr)
        assert "user name or password" in r.stderr and "URL" in r.stderr, (args, r.stderr)


def test_service_configs_refuse_urls_with_credentials(tmp_path):
    from authority.config import load as load_authority
    from clients.errors import ConfigError
    from discharger.config import load as load_discharger

    key = tmp_path / "master.key"
    key.write_bytes(os.urandom(32).hex().encode())
    key.chmod(0o600)
    for load, flags in ((load_authority, {"discharger": "http://u:p4ss@127.0.0.1:8701"}),
                        (load_authority, {"public_url": "https://u:p4ss@auth.example"}),
                        (load_discharger, {"authority_url": ["https://u:p4ss@auth.example"]})):
        with pytest.raises(ConfigError) as caught:
            load(None, master_key_file=str(key), **flags)
        assert "p4ss" not in str(caught.value) and "user name or password" in str(caught.value)


def test_sable_dev_config_adds_the_files_settings_and_keeps_its_own(tmp_path, monkeypatch):
    from authority.config import AuthorityConfig
    from cli.dev import _from_file
    from discharger.config import DischargerConfig

    monkeypatch.setenv("SABLE_DISCHARGER_IDP_ACME_CLIENT_SECRET", "s")
    path = tmp_path / "sable.toml"
    path.write_text('[authority]\nticket_ttl = 120\npublic_url = "https://elsewhere.example"\n'
                    '[discharger]\npasswords = false\n[[discharger.identity_provider]]\nname = "acme"\n'
                    'issuer = "http://127.0.0.1:5556"\nclient_id = "sable"\n')
    a = AuthorityConfig(db_path="a.db", master_key=bytes(32), public_url="http://127.0.0.1:8700")
    d = DischargerConfig(db_path="d.db", master_key=bytes(32), public_url="http://127.0.0.1:8701")
    a2, d2 = _from_file(str(path), a, d)
    assert a2.ticket_ttl == 120 and a2.public_url == "http://127.0.0.1:8700"  # the address stays sable dev's
    assert d2.passwords is False and [p.name for p in d2.identity_providers] == ["acme"]
    assert d2.db_path == "d.db"
