"""The token lifecycle commands against `sable dev` (which lets webhooks reach this machine):
`sable webhook create|list|test|remove`, with a receiver that checks deliveries with the
`standardwebhooks` package, and `sable token regenerate`."""

from __future__ import annotations

import asyncio
import json
import os
import time
import urllib.request

from tests.support import sable
from tests.support.devstack import dev  # noqa: F401  # the fixture
from tests.support.receiver import Receiver


async def test_the_webhook_commands(dev, aiohttp_server):  # noqa: F811
    receiver = Receiver()
    server = await aiohttp_server(receiver.app())
    env = {**os.environ, "SABLE_AUTHORITY_URL": dev["a"], "SABLE_ADMIN_TOKEN": dev["admin"],
           "XDG_CONFIG_HOME": str(dev["config_home"])}

    async def run(*args):
        return await asyncio.to_thread(sable, env, "webhook", *args)
    r = await run("create", "--org", "acme", "--url", str(server.make_url("/hook")), "--events",
                  "token.created,token.revoked", "--json")
    assert r.returncode == 0, r.stderr
    made = json.loads(r.stdout)
    receiver.secret = made["secret"]
    r = await run("test", made["id"])
    assert (r.returncode, r.stdout.strip()) == (0, "delivered")
    assert receiver.received[-1]["event"]["type"] == "webhook.test"
    r = await asyncio.to_thread(sable, env, "token", "create", "--org", "acme", "--apps", "orders", "--json")
    assert r.returncode == 0, r.stderr
    first = json.loads(r.stdout)
    deadline = time.monotonic() + 5
    while not receiver.of_type("token.created"):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    r = await asyncio.to_thread(sable, env, "token", "regenerate", first["id"], "--json")
    assert r.returncode == 0, r.stderr
    again = json.loads(r.stdout)
    assert again["token"].startswith("sable_pt_") and again["revoked"] == [first["id"]]
    r = await asyncio.to_thread(sable, env, "token", "regenerate", first["id"])
    assert r.returncode != 0 and "revoked" in r.stderr
    while len(receiver.of_type("token.revoked")) < 1:
        assert time.monotonic() < deadline + 5
        await asyncio.sleep(0.05)
    r = await run("list", "--json")
    assert json.loads(r.stdout) == [{"id": made["id"], "url": made["url"], "events": ["token.created", "token.revoked"],
                                     "state": "active", "pending": 0}]
    assert "secret" not in r.stdout
    receiver.mode = "fail"
    r = await run("test", made["id"])
    assert (r.returncode, r.stdout.strip()) == (1, "failed")
    r = await run("create", "--org", "acme", "--url", "https://10.0.0.1/hook", "--events", "token.created")
    assert r.returncode == 0  # `sable dev` allows private targets; production refuses them (test_webhooks)
    r = await run("remove", made["id"])
    assert r.returncode == 0
    r = await run("create", "--org", "acme", "--url", "https://example.com/", "--events", "token.nope")
    assert r.returncode != 0 and "token.nope" in r.stderr


def test_the_org_lifetime_policy_command(dev):  # noqa: F811
    env = {**os.environ, "SABLE_AUTHORITY_URL": dev["a"], "SABLE_DISCHARGER_URL": dev["d"],
           "SABLE_ADMIN_TOKEN": dev["admin"], "XDG_CONFIG_HOME": str(dev["config_home"])}
    r = sable(env, "org", "policy", "acme", "--max-token-lifetime", "1h")
    assert r.returncode == 0 and "new tokens live at most 3600 s" in r.stdout, r.stderr
    r = sable(env, "org", "policy", "acme", "--json")  # both services' policies
    shown = json.loads(r.stdout)
    assert shown["max_token_lifetime"] == 3600 and shown["require_mfa"] is False  # from both services
    r = sable(env, "token", "create", "--org", "acme", "--expires-in", "2h")
    assert r.returncode != 0 and "--expires-in" in r.stderr and "3600" in r.stderr
    r = sable(env, "org", "policy", "acme", "--no-max-token-lifetime")
    assert r.returncode == 0 and "no token lifetime limit" in r.stdout


def test_an_org_admin_manages_webhooks_without_the_admin_credential(dev, tmp_path):  # noqa: F811
    admin = {**os.environ, "SABLE_AUTHORITY_URL": dev["a"], "SABLE_DISCHARGER_URL": dev["d"],
             "SABLE_ADMIN_TOKEN": dev["admin"], "XDG_CONFIG_HOME": str(tmp_path / "admin")}
    req = urllib.request.Request(dev["d"] + "/v1/users", method="POST", headers={
        "Authorization": f"Bearer {dev['admin']}", "Content-Type": "application/json"}, data=json.dumps({
            "username": "carol", "password": "carol's passphrase", "orgs": [{"org": "acme", "role": "admin"}]}).encode())
    with urllib.request.urlopen(req, timeout=10) as resp:  # an admin of acme (the CLI makes members)
        assert resp.status == 201
    person = {k: v for k, v in admin.items() if k != "SABLE_ADMIN_TOKEN"} | {"XDG_CONFIG_HOME": str(tmp_path / "c")}
    assert sable(person, "login", "-u", "carol", "--password-stdin", stdin="carol's passphrase\n").returncode == 0
    r = sable(person, "webhook", "create", "--url", "https://hooks.example.com/carol", "--events", "token.leaked",
              "--json")
    assert r.returncode == 0, r.stderr
    made = json.loads(r.stdout)
    assert made["org"] == "acme"
    r = sable(person, "webhook", "list", "--json")
    assert [w["id"] for w in json.loads(r.stdout)] == [made["id"]]
    assert sable(person, "webhook", "remove", made["id"]).returncode == 0
    # a member who is not an admin is refused
    assert sable(admin, "user", "create", "dave", "--org", "acme", "--password-stdin",
                 stdin="dave's passphrase\n").returncode == 0
    member = person | {"XDG_CONFIG_HOME": str(tmp_path / "d")}
    assert sable(member, "login", "-u", "dave", "--password-stdin", stdin="dave's passphrase\n").returncode == 0
    r = sable(member, "webhook", "create", "--url", "https://hooks.example.com/dave", "--events", "token.leaked")
    assert r.returncode != 0 and "admin" in r.stderr
