"""Admin commands over the services' APIs: orgs, users, permission tokens."""

from __future__ import annotations

import sys
import time

import click

from clients import caveats, tokens
from clients.cli.acting import acting
from clients.cli.common import (
    DURATION,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    authority,
    discharger,
    emit,
    fail,
    handle_errors,
    run,
)
from clients.cli.holder import caveat_options, caveats_from
from clients.errors import SableAPIError
from clients.scope import summary


@click.group()
def org():
    """Orgs (admin)."""


@org.command("create")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def org_create(name, as_json):
    """Create org NAME at the authority (admin)."""
    async def go():
        async with authority() as a:
            return await a.create_org(name)
    out = run(go())
    emit(out, as_json, f"created org {out['name']}")


@org.command("policy")
@click.argument("name")
@click.option("--require-idp", metavar="PROVIDER", help="Discharges for the org need a session made through this "
              "identity provider (as configured at the discharger).")
@click.option("--no-require-idp", is_flag=True, help="Drop the identity provider requirement.")
@click.option("--require-mfa/--no-require-mfa", default=None,
              help="Discharges for the org need a session made with a second factor (or a provider).")
@click.option("--max-token-lifetime", type=DURATION, metavar="DURATION",
              help="The longest a new token of the org may live (held by the authority): 90d, 12h...")
@click.option("--no-max-token-lifetime", is_flag=True, help="Drop the lifetime limit.")
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def org_policy(name, require_idp, no_require_idp, require_mfa, max_token_lifetime, no_max_token_lifetime, as_json):
    """Show or change org NAME's policies: how members sign in (the discharger) and how long
    its tokens may live (the authority)."""
    if require_idp and no_require_idp:
        fail("--require-idp and --no-require-idp contradict each other", EXIT_USAGE)
    if max_token_lifetime is not None and no_max_token_lifetime:
        fail("--max-token-lifetime and --no-max-token-lifetime contradict each other", EXIT_USAGE)
    sign_in_change = require_idp is not None or no_require_idp or require_mfa is not None
    lifetime_change = max_token_lifetime is not None or no_max_token_lifetime

    async def go():
        out: dict = {}
        if sign_in_change or not lifetime_change:
            async with discharger() as d:
                current = await d.org_policy(name)
                if sign_in_change:
                    idp = None if no_require_idp else (require_idp or current["require_idp"])
                    mfa = current["require_mfa"] if require_mfa is None else require_mfa
                    current = await d.set_org_policy(name, idp, mfa)
                out.update(current)
        if lifetime_change or not sign_in_change:
            async with authority() as a:
                if lifetime_change:
                    held = await a.set_org_lifetime(name, None if no_max_token_lifetime else max_token_lifetime)
                else:
                    held = await a.org_lifetime(name)
                out["max_token_lifetime"] = held["max_token_lifetime"]
        return out
    out = run(go())
    lines = []
    if "require_mfa" in out:
        said = [f"identity provider {out['require_idp']}" if out["require_idp"] else None,
                "a second factor" if out["require_mfa"] else None]
        needs = " and ".join(x for x in said if x)
        lines.append(f"org {name}: sign-ins need {needs}" if needs else f"org {name}: no sign-in policy")
    if "max_token_lifetime" in out:
        limit = out["max_token_lifetime"]
        lines.append(f"org {name}: new tokens live at most {limit} s" if limit else
                     f"org {name}: no token lifetime limit")
    emit(out, as_json, "\n".join(lines))


@org.command("list")
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def org_list(as_json):
    """List the authority's orgs (admin)."""
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
@click.option("--idp", metavar="NAME", help="No password: the user signs in through this identity provider, "
              "linked at first sign-in when its username claim is NAME.")
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def user_create(name, orgs, password_stdin, idp, as_json):
    """Create user NAME at the discharger, as a member of each --org (admin)."""
    password = None
    if idp is not None and password_stdin:
        fail("--idp makes a user without a password: leave out --password-stdin", EXIT_USAGE)
    if idp is None and password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    elif idp is None:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)

    async def go():
        await _check_orgs(orgs)
        async with discharger() as d:
            return await d.create_user(name, password, list(orgs), idp=idp)
    out = run(go())
    emit(out, as_json, f"created user {out['username']} in {', '.join(out['orgs']) or 'no org'}")


def _show(u: dict) -> str:
    orgs = ", ".join(f"{o} ({r})" for o, r in u["roles"].items()) or "no org"
    return f"{u['username']}: {orgs}" + (" [disabled]" if u.get("disabled") else "")


async def _check_orgs(orgs) -> None:
    """An org that does not exist at the authority is an error (SPEC §12)."""
    if not orgs:
        return
    async with authority() as a:
        try:
            known = {o["name"] for o in await a.list_orgs()}
        except SableAPIError as e:
            if e.status not in (401, 403):
                raise
            fail(f"cannot check the orgs at the authority: it refused the admin credential ({e.message}). Each "
                 "service has its own: set SABLE_AUTHORITY_ADMIN_TOKEN and SABLE_DISCHARGER_ADMIN_TOKEN")
    missing = sorted(set(orgs) - known)
    if missing:
        fail(f"no such org: {', '.join(missing)} (create it first: sable org create NAME)", EXIT_USAGE)


@user.command("link")
@click.argument("name")
@click.option("--idp", required=True, metavar="NAME", help="The identity provider (as configured at the discharger).")
@click.option("--sub", required=True, help="The user's subject (`sub`) at that provider.")
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def user_link(name, idp, sub, as_json):
    """Link user NAME to an identity at a provider: signing in there then signs in as NAME."""
    async def go():
        async with discharger() as d:
            return await d.link_identity(name, idp, sub)
    out = run(go())
    emit(out, as_json, f"linked {name} to {sub} at {idp}")


@user.group("mfa")
def user_mfa():
    """A user's second factors (admin)."""


@user_mfa.command("reset")
@click.argument("name")
@handle_errors
def user_mfa_reset(name):
    """Remove all of NAME's second factors (their authenticator app and recovery codes)."""
    async def go():
        async with discharger() as d:
            return await d.reset_factors(name)
    out = run(go())
    click.echo(f"removed the second factors of {name}" if out["removed"] else f"{name} had no second factor")


@user.command("orgs")
@click.argument("name")
@click.option("--set", "set_", metavar="O,..", help="Replace the memberships with these orgs (role member).")
@click.option("--add", metavar="O", help="Add a membership (or change its role).")
@click.option("--remove", metavar="O", help="Remove a membership.")
@click.option("--role", type=click.Choice(["member", "admin"]), default="member", show_default=True,
              help="The role --add gives.")
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def user_orgs(name, set_, add, remove, role, as_json):
    """Show NAME's orgs and roles; change them with --set, --add or --remove."""
    if sum(x is not None for x in (set_, add, remove)) > 1:
        fail("give one of --set, --add, --remove", EXIT_USAGE)

    async def go():
        async with discharger() as d:
            current = await d.get_user(name)
            if set_ is None and add is None and remove is None:
                return current
            roles = dict(current["roles"])
            if set_ is not None:
                wanted = [o.strip() for o in set_.split(",") if o.strip()]
                await _check_orgs(wanted)
                roles = {o: roles.get(o, "member") for o in wanted}
            elif add is not None:
                await _check_orgs([add])
                roles[add] = role
            elif remove not in roles:
                fail(f"{name} is not a member of {remove}", EXIT_USAGE)
            else:
                del roles[remove]
            await d.set_orgs(name, [{"org": o, "role": r} for o, r in roles.items()])
            return await d.get_user(name)
    out = run(go())
    emit(out, as_json, _show(out))


@user.command("list")
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def user_list(as_json):
    """Every user, with orgs, roles and whether disabled."""
    async def go():
        async with discharger() as d:
            return await d.list_users()
    out = run(go())
    emit(out, as_json, "\n".join(_show(u) for u in out) or "no users")


@user.command("enable")
@click.argument("name")
@handle_errors
def user_enable(name):
    """Let a disabled user log in again (their revoked tokens stay revoked)."""
    async def go():
        async with discharger() as d:
            return await d.enable_user(name)
    run(go())
    click.echo(f"enabled user {name}")


@user.command("passwd")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="Read the new password from stdin instead of prompting.")
@handle_errors
def user_passwd(name, password_stdin):
    """Set NAME's password; their sessions end."""
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("New password", hide_input=True, confirmation_prompt=True)

    async def go():
        async with discharger() as d:
            return await d.set_password(name, password)
    run(go())
    click.echo(f"changed the password of {name}; their sessions ended")


async def revoke_tokens_of(who: str, name: str) -> list[str]:
    """After disabling `who` at the discharger: revoke every token `name` made or holds. If
    the authority refuses or cannot be reached, say what was done and what to run again."""
    try:
        async with authority() as a:
            return await a.revoke_user(name)
    except SableAPIError as e:
        fail(f"disabled {who}, but revoking their tokens failed: {e.message}; "
             f"run `sable token revoke --user {name}` again", EXIT_UNAVAILABLE)


@user.command("disable")
@click.argument("name")
@click.option("--revoke-tokens", is_flag=True, help="Then revoke every token NAME made or holds, with cascade.")
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def user_disable(name, revoke_tokens, as_json):
    """Disable NAME: no more logins or discharges. With --revoke-tokens, offboard completely."""
    async def go():
        async with discharger() as d:
            await d.disable_user(name)
        return await revoke_tokens_of(f"user {name}", name) if revoke_tokens else None
    revoked = run(go())
    emit({"username": name, "disabled": True, "revoked": revoked or []}, as_json,
         f"disabled user {name}" + (f"; revoked {len(revoked)} tokens" if revoke_tokens else ""))


@click.group()
def token():
    """Permission tokens: with SABLE_ADMIN_TOKEN as the admin, else as the logged-in user."""


@token.command("create")
@click.option("--org", help="The org (may be left out when you belong to one).")
@click.option("--name", help="A label for the token.")
@caveat_options
@click.option("--for", "principal", metavar="ci:NAME",
              help="Seal it for a service principal: only that principal's CI identity can discharge it.")
@click.option("--strip-once/--no-strip-once", default=None,
              help="Let each discharge strip it once (default: on with --for, off without).")
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def token_create(org, name, as_json, expires_in, principal, strip_once, **options):
    """Mint a permission token. --expires-in sets its lifetime (default 30d)."""
    given = caveats_from(expires_in=None, **options)

    async def go():
        client, chosen = await acting(org)
        async with client as a:
            return await a.mint(chosen, given, name=name, expires_in=expires_in, principal=principal,
                                strip_once=strip_once)
    out = run(go())
    emit(out, as_json, out["token"])
    if not as_json:
        click.echo(f"scope: {scope(out['caveats'])}", err=True)


LETTERS = {"r": "read", "w": "write", "c": "create", "d": "delete", "C": "control"}


def scope(caveat_texts: list[str]) -> str:
    """What a token allows, in words, so a broad default is noticed (no --actions: all of them)."""
    found = dict(text.split(" ", 1) for text in caveat_texts if " " in text)
    actions = found.get("actions", "rwcdC")
    words = "+".join(LETTERS[ch] for ch in actions if ch in LETTERS)
    parts = [f"org {found.get('org', '?')}", f"apps {found.get('apps', 'any')}",
             f"actions {actions} ({words}{', all of them' if 'actions' not in found else ''})"]
    for name in ("hosts", "instances"):
        if name in found:
            parts.append(f"{name} {found[name]}")
    parts.append(f"expires {found.get('expires', 'never')}")
    return "; ".join(parts)


def _state(t: dict, now: float) -> str:
    if t["revoked_at"]:
        return "revoked"
    if t.get("expires_at") and caveats.parse_time(t["expires_at"]) <= now:
        return "expired"
    return "active"


@token.command("list")
@click.option("--org", help="The org (may be left out when you belong to one).")
@click.option("--active", is_flag=True, help="Only tokens that are neither revoked nor expired.")
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def token_list(org, active, as_json):
    """List an org's tokens."""
    async def go():
        client, chosen = await acting(org)
        async with client as a:
            return await a.list_tokens(chosen)
    out = run(go())
    now = time.time()
    if active:
        out = [t for t in out if _state(t, now) == "active"]
    if as_json:
        emit(out, True)
        return
    rows = [("ID", "KIND", "NAME", "SCOPE", "CREATED BY", "CREATED", "EXPIRES", "LAST USED", "STATE")]
    rows += [(t["id"], t["kind"], t["name"] or "-", summary(t.get("caveats")), t.get("created_by") or "-",
              t["created_at"], t.get("expires_at") or "never", t["last_used_at"] or "never", _state(t, now))
             for t in out]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        click.echo("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip())


@token.command("show")
@click.argument("token_id")
@click.option("--org", help="As a user: the org of the token (may be left out when you belong to one).")
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def token_show(token_id, org, as_json):
    """Show one token by its ID: what it allows, who made it, its state."""
    if token_id.startswith(tokens.MACAROON_PREFIXES):
        fail("`sable token show` takes a token id; to see what a token says, use `sable inspect TOKEN`", EXIT_USAGE)

    async def go():
        client, _ = await acting(org, need_org=False)
        async with client as a:
            return await a.show_token(token_id)
    t = run(go())
    if as_json:
        emit(t, True)
        return
    fields = [("id", t["id"]), ("kind", t["kind"]), ("name", t["name"] or "-"), ("org", t["org"]),
              ("scope", scope(t["caveats"]) if t.get("caveats") is not None else "?"),
              ("caveats", ", ".join(t["caveats"]) if t.get("caveats") else "-"), ("parent", t["parent"] or "-"),
              ("user", t["user"] or "-"), ("created by", t.get("created_by") or "-"), ("created", t["created_at"]),
              ("expires", t.get("expires_at") or "never"), ("last used", t["last_used_at"] or "never"),
              ("state", _state(t, time.time()) + (f" (revoked {t['revoked_at']})" if t["revoked_at"] else ""))]
    if t["kind"] == "permission":  # who may discharge it, and how often each discharge strips it (SPEC §16)
        fields[8:8] = [("for", t.get("for") or "members of the org"),
                       ("strips", "once per discharge" if t.get("strip_once") else "any number of times")]
    for name, value in fields:
        click.echo(f"{name + ':':<12}{value}")


@token.command("revoke")
@click.argument("token_ids", nargs=-1)
@click.option("--user", "username", help="Instead of ids: every token this user made or holds (admin).")
@click.option("--org", help="As a user: the org of the tokens (may be left out when you belong to one).")
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def token_revoke(token_ids, username, org, as_json):
    """Revoke tokens by id (or --user), with everything stripped or derived from them."""
    if bool(token_ids) == bool(username):
        fail("give token ids, or --user NAME", EXIT_USAGE)
    if username:
        async def everyone():
            async with authority() as a:
                return await a.revoke_user(username)
        out = run(everyone())
        emit({"revoked": out}, as_json, "\n".join(f"revoked {i}" for i in out) or "nothing to revoke")
        return
    for token_id in token_ids:
        if token_id.startswith(tokens.MACAROON_PREFIXES):
            fail("`sable token revoke` takes token ids; to revoke a token by its value, use `sable revoke TOKEN`",
                 EXIT_USAGE)

    async def go():
        client, _ = await acting(org, need_org=False)
        async with client as a:
            return [i for token_id in token_ids for i in await a.revoke_id(token_id)]
    out = run(go())
    emit({"revoked": out}, as_json, "\n".join(f"revoked {i}" for i in out) or "already revoked")


@token.command("regenerate")
@click.argument("token_id")
@click.option("--org", help="As a user: the org of the token (may be left out when you belong to one).")
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def token_regenerate(token_id, org, as_json):
    """Replace permission token TOKEN_ID by a new one with the same name, caveats and lifetime
    length; TOKEN_ID is revoked with everything stripped from it. Prints the new token once."""
    if token_id.startswith(tokens.MACAROON_PREFIXES):
        fail("`sable token regenerate` takes a token id (sable token list shows them), not a token", EXIT_USAGE)

    async def go():
        client, _ = await acting(org, need_org=False)
        async with client as a:
            return await a.regenerate(token_id)
    out = run(go())
    emit(out, as_json, f"{out['token']}\n" + f"(new id {out['id']}; revoked {len(out['revoked'])}: "
                                              f"{', '.join(out['revoked'])})")


@click.group()
def webhook():
    """Signed webhooks for an org's token events (admin, or an org's admin)."""


@webhook.command("create")
@click.option("--org", help="The org whose events are sent (may be left out when you belong to one).")
@click.option("--url", required=True, help="Where to POST them (https; Standard Webhooks format).")
@click.option("--events", required=True, metavar="E,...",
              help="Event types: token.created, token.revoked, token.leaked, token.expiring, user.disabled, "
                   "user.removed_from_org, principal.disabled.")
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def webhook_create(org, url, events, as_json):
    """Send an org's events to URL; prints the signing secret once."""
    wanted = [e.strip() for e in events.split(",") if e.strip()]

    async def go():
        client, chosen = await acting(org)
        async with client as a:
            return await a.create_webhook(chosen, url, wanted)
    out = run(go())
    emit(out, as_json, f"created webhook {out['id']} for {', '.join(out['events'])}\n"
                       f"signing secret (shown once; receivers verify with it): {out['secret']}")


@webhook.command("list")
@click.option("--org", help="Only this org's endpoints (as an org's admin: your org).")
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def webhook_list(org, as_json):
    """List endpoints: id, URL, events, state and deliveries pending."""
    async def go():
        client, chosen = await acting(org, need_org=False)
        async with client as a:
            return await a.list_webhooks(chosen)
    out = run(go())
    listed = [{k: w[k] for k in ("id", "url", "events", "state", "pending")} for w in out]
    emit(listed, as_json, "\n".join(f"{w['id']}  {w['state']:8}  pending {w['pending']:<5} {w['url']}  "
                                     f"{','.join(w['events'])}" for w in listed) or "no webhooks")


@webhook.command("remove")
@click.argument("webhook_id")
@click.option("--org", help="As an org's admin: the org (may be left out when you belong to one).")
@handle_errors
def webhook_remove(webhook_id, org):
    """Remove endpoint WEBHOOK_ID and the deliveries queued for it."""
    async def go():
        client, _ = await acting(org, need_org=False)
        async with client as a:
            return await a.remove_webhook(webhook_id)
    run(go())
    click.echo(f"removed webhook {webhook_id}")


@webhook.command("test")
@click.argument("webhook_id")
@click.option("--org", help="As an org's admin: the org (may be left out when you belong to one).")
@handle_errors
def webhook_test(webhook_id, org):
    """Send a webhook.test event to WEBHOOK_ID now; prints delivered or failed."""
    async def go():
        client, _ = await acting(org, need_org=False)
        async with client as a:
            return await a.test_webhook(webhook_id)
    result = run(go())
    click.echo(result)
    if result != "delivered":
        sys.exit(1)
