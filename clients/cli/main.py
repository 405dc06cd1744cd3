"""The `sable` command line (SPEC §6)."""

from __future__ import annotations

import click

from clients.cli import admin, holder, serve


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option("0.1.0", prog_name="sable")
def main():
    """Sable: a macaroon token authority.

    Settings come from SABLE_AUTHORITY_URL, SABLE_DISCHARGER_URL and SABLE_ADMIN_TOKEN.
    Token arguments take the token itself, - for stdin, or @FILE.
    Exit codes: 0 success, 1 denied or failed, 2 usage or input error.
    """


for command in [*serve.COMMANDS, *admin.COMMANDS, holder.login, holder.logout, holder.discharge, holder.strip,
                holder.attenuate, holder.inspect, holder.verify, holder.revoke]:
    main.add_command(command)


if __name__ == "__main__":
    main()
