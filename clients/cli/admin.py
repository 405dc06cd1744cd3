"""Admin commands over the services' APIs: orgs, users, permission tokens."""

from __future__ import annotations

import sys

import click

from clients.cli.common import authority, discharger, emit, handle_errors, run
from clients.cli.holder import caveat_options, caveats_from


@click.group()
def org():
    """Orgs (admin)."""


@org.command("create")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def org_create(name, as_json):
    async def go():
        async with authority() as a:
            return await a.create_org(name)
    out = run(go())
    emit(out, as_json, f"created org {out['name']}")


@org.command("list")
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def org_list(as_json):
    async def go():
        async with authority() as a:
            return await a.list_orgs()
    out = run(go())
    emit(out, as_json, "\n".join(o["name"] for o in out))


@click.group()
def user():
    """Users at the discharger (admin)."""


@user.command("create")
@click.argument("name")
@click.option("--org", "orgs", multiple=True, help="An org the user belongs to (repeatable).")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin instead of prompting.")
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def user_create(name, orgs, password_stdin, as_json):
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)

    async def go():
        async with discharger() as d:
            return await d.create_user(name, password, list(orgs))
    out = run(go())
    emit(out, as_json, f"created user {out['username']} in {', '.join(out['orgs']) or 'no org'}")


@user.command("orgs")
@click.argument("name")
@click.option("--org", "orgs", multiple=True, help="The user's orgs, replacing the current ones.")
@handle_errors
def user_orgs(name, orgs):
    async def go():
        async with discharger() as d:
            return await d.set_orgs(name, list(orgs))
    out = run(go())
    click.echo(f"{out['username']}: {', '.join(out['orgs']) or 'no org'}")


@user.command("disable")
@click.argument("name")
@handle_errors
def user_disable(name):
    async def go():
        async with discharger() as d:
            return await d.disable_user(name)
    run(go())
    click.echo(f"disabled user {name}")


@click.group()
def token():
    """Permission tokens (admin)."""


@token.command("create")
@click.option("--org", required=True)
@click.option("--name", help="A label for the token.")
@caveat_options
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def token_create(org, name, as_json, expires_in, **options):
    """Mint a permission token. --expires-in sets its lifetime (default 30d)."""
    given = caveats_from(expires_in=None, **options)

    async def go():
        async with authority() as a:
            return await a.mint(org, given, name=name, expires_in=expires_in)
    out = run(go())
    emit(out, as_json, out["token"])


@token.command("list")
@click.option("--org", required=True)
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def token_list(org, as_json):
    async def go():
        async with authority() as a:
            return await a.list_tokens(org)
    out = run(go())
    if as_json:
        emit(out, True)
        return
    for t in out:
        state = f"revoked {t['revoked_at']}" if t["revoked_at"] else "active"
        click.echo(f"{t['id']}  {t['kind']:<10} {state:<28} parent={t['parent'] or '-'} user={t['user'] or '-'}"
                   f" last_used={t['last_used_at'] or '-'} name={t['name'] or '-'}")


@token.command("revoke")
@click.argument("token_id")
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def token_revoke(token_id, as_json):
    """Revoke a token by id, with everything stripped or derived from it."""
    async def go():
        async with authority() as a:
            return await a.revoke_id(token_id)
    out = run(go())
    emit({"revoked": out}, as_json, "\n".join(f"revoked {i}" for i in out) or "already revoked")


COMMANDS = [org, user, token]
