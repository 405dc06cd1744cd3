"""Offline commands start fast (SPEC §9: `inspect`, `attenuate`, `--help`, `--version` in
≤ 150 ms, held by `benchmarks/cli_start.py`). What keeps them fast is what they do not import:
no service code, no HTTP client, no event loop, no file helpers. This guards that, untimed."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from authority.minting import build
from authority.root_keys import RootKeys
from clients import tokens
from tests.support import SABLE

HEAVY = ("aiohttp", "asyncio", "clients.sdk", "server", "authority", "discharger", "nacl", "pathlib", "tempfile",
         "opentelemetry", "joserfc", "cryptography")

PROBE = """
import json, sys
from cli.main import main
heavy = json.loads(sys.argv[2])
sys.argv = ["sable", *json.loads(sys.argv[1])]
try:
    main()
except SystemExit:
    pass
print(json.dumps(sorted(m for m in sys.modules if m in heavy or m.split(".")[0] in heavy)), file=sys.stderr)
"""


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["inspect", "TOKEN"],
                                  ["attenuate", "TOKEN", "--hosts", "worker-7"],
                                  ["attenuate", "TOKEN", "--bind-key", "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"]])
def test_offline_commands_load_nothing_heavy(args):
    token = build(RootKeys(bytes(32)), tokens.SERVICE, "http://a", "ab" * 16, ["org acme"])[0].encode()
    argv = [a.replace("TOKEN", token) for a in args]
    r = subprocess.run([sys.executable, "-c", PROBE, json.dumps(argv), json.dumps(HEAVY)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stderr.strip().splitlines()[-1]) == []
    if args[0] in ("inspect", "attenuate"):
        assert r.stdout.strip()  # and they did their work


def test_a_mistyped_command_names_the_one_meant():
    from click.testing import CliRunner

    from cli.main import main

    r = CliRunner().invoke(main, ["tokn", "list"])
    assert r.exit_code == 2 and "No such command 'tokn'. Did you mean `sable token`?" in r.output
    r = CliRunner().invoke(main, ["zzzzzz"])
    assert r.exit_code == 2 and "No such command 'zzzzzz'." in r.output and "Did you mean" not in r.output


def test_keygen_into_a_missing_folder_says_so(tmp_path):
    from click.testing import CliRunner

    from cli.main import main

    r = CliRunner().invoke(main, ["keygen", "--out", str(tmp_path / "nope" / "host.key")])
    assert r.exit_code == 2 and "is not a folder: create it first" in r.output and "Traceback" not in r.output


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_scripts_complete_commands_and_options(shell):
    """`sable completion SHELL` prints click's script; the completions it asks for are real."""
    r = subprocess.run([SABLE, "completion", shell], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and "_SABLE_COMPLETE" in r.stdout
    if shell == "bash":  # the script loads in a real bash and registers itself
        loaded = subprocess.run(["bash", "-c", f'eval "$({SABLE} completion bash)"; complete -p sable'],
                                capture_output=True, text=True, timeout=30)
        assert loaded.returncode == 0 and "_sable_completion" in loaded.stdout, loaded.stderr
    env = {**os.environ, "_SABLE_COMPLETE": "bash_complete", "COMP_WORDS": "sable con", "COMP_CWORD": "1"}
    asked = subprocess.run([SABLE], env=env, capture_output=True, text=True, timeout=30)
    assert "plain,context" in asked.stdout.splitlines()
    env.update(COMP_WORDS="sable token li", COMP_CWORD="2")
    assert "plain,list" in subprocess.run([SABLE], env=env, capture_output=True, text=True, timeout=30).stdout
    bad = subprocess.run([SABLE, "completion", "tcsh"], capture_output=True, text=True, timeout=30)
    assert bad.returncode == 2


def test_the_version_is_the_changelog_newest():
    """One version everywhere (SPEC §19): `sable --version`, the package, the newest CHANGELOG entry."""
    import re
    from importlib.metadata import version
    from pathlib import Path

    from clients import __version__

    changelog = (Path(__file__).parents[2] / "CHANGELOG.md").read_text()
    newest = re.search(r"^## (\d+\.\d+\.\d+)", changelog, re.M)
    assert newest and newest.group(1) == __version__
    r = subprocess.run([SABLE, "--version"], capture_output=True, text=True, timeout=30)
    assert r.stdout.strip() == f"sable, version {__version__}"
    assert version("sable") == __version__  # the installed package (reinstall after a bump)
