"""Offboarding from the CLI (SPEC §12) against `sable dev`: `user disable --revoke-tokens`
disables first, then revokes; `token revoke --user`; a failed second step exits 3 and says
what was done."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from tests.support import SABLE, free_port

pytestmark = pytest.mark.slow


def sable(env, *args, stdin=None):
    return subprocess.run([SABLE, *args], env=env, input=stdin, capture_output=True, text=True, timeout=60)


def test_disable_with_revoke_tokens(dev, tmp_path):
    base = {k: v for k, v in os.environ.items() if not k.startswith("SABLE_")}
    alice = {**base, "SABLE_AUTHORITY_URL": dev["a"], "SABLE_DISCHARGER_URL": dev["d"],
             "XDG_CONFIG_HOME": str(tmp_path / "cfg")}
    admin = {**alice, "SABLE_ADMIN_TOKEN": dev["admin"]}
    assert sable(alice, "login", "-u", "alice", "--password-stdin", stdin=dev["password"] + "\n").returncode == 0
    mine = json.loads(sable(alice, "token", "create", "--json").stdout)
    st = json.loads(sable(alice, "strip", mine["token"], "--json").stdout)
    keep = json.loads(sable(admin, "token", "create", "--org", "acme", "--json").stdout)

    r = sable({**admin, "SABLE_AUTHORITY_URL": f"http://127.0.0.1:{free_port()}"}, "user", "disable", "alice",
              "--revoke-tokens")
    assert r.returncode == 3, r.stderr
    assert "disabled user alice, but revoking their tokens failed" in r.stderr and "token revoke --user alice" in r.stderr
    r = sable(alice, "token", "list")
    assert r.returncode == 1  # disabled: her session no longer works

    r = sable(admin, "token", "revoke", "--user", "alice", "--json")
    assert r.returncode == 0, r.stderr
    assert sorted(json.loads(r.stdout)["revoked"]) == sorted([mine["id"], st["id"]])
    r = sable(admin, "user", "disable", "alice", "--revoke-tokens", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["revoked"] == []
    listed = json.loads(sable(admin, "token", "list", "--org", "acme", "--active", "--json").stdout)
    assert [t["id"] for t in listed] == [keep["id"]]
    r = sable(admin, "token", "list", "--org", "nope")
    assert r.returncode == 1 and "does not exist" in r.stderr
    r = sable(admin, "token", "revoke")
    assert r.returncode == 2 and "--user" in r.stderr
