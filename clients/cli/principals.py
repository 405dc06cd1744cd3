"""Commands for machine identity (SPEC §16): service principals and their trust policies
(admin, at the discharger), and `sable ci id-token`, which a CI job runs to get its identity."""

from __future__ import annotations

import json
import os
from urllib.parse import urlencode

import click

from clients.caveats import parse_duration
from clients.cli.admin import revoke_tokens_of
from clients.cli.common import (
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    discharger,
    discharger_url,
    emit,
    fail,
    handle_errors,
    run,
)


def _show(p: dict) -> str:
    state = " (disabled)" if p["disabled"] else ""
    lines = [f"{p['name']}  org {p['org']}  role {p['role']}{state}"]
    for t in p["policies"]:
        claims = " ".join(f"{k}={v}" for k, v in t["claims"].items())
        audience = f" audience {t['audience']}" if t["audience"] else ""
        lines.append(f"  policy {t['id']}: issuer {t['issuer']}{audience} max-age {t['max_age']}s {claims}")
    if not p["policies"]:
        lines.append("  no trust policy: nothing can discharge for it yet (sable principal trust)")
    return "\n".join(lines)


@click.group()
def principal():
    """Service principals (ci:NAME) and the CI identities they trust (admin)."""


@principal.command("create")
@click.argument("org")
@click.argument("name")
@click.option("--role", type=click.Choice(["member", "admin"]), default="member", show_default=True)
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def principal_create(org, name, role, as_json):
    """Make ci:NAME, a non-human member of ORG (no password, no session)."""
    async def go():
        async with discharger() as d:
            return await d.create_principal(org, name, role)
    out = run(go())
    emit(out, as_json, f"created {out['name']} in org {out['org']} as {out['role']}; "
                       f"next: sable principal trust {out['name']} --issuer URL --claim KEY=VALUE")


@principal.command("list")
@click.option("--org", help="Only this org's.")
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def principal_list(org, as_json):
    """Every service principal, with its trust policies."""
    async def go():
        async with discharger() as d:
            return await d.list_principals(org)
    out = run(go())
    emit(out, as_json, "\n".join(_show(p) for p in out) or "no principals")


@principal.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def principal_show(name, as_json):
    """One principal and its trust policies."""
    async def go():
        async with discharger() as d:
            return await d.get_principal(name)
    out = run(go())
    emit(out, as_json, _show(out))


@principal.command("trust")
@click.argument("name")
@click.option("--issuer", required=True, help="The CI's OpenID issuer, e.g. https://token.actions.githubusercontent.com")
@click.option("--audience", help="The audience its tokens must name (default: the discharger's public URL).")
@click.option("--claim", "claims", multiple=True, required=True, metavar="KEY=VALUE",
              help="A claim that must match: exactly, or as a prefix when VALUE ends in /* or :*. Repeatable.")
@click.option("--max-age", default="10m", show_default=True, help="How old (since iat) a token may be: 90s, 10m...")
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def principal_trust(name, issuer, audience, claims, max_age, as_json):
    """Let ID tokens from ISSUER whose claims all match discharge for NAME."""
    wanted = {}
    for pair in claims:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            fail(f"--claim {pair!r}: give KEY=VALUE", EXIT_USAGE)
        wanted[key] = value
    seconds = parse_duration(max_age)
    if seconds is None:
        fail("--max-age must be a duration: 90s, 10m, 1h", EXIT_USAGE)

    async def go():
        async with discharger() as d:
            return await d.trust(name, issuer, wanted, audience=audience, max_age=seconds)
    out = run(go())
    emit(out, as_json, f"policy {out['id']}: {name} trusts {out['issuer']} tokens whose claims match")


@principal.command("untrust")
@click.argument("name")
@click.argument("policy_id")
@handle_errors
def principal_untrust(name, policy_id):
    """Remove one trust policy (its id is in `sable principal show`)."""
    async def go():
        async with discharger() as d:
            await d.untrust(name, policy_id)
    run(go())
    click.echo(f"removed policy {policy_id} of {name}")


@principal.command("disable")
@click.argument("name")
@click.option("--revoke-tokens", is_flag=True, help="Then revoke every token NAME stripped, with cascade.")
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def principal_disable(name, revoke_tokens, as_json):
    """Stop NAME: its CI identity discharges nothing until `enable`."""
    async def go():
        async with discharger() as d:
            found = await d.set_principal_disabled(name, True)
        return found, (await revoke_tokens_of(found["name"], found["name"]) if revoke_tokens else [])
    found, revoked = run(go())
    emit({**found, "revoked": revoked}, as_json,
         f"disabled {found['name']}" + (f"; revoked {len(revoked)} tokens" if revoke_tokens else ""))


@principal.command("enable")
@click.argument("name")
@handle_errors
def principal_enable(name):
    """Let a disabled principal discharge again (its revoked tokens stay revoked)."""
    async def go():
        async with discharger() as d:
            return await d.set_principal_disabled(name, False)
    out = run(go())
    click.echo(f"enabled {out['name']}")


@principal.command("remove")
@click.argument("name")
@handle_errors
def principal_remove(name):
    """Delete NAME and its trust policies (the tokens it stripped stay until revoked)."""
    async def go():
        async with discharger() as d:
            await d.remove_principal(name)
    run(go())
    click.echo(f"removed {name}")


@click.group()
def ci():
    """Helpers for CI jobs."""


@ci.command("id-token")
@click.option("--github", is_flag=True, required=True, help="Ask the GitHub Actions runner (needs `permissions: id-token: write`).")
@click.option("--audience", help="The audience to ask for (default: the discharger's URL).")
@handle_errors
def ci_id_token(github, audience):
    """Print this CI job's OpenID Connect ID token, for --id-token-env."""
    url, bearer = os.environ.get("ACTIONS_ID_TOKEN_REQUEST_URL"), os.environ.get("ACTIONS_ID_TOKEN_REQUEST_TOKEN")
    if not url or not bearer:
        fail("ACTIONS_ID_TOKEN_REQUEST_URL and _TOKEN are not set: run this in a GitHub Actions job "
             "with `permissions: id-token: write`", EXIT_USAGE)
    click.echo(run(_github_token(url, bearer, audience or discharger_url())))


async def _github_token(url: str, bearer: str, audience: str) -> str:
    import aiohttp

    try:
        # The runner's URL carries a query already (api-version): audience is added to it.
        asked = url + ("&" if "?" in url else "?") + urlencode({"audience": audience})
        async with aiohttp.ClientSession() as http, http.get(
                asked, headers={"Authorization": f"Bearer {bearer}"}, timeout=aiohttp.ClientTimeout(total=10)) as resp:
            text = await resp.text()
            status = resp.status
    except (TimeoutError, aiohttp.ClientError, OSError) as e:
        fail(f"cannot reach the runner's token endpoint: {type(e).__name__}", EXIT_UNAVAILABLE)
    try:
        value = json.loads(text).get("value") if status == 200 else None
    except (ValueError, AttributeError):
        value = None
    if not isinstance(value, str) or not value:
        fail(f"the runner's token endpoint answered {status} without a token", EXIT_UNAVAILABLE if status >= 500 else 1)
    return value
