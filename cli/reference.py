"""docs/CLI.md, written from the commands themselves so it cannot drift from them:

    .venv/bin/python -m cli.reference > docs/CLI.md

`tests/cli/test_reference.py` fails when the file and the commands differ."""

from __future__ import annotations

import click

from cli.main import COMMANDS, main

HEADER = """# The `sable` command line

Generated from the commands by `python -m cli.reference`; each section is that
command's `--help`. Exit codes: 0 success, 1 denied or failed, 2 usage or input error, 3 a
service unreachable or unavailable (worth retrying).
"""


def _sections(command: click.Command, path: list[str]) -> list[str]:
    # The help option names `sable` gives every command (-h and --help), set here as well: click
    # caches a command's help option from the first context it sees, so leaving them to chance
    # made the text depend on which command ran first in the process.
    ctx = click.Context(command, info_name=" ".join(path), terminal_width=100, max_content_width=100,
                        help_option_names=["-h", "--help"])
    out = [f"## `{' '.join(path)}`\n\n```\n{command.get_help(ctx)}\n```\n"]
    if isinstance(command, click.Group):
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            if sub is not None and not sub.hidden:
                out += _sections(sub, [*path, name])
    return out


def render() -> str:
    parts = [HEADER, *_sections(main, ["sable"])[:1]]
    for name in sorted(COMMANDS):
        parts += _sections(main.get_command(click.Context(main), name), ["sable", name])  # type: ignore[arg-type]
    return "\n".join(parts)


if __name__ == "__main__":
    print(render(), end="")
