
"""The whole flow with both real services: once through the SDK, once through the CLI as a
user would type it, in subprocesses with real ports."""

import json
import os
import subprocess
import time
from dataclasses import replace

import pytest

from authority.app import create_app as create_authority_app
from authority.config import TrustedDischarger
from clients import offline, tokens
from clients.sdk import AuthorityClient, DischargerClient, SableAPIError
from clients.tickets import b64d, b64e
from tests.support import SABLE, sable
from tests.support.attacks import last_char_changed

pytestmark = pytest.mark.slow  # real `sable` subprocesses


async def test_walkthrough_through_the_sdk(aiohttp_server, real_discharger, authority_config, admin_token):
    d_server = real_discharger.client.server
    d_url = str(d_server.make_url("")).rstrip("/")
    info = await (await real_discharger.client.get("/v1/info")).json()
    trust = TrustedDischarger(info["location"], tuple((k["kid"], b64d(k["key"])) for k in info["public_keys"]))
    a_server = await aiohttp_server(create_authority_app(replace(authority_config, dischargers=(trust,))))
    a_url = str(a_server.make_url("")).rstrip("/")

    async with AuthorityClient(a_url, admin_token=admin_token) as a, DischargerClient(d_url, admin_token=admin_token) as d:
        await a.create_org("acme")
        await d.create_user("alice", "correct horse", ["acme"])
        await d.create_user("bob", "correct horse", ["beta"])
        session = (await d.login("alice", "correct horse"))["session"]
        pt = (await a.mint("acme", ["apps orders"]))["token"]
        ticket = [c for c in tokens.parse(pt).caveats if c.third_party][0].cid
        dt = offline.bind(pt, (await d.discharge(session, b64e(ticket)))["discharge"])
        st = await a.strip(pt, dt, name="deploy")
        assert st["user"] == "alice" and st["caveats"] == ["org acme", "apps orders"]
        ht = offline.attenuate(st["token"], ["hosts worker-7"])
        access = {"org": "acme", "action": "r", "app": "orders"}
        assert (await a.verify([ht], {**access, "host": "worker-7"}))["allowed"] is True
        denied = await a.verify([ht], {**access, "host": "worker-8"})
        assert denied["allowed"] is False and "hosts worker-7" in denied["message"]

        # A user of another org cannot get a discharge for this token.
        bob = (await d.login("bob", "correct horse"))["session"]
        with pytest.raises(SableAPIError) as e:
            await d.discharge(bob, b64e(ticket))
        assert e.value.status == 403

        await a.revoke_id(st["parent"])
        denied = await a.verify([ht], {**access, "host": "worker-7"})
        assert denied["allowed"] is False and "revoked" in denied["message"]


def test_walkthrough_through_the_cli(dev_stack):
    proc, dev, tmp = dev_stack
    assert os.stat(tmp / "var" / "dev.json").st_mode & 0o777 == 0o600
    env = {**os.environ, "SABLE_AUTHORITY_URL": dev["authority_url"], "SABLE_DISCHARGER_URL": dev["discharger_url"],
           "SABLE_ADMIN_TOKEN": dev["admin_token"], "XDG_CONFIG_HOME": str(tmp / "config")}
    user = dev["users"][0]

    r = sable(env, "login", "-u", user["username"], "--password-stdin", stdin=user["password"] + "\n")
    assert r.returncode == 0, r.stderr
    assert os.stat(tmp / "config" / "sable" / "session.json").st_mode & 0o777 == 0o600

    r = sable(env, "token", "create", "--org", "acme", "--apps", "orders", "--actions", "rw")
    assert r.returncode == 0, r.stderr
    pt = r.stdout.strip()
    r = sable(env, "strip", pt)
    assert r.returncode == 0, r.stderr
    st = r.stdout.strip()
    assert st.startswith("sable_st_")
    r = sable(env, "attenuate", st, "--hosts", "worker-7")
    ht = r.stdout.strip()
    (tmp / "ht").write_text(ht)

    r = sable(env, "verify", "@" + str(tmp / "ht"), "--org", "acme", "--action", "r", "--app", "orders", "--host", "worker-7")
    assert r.returncode == 0 and "allowed" in r.stdout, r.stderr
    r = sable(env, "verify", ht, "--org", "acme", "--action", "r", "--app", "orders", "--host", "worker-8")
    assert r.returncode == 1 and "hosts worker-7" in r.stderr

    r = sable(env, "inspect", pt)
    token_id = json.loads(r.stdout)["id"]
    r = sable(env, "token", "revoke", token_id)
    assert r.returncode == 0 and token_id in r.stdout
    r = sable(env, "verify", ht, "--org", "acme", "--action", "r", "--app", "orders", "--host", "worker-7")
    assert r.returncode == 1 and "revoked" in r.stderr

    # Input errors exit 2, with a message and no traceback.
    r = sable(env, "inspect", last_char_changed(pt))
    assert r.returncode == 2 and "checksum" in r.stderr and "Traceback" not in r.stderr
    r = sable(env, "attenuate", st, "--caveat", "apps *")
    assert r.returncode == 2 and "Traceback" not in r.stderr


def test_dev_restart_keeps_everything(dev_stack):
    proc, dev, tmp = dev_stack
    env = {**os.environ, "SABLE_AUTHORITY_URL": dev["authority_url"], "SABLE_ADMIN_TOKEN": dev["admin_token"]}
    pt = sable(env, "token", "create", "--org", "acme").stdout.strip()
    proc.send_signal(2)  # Ctrl-C
    assert proc.wait(timeout=10) == 0
    log = open(tmp / "dev2.log", "w")
    a_port = dev["authority_url"].rsplit(":", 1)[1]
    d_port = dev["discharger_url"].rsplit(":", 1)[1]
    second = subprocess.Popen([SABLE, "dev", "--data-dir", str(tmp / "var"), "--authority-port", a_port,
                               "--discharger-port", d_port], stdout=log, stderr=subprocess.STDOUT, cwd=tmp)
    try:
        deadline = time.monotonic() + 30
        while True:
            r = sable(env, "token", "list", "--org", "acme", "--json")
            if r.returncode == 0:
                break
            assert time.monotonic() < deadline, (tmp / "dev2.log").read_text()
            time.sleep(0.2)
        assert tokens.parse(pt).token_id in r.stdout
        assert json.loads((tmp / "var" / "dev.json").read_text()) == dev
    finally:
        second.terminate()
        second.wait(timeout=10)
