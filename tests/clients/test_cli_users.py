"""`sable user ...` (SPEC §12) against `sable dev`: `orgs` shows by default and changes only
with --set/--add/--remove; unknown orgs are errors; list, enable, passwd."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from tests.support import SABLE

pytestmark = pytest.mark.slow


def sable(env, *args, stdin=None):
    return subprocess.run([SABLE, *args], env=env, input=stdin, capture_output=True, text=True, timeout=60)


def test_user_commands(dev, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SABLE_")}
    env.update(SABLE_AUTHORITY_URL=dev["a"], SABLE_DISCHARGER_URL=dev["d"], SABLE_ADMIN_TOKEN=dev["admin"],
               XDG_CONFIG_HOME=str(tmp_path / "cfg"))
    r = sable(env, "user", "orgs", "alice")  # shows; changes nothing
    assert (r.returncode, r.stdout.strip()) == (0, "alice: acme (member)")
    assert sable(env, "user", "orgs", "alice").stdout.strip() == "alice: acme (member)"
    r = sable(env, "user", "orgs", "alice", "--add", "beta")
    assert r.returncode == 2 and "no such org: beta" in r.stderr
    assert sable(env, "org", "create", "beta").returncode == 0
    r = sable(env, "user", "orgs", "alice", "--add", "beta", "--role", "admin")
    assert r.stdout.strip() == "alice: acme (member), beta (admin)"
    r = sable(env, "user", "orgs", "alice", "--remove", "acme", "--json")
    assert json.loads(r.stdout)["roles"] == {"beta": "admin"}
    r = sable(env, "user", "orgs", "alice", "--set", "acme,beta")
    assert r.stdout.strip() == "alice: acme (member), beta (admin)"  # --set keeps known roles
    r = sable(env, "user", "orgs", "alice", "--add", "x", "--remove", "y")
    assert r.returncode == 2
    r = sable(env, "user", "create", "bob", "--org", "nosuchorg", "--password-stdin", stdin="correct horse\n")
    assert r.returncode == 2 and "no such org: nosuchorg" in r.stderr

    assert sable(env, "user", "disable", "alice").returncode == 0
    r = sable(env, "user", "list", "--json")
    assert {u["username"]: u["disabled"] for u in json.loads(r.stdout)} == {"alice": True}
    assert "alice: acme (member), beta (admin) [disabled]" in sable(env, "user", "list").stdout
    user = {k: v for k, v in env.items() if k != "SABLE_ADMIN_TOKEN"}
    assert sable(user, "login", "-u", "alice", "--password-stdin", stdin=dev["password"] + "\n").returncode == 1
    assert sable(env, "user", "enable", "alice").returncode == 0
    assert sable(user, "login", "-u", "alice", "--password-stdin", stdin=dev["password"] + "\n").returncode == 0
    r = sable(env, "user", "passwd", "alice", "--password-stdin", stdin="a new passphrase\n")
    assert r.returncode == 0, r.stderr
    r = sable(user, "token", "list")  # the password change ended her session
    assert r.returncode == 1 and "sable login" in r.stderr
    assert sable(user, "login", "-u", "alice", "--password-stdin", stdin="a new passphrase\n").returncode == 0
    r = sable(env, "user", "orgs", "nobody")
    assert r.returncode == 1 and "no such user" in r.stderr
