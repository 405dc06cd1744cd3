"""The whole CI path (SPEC §16): `examples/ci/`'s GitHub Actions workflow and GitLab job run
as written against `sable dev`, with the CI's OpenID issuer and the GitHub runner's token
endpoint played by tests/support/ci_issuer.py. Only the install step is left out (the CLI
under test is on PATH) and the URLs of the example deployment are swapped for `sable dev`'s.
The admin's one-time set-up is the one the examples' comments give, with the test issuer."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.support import SABLE
from tests.support.ci_issuer import RUNNER_BEARER, Issuer, github_claims, gitlab_claims

EXAMPLES = Path(__file__).parents[2] / "examples" / "ci"
EXAMPLE_URLS = {"https://tokens.example.com": "a", "https://login.example.com": "d"}


@pytest.fixture
def issuer():
    it = Issuer()
    it.start()
    yield it
    it.stop()


def sable(env, *args):
    return subprocess.run([SABLE, *args], env=env, capture_output=True, text=True, timeout=60)


def _urls(text: str, dev: dict) -> str:
    for url, key in EXAMPLE_URLS.items():
        text = text.replace(url, dev[key])
    return text


def setup_commands(example: str, issuer_url: str, ids: dict[str, str]) -> list[list[str]]:
    """The `sable ...` set-up lines from an example's comments, with the test issuer and ids."""
    text = (EXAMPLES / example).read_text()
    joined = re.sub(r"\\\n#\s*", " ", text)
    lines = [line.lstrip("# ").strip() for line in joined.splitlines() if line.startswith("#   sable ")]
    out = []
    for line in lines:
        line = line.replace("https://token.actions.githubusercontent.com", issuer_url).replace("https://gitlab.com",
                                                                                              issuer_url)
        for old, new in ids.items():
            line = line.replace(old, new)
        out.append(line.split()[1:])
    return out


@pytest.fixture
def admin_env(dev):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SABLE_")}
    env.update(XDG_CONFIG_HOME=str(dev["config_home"]), SABLE_ADMIN_TOKEN=dev["admin"],
               SABLE_AUTHORITY_URL=dev["a"], SABLE_DISCHARGER_URL=dev["d"])
    return env


def run_github_job(dev, issuer, secret: str, workdir: Path, run_id: str) -> list[subprocess.CompletedProcess]:
    workflow = yaml.safe_load((EXAMPLES / "github-actions.yml").read_text())
    job = workflow["jobs"]["deploy"]
    base = {k: v for k, v in os.environ.items() if not k.startswith("SABLE_")}
    base.update({k: _urls(str(v), dev) for k, v in job["env"].items()})
    base.update(XDG_CONFIG_HOME=str(workdir / "cfg"), GITHUB_RUN_ID=run_id,
                ACTIONS_ID_TOKEN_REQUEST_URL=issuer.runner_url, ACTIONS_ID_TOKEN_REQUEST_TOKEN=RUNNER_BEARER,
                PATH=f"{Path(SABLE).parent}:{os.environ['PATH']}")
    done = []
    for step in job["steps"]:
        if "run" not in step or step["name"].startswith("Install"):
            continue
        env = dict(base)
        for k, v in step.get("env", {}).items():
            env[k] = secret if v == "${{ secrets.SABLE_PERMISSION_TOKEN }}" else v
        result = subprocess.run(["bash", "-e", "-c", step["run"]], env=env, cwd=workdir, capture_output=True,
                                text=True, timeout=120)
        done.append(result)
        if result.returncode:
            break
    return done


def test_the_github_actions_example_deploys_with_a_token_for_a_principal(dev, issuer, admin_env, tmp_path):
    for args in setup_commands("github-actions.yml", issuer.url, {"123456789": "812345"}):
        r = sable(admin_env, *args)
        assert r.returncode == 0, (args, r.stderr)
    secret = r.stdout.strip()
    assert secret.startswith("sable_pt_")
    shown = sable(admin_env, "token", "show", sable(admin_env, "inspect", secret, "--field", "id").stdout.strip()).stdout
    assert "for:        ci:deploy-web" in shown and "strips:     once per discharge" in shown
    # the permission token alone is inert: no session, no CI identity
    assert sable({**admin_env, "SABLE_ADMIN_TOKEN": ""}, "verify", secret, "--org", "acme", "--action", "w",
                 "--app", "web").returncode == 1

    work = tmp_path / "job"
    work.mkdir()
    steps = run_github_job(dev, issuer, secret, work, "6000000001")
    assert [s.returncode for s in steps] == [0, 0], [s.stderr for s in steps]
    assert "allowed" in steps[-1].stdout.lower()
    host_token = (work / "web-1.token").read_text().strip()
    assert sable(admin_env, "verify", host_token, "--org", "acme", "--action", "w", "--app", "web",
                 "--host", "web-2").returncode == 1  # bound to web-1

    # the next run gets a new ID token and a new discharge: it works too
    assert [s.returncode for s in run_github_job(dev, issuer, secret, work, "6000000002")] == [0, 0]
    listed = json.loads(sable(admin_env, "token", "list", "--org", "acme", "--json").stdout)
    service = [t for t in listed if t["kind"] == "service"]
    assert sorted(t["name"] for t in service) == ["deploy-web-6000000001", "deploy-web-6000000002"]
    assert {t["created_by"] for t in service} == {"ci:deploy-web"} and {t["user"] for t in service} == {"ci:deploy-web"}

    # a stolen ID token is good for one discharge, the first
    stolen = issuer.sign(github_claims(), audience=dev["d"])
    env = {**admin_env, "SABLE_ADMIN_TOKEN": "", "STOLEN": stolen}
    assert sable(env, "discharge", secret, "--id-token-env", "STOLEN").returncode == 0
    again = sable(env, "discharge", secret, "--id-token-env", "STOLEN")
    assert again.returncode == 1 and "used already" in again.stderr

    # offboarding a person leaves the principal's tokens; disabling the principal ends them
    r = sable(admin_env, "user", "disable", "alice", "--revoke-tokens")
    assert r.returncode == 0
    assert sable(admin_env, "verify", host_token, "--org", "acme", "--action", "w", "--app", "web",
                 "--host", "web-1").returncode == 0
    r = sable(admin_env, "principal", "disable", "ci:deploy-web", "--revoke-tokens", "--json")
    assert r.returncode == 0 and len(json.loads(r.stdout)["revoked"]) == 2, r.stderr
    steps = run_github_job(dev, issuer, secret, work, "6000000003")
    assert steps[-1].returncode == 1 and "no trust policy" in steps[-1].stderr


def test_the_gitlab_example_deploys_too(dev, issuer, admin_env, tmp_path):
    for args in setup_commands("gitlab-ci.yml", issuer.url, {}):
        r = sable(admin_env, *args)
        assert r.returncode == 0, (args, r.stderr)
    secret = r.stdout.strip()
    job = yaml.safe_load((EXAMPLES / "gitlab-ci.yml").read_text())["deploy-web"]
    audience = _urls(job["id_tokens"]["SABLE_ID_TOKEN"]["aud"], dev)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SABLE_")}
    env.update({k: _urls(v, dev) for k, v in job["variables"].items()})
    env.update(XDG_CONFIG_HOME=str(tmp_path / "cfg"), CI_PIPELINE_ID="1212", SABLE_PERMISSION_TOKEN=secret,
               SABLE_ID_TOKEN=issuer.sign(gitlab_claims(), audience=audience, alg="ES256"),
               PATH=f"{Path(SABLE).parent}:{os.environ['PATH']}")
    for line in job["script"]:
        result = subprocess.run(["bash", "-e", "-c", line], env=env, cwd=tmp_path, capture_output=True, text=True,
                                timeout=120)
        assert result.returncode == 0, (line, result.stderr)
    assert "allowed" in result.stdout.lower()
    # an unprotected branch's job is not trusted (ref_protected must be "true")
    env["SABLE_ID_TOKEN"] = issuer.sign({**gitlab_claims(), "ref_protected": "false"}, audience=audience)
    line = job["script"][0]
    result = subprocess.run(["bash", "-e", "-c", line], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and "no trust policy" in result.stderr


def test_the_runner_token_command_explains_what_is_missing(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SABLE_", "ACTIONS_"))}
    env["XDG_CONFIG_HOME"] = str(tmp_path)
    r = sable(env, "ci", "id-token", "--github")
    assert r.returncode == 2 and "id-token: write" in r.stderr
    r = sable({**env, "ACTIONS_ID_TOKEN_REQUEST_URL": "http://127.0.0.1:9/x",
               "ACTIONS_ID_TOKEN_REQUEST_TOKEN": "runner-secret-value"}, "ci", "id-token", "--github")
    assert r.returncode == 3 and "runner-secret-value" not in r.stderr
    r = sable({**env, "E": ""}, "discharge", "sable_pt_x", "--id-token-env", "E")
    assert r.returncode == 2
