"""`sable context add|use|list|remove` and `whoami` (SPEC §19), against two real `sable dev`
stacks: a session per context (switching never sends one deployment's session to the other),
and the precedence flag > SABLE_*_URL > --context / SABLE_CONTEXT > the current context."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from tests.support import SABLE
from tests.support.devstack import running_dev

pytestmark = pytest.mark.slow


def sable(env, *args, stdin=None):
    return subprocess.run([SABLE, *args], env=env, input=stdin, capture_output=True, text=True, timeout=60)


@pytest.fixture
def two(tmp_path):
    with running_dev(tmp_path / "s", tmp_path / "s.log", tmp_path / "s-cfg") as staging, \
            running_dev(tmp_path / "p", tmp_path / "p.log", tmp_path / "p-cfg") as prod:
        yield staging, prod


def test_contexts_keep_a_session_each(two, tmp_path):
    staging, prod = two
    env = {k: v for k, v in os.environ.items() if not k.startswith("SABLE_")}
    env["XDG_CONFIG_HOME"] = str(tmp_path / "cfg")
    r = sable(env, "context", "list")
    assert r.returncode == 0 and "no contexts" in r.stdout
    r = sable(env, "context", "add", "staging", "--authority", staging["a"], "--discharger", staging["d"])
    assert r.returncode == 0 and "now the current one" in r.stderr
    assert sable(env, "context", "add", "prod", "--authority", prod["a"], "--discharger", prod["d"]).returncode == 0
    assert sable(env, "context", "add", "bad name!", "--authority", prod["a"], "--discharger", prod["d"]).returncode == 2
    r = sable(env, "context", "add", "x", "--authority", "http://u:p@example.com", "--discharger", prod["d"])
    assert r.returncode == 2 and "u:p" not in r.stderr

    def login(password, *flags):
        r = sable(env, *flags, "login", "-u", "alice", "--password-stdin", stdin=password + "\n")
        assert r.returncode == 0, r.stderr

    login(staging["password"])  # the current context: staging
    login(prod["password"], "--context", "prod")
    me = json.loads(sable(env, "whoami", "--json").stdout)
    assert (me["context"], me["discharger_url"]) == ("staging", staging["d"])
    me = json.loads(sable({**env, "SABLE_CONTEXT": "prod"}, "whoami", "--json").stdout)
    assert (me["context"], me["discharger_url"]) == ("prod", prod["d"])
    assert "(context prod)" in sable(env, "--context", "prod", "whoami").stdout

    # Tokens through each context's own session and authority, switching back and forth.
    for name in ("staging", "prod", "staging"):
        assert sable(env, "context", "use", name).returncode == 0
        r = sable(env, "token", "create", "--name", f"in-{name}", "--json")
        assert r.returncode == 0, r.stderr
        listed = sable(env, "token", "list", "--json")
        assert listed.returncode == 0, listed.stderr
        names = {t["name"] for t in json.loads(listed.stdout)}
        assert f"in-{name}" in names and names <= {"in-staging", "in-prod", None}
        assert ("in-prod" in names) == (name == "prod")

    rows = json.loads(sable(env, "context", "list", "--json").stdout)
    assert [(r["name"], r["current"]) for r in rows] == [("prod", False), ("staging", True)]

    # Precedence: the flag beats the environment, which beats the context.
    r = sable({**env, "SABLE_AUTHORITY_URL": "http://127.0.0.1:9"}, "token", "list")
    assert r.returncode == 3  # the environment's (unreachable) authority, not the context's
    r = sable({**env, "SABLE_AUTHORITY_URL": "http://127.0.0.1:9"}, "--authority-url", staging["a"], "token", "list")
    assert r.returncode == 0, r.stderr

    assert sable(env, "context", "use", "nope").returncode == 2
    r = sable(env, "--context", "nope", "whoami")
    assert r.returncode == 2 and "no context 'nope'" in r.stderr
    assert sable(env, "context", "remove", "prod").returncode == 0
    assert not (tmp_path / "cfg" / "sable" / "contexts" / "prod").exists()
    assert sable(env, "--context", "prod", "whoami").returncode == 2
    assert os.stat(tmp_path / "cfg" / "sable" / "contexts.json").st_mode & 0o077 == 0
