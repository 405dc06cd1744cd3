"""`sable completion bash|zsh|fish`: click's completion script for the shell, so commands,
options and choices complete with Tab."""

from __future__ import annotations

import click

INSTALL = {
    "bash": 'eval "$(sable completion bash)"   # in ~/.bashrc',
    "zsh": 'eval "$(sable completion zsh)"    # in ~/.zshrc',
    "fish": "sable completion fish > ~/.config/fish/completions/sable.fish",
}


@click.command()
@click.argument("shell", type=click.Choice(sorted(INSTALL)))
def completion(shell):
    """Print the shell completion script for bash, zsh or fish.

    \b
    bash: eval "$(sable completion bash)"   (in ~/.bashrc)
    zsh:  eval "$(sable completion zsh)"    (in ~/.zshrc)
    fish: sable completion fish > ~/.config/fish/completions/sable.fish
    """
    from click.shell_completion import get_completion_class

    root = click.get_current_context().find_root().command  # `sable`, whatever imported it
    cls = get_completion_class(shell)
    assert cls is not None  # click ships all three
    click.echo(cls(root, {}, "sable", "_SABLE_COMPLETE").source())
