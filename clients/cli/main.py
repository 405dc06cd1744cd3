"""The `sable` command line (SPEC §6).

Holder and admin commands live in this package. The commands that run services
(`authority`, `discharger`, `dev`, `dev-env`, `admin`, `db`) live in `server.cli` and are imported
only when one of them is invoked, so the client side never loads server code.
"""

from __future__ import annotations

import importlib

import click

from clients.cli import admin, holder

SERVER_COMMANDS = {  # name -> attribute of server.cli
    "admin": "admin",
    "db": "db",
    "authority": "authority",
    "dev": "dev",
    "dev-env": "dev_env",
    "discharger": "discharger",
}


class Sable(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *SERVER_COMMANDS})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in SERVER_COMMANDS:
            return getattr(importlib.import_module("server.cli"), SERVER_COMMANDS[name])
        return super().get_command(ctx, name)


@click.group(cls=Sable, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option("0.1.0", prog_name="sable")
def main():
    """Sable: a macaroon token authority.

    Settings come from SABLE_AUTHORITY_URL, SABLE_DISCHARGER_URL and SABLE_ADMIN_TOKEN.
    Token arguments take the token itself, - for stdin, or @FILE.
    Exit codes: 0 success, 1 denied or failed, 2 usage or input error.
    """


for command in [*admin.COMMANDS, holder.login, holder.logout, holder.discharge, holder.strip,
                holder.attenuate, holder.inspect, holder.verify, holder.revoke]:
    main.add_command(command)


if __name__ == "__main__":
    main()
