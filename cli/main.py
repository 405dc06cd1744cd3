"""The `sable` command line (SPEC §6, §12): its entry point and the registry of commands.

Every command is imported only when it runs: holder and admin commands from `clients.cli`,
the commands that run or change services (`authority`, `discharger`, `dev`, `dev-env`,
`admin`, `db`) from this package, one module a group. So offline commands (`inspect`,
`attenuate`, `--help`, `--version`) start without aiohttp or the services.
`tests/cli/test_reference.py` checks the short help here against each command's own.
"""

from __future__ import annotations

import importlib

import click

from clients import __version__

# name -> (module, attribute, the short help `sable --help` shows)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "admin": ("cli.admin", "admin", "Admin credentials and master keys."),
    "attenuate": ("clients.cli.holder", "attenuate", "Print a narrower TOKEN (offline)."),
    "completion": ("clients.cli.completion", "completion", "Print the shell completion script for bash, zsh or fish."),
    "ci": ("clients.cli.principals", "ci", "Helpers for CI jobs."),
    "context": ("clients.cli.contexts", "context", "Named deployments, each with its own URLs and session."),
    "authority": ("cli.serve", "authority", "The authority service."),
    "db": ("cli.db", "db", "A service's database: schema status and upgrades."),
    "dev": ("cli.dev", "dev", "Run both services locally (SQLite under the data dir, or..."),
    "dev-env": ("cli.dev", "dev_env", "Print shell exports for talking to `sable dev`: eval..."),
    "discharge": ("clients.cli.holder", "discharge", "Print a discharge for TOKEN's authentication caveat,..."),
    "discharger": ("cli.serve", "discharger", "The discharger service."),
    "inspect": ("clients.cli.holder", "inspect", "Show what TOKEN says about itself (offline JSON, never a..."),
    "keygen": ("clients.cli.holder", "keygen", "Make an Ed25519 key for DPoP proofs (offline); prints its..."),
    "login": ("clients.cli.holder", "login", "Log in to the discharger and keep the session (mode 0600)."),
    "logout": ("clients.cli.holder", "logout", "End the discharger session and forget it."),
    "org": ("clients.cli.admin", "org", "Orgs (admin)."),
    "principal": ("clients.cli.principals", "principal", "Service principals (ci:NAME) and the CI identities they..."),
    "revoke": ("clients.cli.holder", "revoke", "Revoke TOKEN by value: the whole token, or only this..."),
    "strip": ("clients.cli.holder", "strip", "Trade a permission token (plus a fresh discharge) for a..."),
    "token": ("clients.cli.admin", "token", "Permission tokens: with SABLE_ADMIN_TOKEN as the admin,..."),
    "user": ("clients.cli.admin", "user", "Users at the discharger (admin)."),
    "verifier": ("cli.serve", "verifier", "The verifier process: cached checks for gateways and..."),
    "verify": ("clients.cli.holder", "verify", "Ask the authority whether TOKEN (and its discharges)..."),
    "webhook": ("clients.cli.admin", "webhook", "Signed webhooks for an org's token events (admin, or an..."),
    "whoami": ("clients.cli.holder", "whoami", "Who the stored session is: user, orgs and roles, how it..."),
}


class Sable(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module, attribute, _ = COMMANDS[name]
        return getattr(importlib.import_module(module), attribute)

    def resolve_command(self, ctx: click.Context, args: list[str]):
        """A mistyped command names the one meant (`sable tokn` -> did you mean `token`?)."""
        name = args[0] if args else None
        if name is not None and not name.startswith("-") and name not in COMMANDS:
            import difflib

            close = difflib.get_close_matches(name, list(COMMANDS), n=1, cutoff=0.6)
            hint = f" Did you mean `sable {close[0]}`?" if close else ""
            ctx.fail(f"No such command '{name}'.{hint}")
        return super().resolve_command(ctx, args)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, short) for name, (_, _, short) in sorted(COMMANDS.items())])


@click.group(cls=Sable, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="sable")
@click.option("--context", "context_name", metavar="NAME", help="Use context NAME (else SABLE_CONTEXT, else the current one).")
@click.option("--authority-url", metavar="URL", help="The authority (else SABLE_AUTHORITY_URL, else the context's).")
@click.option("--discharger-url", metavar="URL", help="The discharger (else SABLE_DISCHARGER_URL, else the context's).")
def main(context_name, authority_url, discharger_url):
    """Sable: a macaroon token authority.

    Where the services are: --authority-url and --discharger-url, else SABLE_AUTHORITY_URL and
    SABLE_DISCHARGER_URL, else the context's (sable context), else 127.0.0.1:8700 and :8701.
    Admin credentials: SABLE_AUTHORITY_ADMIN_TOKEN and SABLE_DISCHARGER_ADMIN_TOKEN, each
    falling back to SABLE_ADMIN_TOKEN.
    Token arguments take the token itself, - for stdin, or @FILE.
    Exit codes: 0 success, 1 denied or failed, 2 usage or input error, 3 a service unreachable
    or unavailable (worth retrying).
    """
    from clients.cli.common import FLAGS

    FLAGS.update(context=context_name, authority=authority_url, discharger=discharger_url)


if __name__ == "__main__":
    main()
