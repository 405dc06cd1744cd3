"""Commands for token holders: log in, discharge, strip, attenuate, inspect, verify, revoke."""

from __future__ import annotations

import base64
import json
import os
import re
import sys
import time

import click

from clients import caveats, offline, tokens
from clients.cli.common import (
    DURATION,
    EXIT_DENIED,
    EXIT_USAGE,
    authority,
    discharger,
    emit,
    fail,
    handle_errors,
    load_session,
    read_token,
    run,
    session_path,
    write_private,
)
from clients.errors import CaveatError, SableAPIError


@click.command()
@click.option("--username", "-u", help="Your username at the discharger (prompted for if needed).")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin instead of prompting.")
@click.option("--web", is_flag=True, help="Sign in with a browser instead of a password (device login).")
@click.option("--no-browser", is_flag=True, help="With --web: only print the URL and code.")
@click.option("--totp", metavar="CODE", help="A code from your authenticator app (or a recovery code), if your "
              "account has one; asked for when needed otherwise.")
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def login(username, password_stdin, web, no_browser, totp, as_json):
    """Log in to the discharger and keep the session (mode 0600)."""
    if web:
        url, out = run(_device_login(not no_browser))
        username = out["username"]
    else:
        if password_stdin and not username:
            fail("--password-stdin needs -u/--username", EXIT_USAGE)
        username = username or click.prompt("Username")
        if password_stdin:
            password = sys.stdin.readline().rstrip("\r\n")
        else:
            password = click.prompt("Password", hide_input=True)

        async def go(code):
            async with discharger() as d:
                return d.base_url, await d.login(username, password, code)

        try:
            url, out = run(go(totp))
        except SableAPIError as e:
            if e.reason != "mfa_required" or password_stdin or not sys.stdin.isatty():
                raise  # says what is needed; --totp gives it without a prompt
            url, out = run(go(click.prompt("Code from your authenticator app (or a recovery code)")))
    write_private(session_path(), {"discharger_url": url, "username": username,
                                   "session": out["session"], "expires_at": out["expires_at"]})
    emit({"username": username, "expires_at": out["expires_at"]}, as_json)
    click.echo(f"logged in as {username} until {out['expires_at']}", err=True)


def _can_open_browser() -> bool:
    """Only where a graphical browser is likely: a terminal-only host would get a text
    browser taking over the terminal."""
    return sys.platform in ("darwin", "win32") or bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


async def _device_login(open_browser: bool) -> tuple[str, dict]:
    """RFC 8628: show the URL and code, then poll until the user approves in a browser."""
    import asyncio
    import socket
    import webbrowser

    async with discharger() as d:
        grant = await d.device_authorize(f"sable CLI on {socket.gethostname()}"[:64])
        click.echo(f"To sign in, open {grant['verification_uri']}\nand enter the code {grant['user_code']}\n"
                   f"(or open {grant['verification_uri_complete']})", err=True)
        if open_browser and _can_open_browser():
            webbrowser.open(grant["verification_uri_complete"])
        click.echo(f"Waiting for the approval in the browser (the code expires in {grant['expires_in'] // 60} min; "
                   "Ctrl-C to give up)...", err=True)
        interval, deadline = grant["interval"], time.monotonic() + grant["expires_in"]
        while time.monotonic() < deadline:
            await asyncio.sleep(interval)
            try:
                return d.base_url, await d.device_token(grant["device_code"])
            except SableAPIError as e:
                if e.code == "authorization_pending":
                    continue
                if e.code == "slow_down":
                    interval += 5
                    continue
                if e.code == "access_denied":
                    fail("the sign-in was denied in the browser", EXIT_DENIED)
                if e.code in ("expired_token", "invalid_grant"):
                    fail("the code expired before it was approved; run `sable login --web` again", EXIT_DENIED)
                raise
        fail("the code expired before it was approved; run `sable login --web` again", EXIT_DENIED)
    raise AssertionError("unreachable")


@click.command()
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def logout(as_json):
    """End the discharger session and forget it."""
    path = session_path()
    if not path.exists():
        emit({"logged_out": False}, as_json)
        click.echo("not logged in", err=True)
        return
    data = load_session()

    async def go():
        async with discharger(data.get("discharger_url")) as d:
            await d.logout(data["session"])

    try:
        run(go())
    finally:
        path.unlink(missing_ok=True)
    emit({"logged_out": True}, as_json)
    click.echo("logged out", err=True)


@click.command()
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def whoami(as_json):
    """Who the stored session is: user, orgs and roles, how it signed in, until when."""
    data = load_session()

    async def go():
        async with discharger(data.get("discharger_url")) as d:
            return d.base_url, await d.current_session(data["session"])

    from clients.cli.contexts import active

    url, out = run(go())
    context = active()
    out = {**out, "discharger_url": url, "context": context.name if context else None}
    roles = ", ".join(f"{o} ({r})" for o, r in out["roles"].items()) or "no org"
    where = f" (context {context.name})" if context else ""
    emit(out, as_json, f"{out['username']} at {url}{where}: {roles}; signed in with {out['auth_method']}, "
                       f"until {out['expires_at']}")


async def _bound_discharge(token: str, id_token: str | None = None) -> str:
    """Get a discharge for the token's authentication caveat, bound to it: through the session,
    or, given a CI's ID token, for the service principal the token is sealed for (SPEC §16)."""
    tok = tokens.parse(token, (tokens.PERMISSION,))
    third = [c for c in tok.caveats if c.third_party]
    if len(third) != 1:
        fail("the token must carry exactly one authentication caveat", EXIT_USAGE)
    ticket = base64.urlsafe_b64encode(third[0].cid).decode().rstrip("=")
    if id_token is not None:
        async with discharger() as d:  # the configured discharger: an ID token goes nowhere a token names
            out = await d.discharge_with_id_token(ticket, id_token)
    else:
        data = load_session()
        async with discharger(data.get("discharger_url")) as d:
            out = await d.discharge(data["session"], ticket)
    return offline.bind(tok, out["discharge"])


def id_token_options(fn):
    for option in reversed([
        click.option("--id-token-env", metavar="VAR", help="Discharge with the CI's ID token in environment variable "
                                                           "VAR (a token sealed for a service principal; no login)."),
        click.option("--id-token-file", metavar="FILE", type=click.Path(dir_okay=False),
                     help="Likewise, with the ID token read from FILE."),
    ]):
        fn = option(fn)
    return fn


def _id_token(env: str | None, path: str | None) -> str | None:
    """The ID token named by --id-token-env or --id-token-file, or None for neither."""
    if env and path:
        fail("give one of --id-token-env and --id-token-file", EXIT_USAGE)
    if env:
        value = os.environ.get(env, "").strip()
        if not value:
            fail(f"environment variable {env} is empty or not set (in GitHub Actions: "
                 f"{env}=$(sable ci id-token --github))", EXIT_USAGE)
        return value
    if path:
        try:
            with open(path) as f:
                value = f.read().strip()
        except OSError as e:
            fail(f"cannot read {path}: {e.strerror}", EXIT_USAGE)
        if not value:
            fail(f"{path} is empty", EXIT_USAGE)
        return value
    return None


@click.command()
@click.argument("token")
@id_token_options
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def discharge(token, id_token_env, id_token_file, as_json):
    """Print a discharge for TOKEN's authentication caveat, bound to TOKEN."""
    out = run(_bound_discharge(read_token(token), _id_token(id_token_env, id_token_file)))
    emit({"discharge": out}, as_json, out)


@click.command()
@click.argument("token")
@click.option("--name", help="A label for the service token.")
@click.option("--expires-in", type=DURATION, help="Give the service token an expiry (default: none).")
@id_token_options
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def strip(token, name, expires_in, id_token_env, id_token_file, as_json):
    """Trade a permission token (plus a fresh discharge) for a service token."""
    token = read_token(token)
    tokens.parse(token, (tokens.PERMISSION,))
    id_token = _id_token(id_token_env, id_token_file)

    async def go():
        dt = await _bound_discharge(token, id_token)
        async with authority() as a:
            return await a.strip(token, dt, name=name, expires_in=expires_in)

    out = run(go())
    emit(out, as_json, out["token"])


def caveat_options(fn):
    for opt in reversed([
        click.option("--apps", help="Comma-separated apps the token may be used for (default: any)."),
        click.option("--actions", help="Letters it allows: r read, w write, c create, d delete, C control "
                                       "(default: all five)."),
        click.option("--hosts", help="Comma-separated hosts it may be used from (default: any)."),
        click.option("--instances", help="Comma-separated instances it may be used from (default: any)."),
        click.option("--expires-in", type=DURATION, help="Expire after 90s, 15m, 12h, 30d..."),
        click.option("--caveat", "extra", multiple=True, help="Any caveat text, e.g. 'not-before 2026-12-01T00:00:00Z'."),
    ]):
        fn = opt(fn)
    return fn


def caveats_from(apps, actions, hosts, instances, expires_in, extra) -> list[str]:
    out = []
    for name, value in (("apps", apps), ("actions", actions), ("hosts", hosts), ("instances", instances)):
        if value is not None:
            text = f"{name} {','.join(v.strip() for v in value.split(','))}"
            try:
                caveats.parse_strict(text)
            except CaveatError as e:
                fail(f"--{name} {value!r}: {e}", EXIT_USAGE)
            out.append(text)
    if expires_in is not None:
        out.append(f"expires {caveats.format_time(int(time.time()) + expires_in)}")
    out.extend(extra)
    for text in out:
        caveats.parse_strict(text)  # checked offline, before anything is signed or sent
    return out


@click.command()
@click.argument("token")
@caveat_options
@click.option("--bind-key", metavar="FILE|THUMBPRINT",
              help="Bind the token to a key (cnf-jkt): it is then accepted only with a DPoP proof made with "
                   "that key. A public key file (host.key.pub), the private key file, or its thumbprint.")
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def attenuate(token, as_json, bind_key, **options):
    """Print a narrower TOKEN (offline)."""
    added = caveats_from(**options)
    if bind_key is not None:
        from clients.pop import jkt_of

        added.append(f"cnf-jkt {jkt_of(bind_key)}")
    if not added:
        fail("give at least one caveat to add", EXIT_USAGE)
    out = offline.attenuate(read_token(token), added)
    emit({"token": out, "added": added}, as_json, out)


@click.command()
@click.argument("token")
@click.option("--field", type=click.Choice(["kind", "id", "location"]), help="Print only this field.")
@handle_errors
def inspect(token, field):
    """Show what TOKEN says about itself (offline JSON, never a secret)."""
    info = offline.inspect(read_token(token))
    click.echo(info.get(field) if field else json.dumps(info, indent=2))


@click.command()
@click.argument("tokens_", metavar="TOKEN...", nargs=-1, required=True)
@click.option("--org", required=True)
@click.option("--action", required=True, help="What the request does: r read, w write, c create, d delete, C control.")
@click.option("--app", help="The app the request is for.")
@click.option("--host", help="The host the request comes from.")
@click.option("--instance", help="The instance the request comes from.")
@click.option("--user", help="The user the request acts for.")
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def verify(tokens_, org, action, app, host, instance, user, as_json):
    """Ask the authority whether TOKEN (and its discharges) allow the access."""
    presented = []
    for arg in tokens_:
        presented.extend(tokens.split_presentation(read_token(arg)))
    for text in presented:
        tokens.parse(text)  # a malformed token is an input error (exit 2), caught before any request
    access = {k: v for k, v in dict(org=org, action=action, app=app, host=host, instance=instance, user=user).items()
              if v is not None}
    try:
        caveats.Access.from_dict(access)
    except CaveatError as e:  # name the flag, not the API field
        fail(re.sub(r"access\.(\w+)", r"--\1", str(e)), EXIT_USAGE)

    async def go():
        async with authority() as a:
            return await a.verify(presented, access)

    out = run(go())
    emit(out, as_json)
    if out.get("allowed"):
        if not as_json:
            click.echo(f"allowed: {out['kind']} token {out['id']}" + (f" (user {out['user']})" if out.get("user") else ""))
        return
    if not as_json:
        click.echo(f"denied: {out.get('message')}", err=True)
    sys.exit(EXIT_DENIED)


@click.command()
@click.argument("token")
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def revoke(token, as_json):
    """Revoke TOKEN by value: the whole token, or only this attenuation of it."""
    token = read_token(token)
    if re.fullmatch(r"[0-9a-f]{32}", token):
        fail("that is a token id; to revoke by id, use `sable token revoke ID`", EXIT_USAGE)
    tokens.parse(token, (tokens.PERMISSION, tokens.SERVICE))

    async def go():
        async with authority() as a:
            return await a.revoke(token)

    out = run(go())
    emit({"revoked": out}, as_json)
    if not as_json:
        if not out:
            click.echo("already revoked", err=True)
        for r in out:
            click.echo(f"revoked {r['scope']} of {r['id']}")


@click.command()
@click.option("--out", required=True, type=click.Path(dir_okay=False),
              help="The private key file to write (PKCS#8 PEM, mode 0600); the public JWK goes to FILE.pub.")
@handle_errors
def keygen(out):
    """Make an Ed25519 key for DPoP proofs (offline); prints its JWK and thumbprint."""
    from clients.pop import keygen as make_key

    click.echo(json.dumps(make_key(out), indent=2))
