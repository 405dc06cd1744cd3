"""`sable login --totp`, `sable org policy`, `sable user mfa reset`, `sable user create --idp`
and `sable user link` (SPEC §15) against `sable dev`; the authenticator app is set up through
the discharger's pages, as a person would."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time

import aiohttp
import pyotp
import pytest

from tests.support import SABLE

pytestmark = pytest.mark.slow


def sable(env, *args, stdin=None):
    return subprocess.run([SABLE, *args], env=env, input=stdin, capture_output=True, text=True, timeout=60)


async def set_up_app(base: str, username: str, password: str) -> pyotp.TOTP:
    def csrf(page: str) -> str:
        return re.search(r'name="csrf" value="([^"]+)"', page).group(1)

    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        page = await (await http.get(base + "/login")).text()
        await http.post(base + "/login", data={"csrf": csrf(page), "username": username, "password": password,
                                               "next": "/account/security"})
        page = await (await http.get(base + "/account/security")).text()
        r = await http.post(base + "/account/security/totp", data={"csrf": csrf(page), "password": password})
        page = await r.text()
        totp = pyotp.TOTP(re.search(r"type the key <code>([A-Z2-7]+)</code>", page).group(1))
        r = await http.post(base + "/account/security/totp/confirm",
                            data={"csrf": csrf(page), "code": totp.at(time.time() - 30)})
        assert "Recovery codes" in await r.text()
        return totp


async def test_second_factor_and_policy_commands(dev, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SABLE_")}
    env.update(SABLE_AUTHORITY_URL=dev["a"], SABLE_DISCHARGER_URL=dev["d"], SABLE_ADMIN_TOKEN=dev["admin"],
               XDG_CONFIG_HOME=str(tmp_path / "cfg"))
    user = {k: v for k, v in env.items() if k != "SABLE_ADMIN_TOKEN"}
    totp = await set_up_app(dev["d"], "alice", dev["password"])

    r = sable(user, "login", "-u", "alice", "--password-stdin", stdin=dev["password"] + "\n")
    assert r.returncode == 1 and "--totp CODE" in r.stderr
    r = sable(user, "login", "-u", "alice", "--password-stdin", "--totp", totp.now(), stdin=dev["password"] + "\n")
    assert r.returncode == 0, r.stderr
    r = sable(user, "whoami")
    assert r.returncode == 0 and r.stdout.startswith("alice at ") and "acme (member)" in r.stdout
    assert "signed in with password+totp" in r.stdout
    assert json.loads(sable(user, "whoami", "--json").stdout)["auth_method"] == "password+totp"

    r = sable(env, "org", "policy", "acme")  # both services' policies of the org
    assert (r.returncode, r.stdout.strip()) == (0, "org acme: no sign-in policy\norg acme: no token lifetime limit")
    r = sable(env, "org", "policy", "acme", "--require-mfa")
    assert r.stdout.strip() == "org acme: sign-ins need a second factor"
    r = sable(env, "org", "policy", "acme", "--json")
    assert json.loads(r.stdout) == {"org": "acme", "require_idp": None, "require_mfa": True, "max_token_lifetime": None}
    r = sable(env, "org", "policy", "acme", "--require-idp", "okta")
    assert r.returncode == 2 and "no identity provider named 'okta'" in r.stderr
    r = sable(env, "org", "policy", "acme", "--no-require-mfa")
    assert r.stdout.strip() == "org acme: no sign-in policy"

    r = sable(env, "user", "mfa", "reset", "alice")
    assert (r.returncode, r.stdout.strip()) == (0, "removed the second factors of alice")
    r = sable(user, "login", "-u", "alice", "--password-stdin", stdin=dev["password"] + "\n")
    assert r.returncode == 0, r.stderr

    r = sable(env, "user", "create", "carol", "--idp", "okta")
    assert r.returncode == 2 and "no identity provider named 'okta'" in r.stderr
    r = sable(env, "user", "link", "alice", "--idp", "okta", "--sub", "x")
    assert r.returncode == 2 and "no identity provider named 'okta'" in r.stderr
