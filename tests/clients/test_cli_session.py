"""`sable token create|list|revoke` without SABLE_ADMIN_TOKEN (SPEC §11): the CLI acts as the
logged-in user through a user token and its discharge, against `sable dev`."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from tests.support import SABLE

pytestmark = pytest.mark.slow


def sable(env, *args, stdin=None):
    return subprocess.run([SABLE, *args], env=env, input=stdin, capture_output=True, text=True, timeout=60)


def test_member_manages_tokens_through_the_session(dev, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SABLE_")}
    env.update(SABLE_AUTHORITY_URL=dev["a"], SABLE_DISCHARGER_URL=dev["d"], XDG_CONFIG_HOME=str(tmp_path / "cfg"))
    r = sable(env, "token", "list")
    assert r.returncode == 1 and "sable login" in r.stderr
    assert sable(env, "login", "-u", "alice", "--password-stdin", stdin=dev["password"] + "\n").returncode == 0
    r = sable(env, "token", "create", "--name", "mine", "--apps", "orders", "--json")  # --org: alice has one
    assert r.returncode == 0, r.stderr
    mine = json.loads(r.stdout)
    r = sable(env, "token", "list")
    assert r.returncode == 0, r.stderr
    header, *rows = r.stdout.splitlines()
    assert header.split() == ["ID", "KIND", "NAME", "SCOPE", "CREATED", "BY", "CREATED", "EXPIRES", "LAST", "USED",
                              "STATE"]
    assert any(mine["id"] in row and "alice" in row and row.endswith("active") for row in rows)
    assert any(mine["id"] in row and "apps=orders actions=*" in row for row in rows)  # SPEC §19: a scope column
    # `sable token show ID`: one token, what it allows (SPEC §19)
    r = sable(env, "token", "show", mine["id"])
    assert r.returncode == 0, r.stderr
    assert f"id:         {mine['id']}" in r.stdout and "apps orders" in r.stdout and "state:      active" in r.stdout
    assert "apps orders" in json.loads(sable(env, "token", "show", mine["id"], "--json").stdout)["caveats"]
    r = sable(env, "token", "show", "0" * 32)
    assert r.returncode == 1 and "no token with that id" in r.stderr
    r = sable(env, "token", "show", mine["token"])
    assert r.returncode == 2 and "sable inspect" in r.stderr
    cache = tmp_path / "cfg" / "sable" / "user-tokens.json"
    assert os.stat(cache).st_mode & 0o077 == 0
    # A token made with the admin credential is not alice's to revoke (she is a member).
    admin_env = {**env, "SABLE_ADMIN_TOKEN": dev["admin"]}
    theirs = json.loads(sable(admin_env, "token", "create", "--org", "acme", "--json").stdout)
    r = sable(env, "token", "revoke", theirs["id"])
    assert r.returncode == 1 and "admin" in r.stderr
    r = sable(env, "token", "revoke", mine["id"])
    assert r.returncode == 0 and f"revoked {mine['id']}" in r.stdout
    r = sable(env, "token", "list", "--active", "--json")
    assert [t["id"] for t in json.loads(r.stdout)] == [theirs["id"]]
    r = sable(env, "token", "list", "--org", "beta")
    assert r.returncode == 1 and "not a member of org 'beta'" in r.stderr
    r = sable(env, "token", "revoke", mine["token"] if "token" in mine else "sable_pt_x")
    assert r.returncode == 2 and "sable revoke" in r.stderr


def test_create_says_what_a_token_allows_and_names_the_flag_at_fault(dev, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SABLE_")}
    env.update(SABLE_AUTHORITY_URL=dev["a"], SABLE_DISCHARGER_URL=dev["d"], SABLE_ADMIN_TOKEN=dev["admin"],
               XDG_CONFIG_HOME=str(tmp_path / "cfg"))
    r = sable(env, "token", "create", "--org", "acme")
    assert r.returncode == 0, r.stderr
    assert "actions rwcdC (read+write+create+delete+control, all of them)" in r.stderr and "apps any" in r.stderr
    r = sable(env, "token", "create", "--org", "acme", "--apps", "orders, billing", "--actions", "r")
    assert r.returncode == 0 and "apps orders,billing" in r.stderr and "actions r (read)" in r.stderr
    r = sable(env, "token", "create", "--org", "acme", "--actions", "rx")
    assert r.returncode == 2 and "--actions 'rx'" in r.stderr
    r = sable(env, "token", "create", "--org", "acme", "--expires-in", "100000d")
    assert r.returncode == 2 and "--expires-in" in r.stderr and "365d" in r.stderr
    r = sable(env, "token", "create", "--help")
    text = " ".join(r.stdout.split())  # help wraps with the widest option
    assert "C control" in text and "default: all five" in text
