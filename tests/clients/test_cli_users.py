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


def test_separate_admin_credentials_per_service(dev, tmp_path):
    """SPEC §19: SABLE_AUTHORITY_ADMIN_TOKEN and SABLE_DISCHARGER_ADMIN_TOKEN, each falling back
    to SABLE_ADMIN_TOKEN; an error says which service refused."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SABLE_")}
    env.update(SABLE_AUTHORITY_URL=dev["a"], SABLE_DISCHARGER_URL=dev["d"], XDG_CONFIG_HOME=str(tmp_path / "cfg"))
    var = tmp_path / "var"
    made = {}
    for service in ("authority", "discharger"):
        r = sable(env, "admin", "create", f"--{service}-db", str(var / f"{service}.db"))
        assert r.returncode == 0, r.stderr
        made[service] = r.stdout.strip()
    both = {**env, "SABLE_AUTHORITY_ADMIN_TOKEN": made["authority"], "SABLE_DISCHARGER_ADMIN_TOKEN": made["discharger"]}
    r = sable(both, "user", "create", "bob", "--org", "acme", "--password-stdin", stdin="correct horse\n")
    assert r.returncode == 0, r.stderr
    assert sable(both, "user", "orgs", "bob", "--add", "acme", "--role", "admin").returncode == 0
    assert sable(both, "token", "create", "--org", "acme", "--name", "t").returncode == 0

    # One credential for both: the service that does not know it is named.
    only_authority = {**env, "SABLE_ADMIN_TOKEN": made["authority"]}
    r = sable(only_authority, "user", "create", "carol", "--org", "acme", "--password-stdin", stdin="x y z w\n")
    assert r.returncode == 1 and "the discharger refused" in r.stderr, r.stderr
    only_discharger = {**env, "SABLE_ADMIN_TOKEN": made["discharger"]}
    r = sable(only_discharger, "user", "create", "carol", "--org", "acme", "--password-stdin", stdin="x y z w\n")
    assert r.returncode == 1 and "the authority" in r.stderr and "SABLE_AUTHORITY_ADMIN_TOKEN" in r.stderr, r.stderr
    r = sable(only_discharger, "org", "create", "gamma")
    assert r.returncode == 1 and "the authority refused" in r.stderr, r.stderr
    # The per-service variable wins over the shared one.
    r = sable({**only_discharger, "SABLE_AUTHORITY_ADMIN_TOKEN": made["authority"]}, "org", "create", "gamma")
    assert r.returncode == 0, r.stderr


def test_an_introspect_only_credential(dev, tmp_path):
    """SPEC §17: `sable admin create --introspect-only --org O` lives at the authority, may
    introspect O's tokens, and is refused (403) everywhere else; list and revoke know it."""
    import json
    import urllib.error
    import urllib.parse
    import urllib.request

    env = {k: v for k, v in os.environ.items() if not k.startswith("SABLE_")}
    env.update(SABLE_AUTHORITY_URL=dev["a"], SABLE_DISCHARGER_URL=dev["d"], XDG_CONFIG_HOME=str(tmp_path / "cfg"))
    db = str(tmp_path / "var" / "authority.db")
    assert sable(env, "admin", "create", "--introspect-only", "--discharger-db", "x.db").returncode == 2
    assert sable(env, "admin", "create", "--org", "acme", "--authority-db", db).returncode == 2
    r = sable(env, "admin", "create", "--introspect-only", "--org", "acme", "--authority-db", db)
    assert r.returncode == 0, r.stderr
    credential = r.stdout.strip()
    listed = sable(env, "admin", "list", "--authority-db", db).stdout
    assert "introspect-only (acme)" in listed and credential not in listed

    def post(path, data, content_type):
        req = urllib.request.Request(dev["a"] + path, data, {"Authorization": f"Bearer {credential}",
                                                             "Content-Type": content_type})
        try:
            with urllib.request.urlopen(req) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    pt = sable({**env, "SABLE_ADMIN_TOKEN": dev["admin"]}, "token", "create", "--org", "acme").stdout.strip()
    status, body = post("/v1/introspect", urllib.parse.urlencode({"token": pt}).encode(),
                        "application/x-www-form-urlencoded")
    assert (status, body) == (200, {"active": False})  # no discharge: inactive, but the credential was accepted
    status, body = post("/v1/orgs", b'{"name": "x"}', "application/json")
    assert status == 403 and "introspect" in body["message"]
    reader_id = next(line.split()[0] for line in listed.splitlines() if "introspect-only" in line)
    assert sable(env, "admin", "revoke", reader_id, "--authority-db", db).returncode == 0
    status, _ = post("/v1/introspect", urllib.parse.urlencode({"token": pt}).encode(),
                     "application/x-www-form-urlencoded")
    assert status == 401
