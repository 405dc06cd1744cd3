"""The CLI's documentation cannot drift (SPEC §12): `sable --help` lists each command with its
own short help (kept in `cli/main.py` so listing imports nothing), every command has
help text, and docs/CLI.md is what `python -m cli.reference` writes."""

from __future__ import annotations

import importlib
from pathlib import Path

import click
import pytest

from cli import reference
from cli.main import COMMANDS, main

DOC = Path(__file__).resolve().parents[2] / "docs" / "CLI.md"


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_listed_short_help_is_the_commands_own(name):
    module, attribute, short = COMMANDS[name]
    command = getattr(importlib.import_module(module), attribute)
    assert short == command.get_short_help_str(limit=60)


def _all(command: click.Command, path: str):
    yield path, command
    if isinstance(command, click.Group):
        ctx = click.Context(command)
        for name in command.list_commands(ctx):
            yield from _all(command.get_command(ctx, name), f"{path} {name}")


def test_every_command_has_help_text():
    missing = [path for path, cmd in _all(main, "sable") if not (cmd.help or "").strip()]
    assert missing == []


def test_docs_cli_md_is_current():
    assert DOC.read_text() == reference.render(), "run: .venv/bin/python -m cli.reference > docs/CLI.md"


def test_data_commands_take_json():
    import json

    from click.testing import CliRunner

    from authority.minting import build
    from authority.root_keys import RootKeys
    from clients import tokens

    token = build(RootKeys(bytes(32)), tokens.SERVICE, "http://a", "ab" * 16, ["org acme"])[0].encode()
    r = CliRunner().invoke(main, ["attenuate", token, "--hosts", "worker-7", "--json"])
    assert r.exit_code == 0 and json.loads(r.output)["added"] == ["hosts worker-7"]
    r = CliRunner(env={"XDG_CONFIG_HOME": "/nonexistent-sable-test"}).invoke(main, ["logout", "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["logged_out"] is False
