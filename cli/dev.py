"""`sable dev` and `sable dev-env`: both services locally on embedded SQLite (or a given
PostgreSQL), org acme and user alice, and the shell settings to talk to them."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import sys
from pathlib import Path

import click
import nacl.utils

from cli.discharger_keys import open_keys
from clients import tokens, tracing
from clients.cli.common import EXIT_USAGE, fail, handle_errors, write_private
from clients.errors import Unavailable
from clients.sdk import AuthorityClient, DischargerClient, SableAPIError
from clients.tickets import b64d
from server.launcher import serve
from server.logs import configure_logging

# --- sable dev --------------------------------------------------------------------------------

DEV_ORG, DEV_USER = "acme", "alice"


def _dev_master_key(data_dir: Path, service: str) -> bytes:
    """`<data-dir>/<service>.key`, made on first use; a 0.1.0 data dir's `master.key` is the
    authority's."""
    from server.masterkey import create_key_file, load_master_key

    path = data_dir / f"{service}.key"
    legacy = data_dir / "master.key"
    if service == "authority" and not path.exists() and legacy.exists():
        os.rename(legacy, path)
    if not path.exists():
        create_key_file(path)
    return load_master_key(str(path))


async def _dev_discharger_keys(config) -> tuple[tuple[str, bytes], ...]:
    """The dev discharger's public keys, read (or made) before either service starts, so
    the authority can be given them."""
    async def public(keys):
        return tuple((k["kid"], b64d(k["key"])) for k in keys.public_keys())
    return await open_keys(config, public)



def _from_file(path: str, a_config, d_config):
    """The development configs with the file's settings added: what sable dev sets itself
    (addresses, databases, keys, the admin credential, the two services' trust) stays."""
    from dataclasses import fields, replace

    from authority.config import load as load_authority
    from discharger.config import load as load_discharger

    kept = {"db_path", "master_key", "public_url", "host", "port", "admin_token", "trusted_proxies", "dischargers",
            "discharger_url", "keys_path", "authority_urls"}
    read = [load_authority(path, master_key=a_config.master_key), load_discharger(path, master_key=d_config.master_key)]
    out = []
    for dev_config, file_config in zip((a_config, d_config), read, strict=True):
        out.append(replace(dev_config, **{f.name: getattr(file_config, f.name) for f in fields(file_config)
                                          if f.name not in kept}))
    return out[0], out[1]

@click.command()
@click.option("--data-dir", default="./var", show_default=True, type=click.Path(file_okay=False))
@click.option("--authority-port", default=8700, show_default=True, type=int)
@click.option("--discharger-port", default=8701, show_default=True, type=int)
@click.option("--db", "database", metavar="URL", envvar="SABLE_DATABASE_URL",
              help="A postgresql:// URL both services use (each in its own schema); default: SQLite "
                   "files under the data dir.")
@click.option("--config", "config_path", metavar="FILE", type=click.Path(dir_okay=False),
              help="A TOML file whose [authority] and [discharger] tables add to the development settings "
                   "(identity providers, say); addresses, databases and keys stay sable dev's.")
@click.option("--log-level", default="WARNING", show_default=True)
@handle_errors
def dev(data_dir, authority_port, discharger_port, database, config_path, log_level):
    """Run both services locally (SQLite under the data dir, or `--db postgresql://...`),
    with org acme and user alice."""
    from authority.app import create_app as authority_app
    from authority.config import AuthorityConfig, TrustedDischarger
    from discharger.app import create_app as discharger_app
    from discharger.config import DischargerConfig

    configure_logging(log_level)
    tracing.configure_from_env("sable-dev")
    root = Path(data_dir)
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    dev_file = root / "dev.json"
    previous = json.loads(dev_file.read_text()) if dev_file.exists() else {}
    admin = previous.get("admin_token") or tokens.encode(tokens.ADMIN, nacl.utils.random(32))
    users = previous.get("users") or [{"username": DEV_USER, "password": secrets.token_urlsafe(12)}]
    host = "127.0.0.1"
    d_url, a_url = f"http://{host}:{discharger_port}", f"http://{host}:{authority_port}"

    from server.postgres import is_url
    if database and not is_url(database):
        fail("--db takes a postgresql:// URL (for SQLite, use --data-dir)", EXIT_USAGE)
    d_config = DischargerConfig(db_path=database or str(root / "discharger.db"),
                                master_key=_dev_master_key(root, "discharger"), keys_path=str(root / "discharger.keys"),
                                public_url=d_url, host=host, port=discharger_port, admin_token=admin,
                                authority_urls=(a_url,))  # no proxy in front: X-Forwarded-For is not believed
    trust = TrustedDischarger(d_url, asyncio.run(_dev_discharger_keys(d_config)))
    a_config = AuthorityConfig(db_path=database or str(root / "authority.db"),
                               master_key=_dev_master_key(root, "authority"), public_url=a_url,
                               dischargers=(trust,), discharger_url=d_url, host=host, port=authority_port,
                               admin_token=admin, webhook_allow_private=True)  # receivers on this machine
    if config_path:
        a_config, d_config = _from_file(config_path, a_config, d_config)

    async def ready():
        async with AuthorityClient(a_url, admin_token=admin) as a, DischargerClient(d_url, admin_token=admin) as d:
            try:
                await a.create_org(DEV_ORG)
            except SableAPIError as e:
                if e.code != "conflict":
                    raise
            for u in users:
                try:
                    await d.create_user(u["username"], u["password"], [DEV_ORG])
                except SableAPIError as e:
                    if e.code != "conflict":
                        raise
        write_private(dev_file, {"authority_url": a_url, "discharger_url": d_url, "admin_token": admin,
                                 "org": DEV_ORG, "users": users})
        write_text_private(_last_dev(), str(root.resolve()))  # so dev-env works from any folder
        click.echo(_walkthrough(a_url, d_url, root, users[0]))

    try:
        asyncio.run(serve([(discharger_app(d_config), host, discharger_port, None),
                           (authority_app(a_config), host, authority_port, None)], ready))
    except Unavailable as e:
        if "cannot listen" not in e.message:
            raise
        fail(f"{e.message}. Choose other ports: make run AUTHORITY_PORT={authority_port + 1000} "
             f"DISCHARGER_PORT={discharger_port + 1000} (or sable dev --authority-port/--discharger-port)",
             EXIT_USAGE)
    click.echo("stopped", err=True)


def _walkthrough(a_url: str, d_url: str, root: Path, user: dict) -> str:
    return f"""
Sable is running.
  authority   {a_url}
  discharger  {d_url}
  data        {root}/ (dev.json holds the admin credential and passwords, mode 0600)
  org {DEV_ORG}, user {user['username']}, password {user['password']}

In another terminal, from this folder:
  eval "$(.venv/bin/sable dev-env --data-dir {root})"   # sets SABLE_* and puts sable on PATH
  echo "$SABLE_DEV_PASSWORD" | sable login -u {user['username']} --password-stdin
  PT=$(sable token create --org {DEV_ORG} --apps orders --actions rw)
  ST=$(sable strip "$PT")
  HT=$(sable attenuate "$ST" --hosts worker-7)
  sable verify "$HT" --org {DEV_ORG} --action r --app orders --host worker-7   # allowed
  sable verify "$HT" --org {DEV_ORG} --action r --app orders --host worker-8   # denied
  sable token revoke "$(sable inspect "$PT" --field id)"
  sable verify "$HT" --org {DEV_ORG} --action r --app orders --host worker-7   # denied: revoked

In a browser: the console of org {DEV_ORG} at {a_url}/console/orgs/{DEV_ORG}
(sign in as {user['username']} at the discharger); `sable login --web` signs the CLI in the same way.

Ctrl-C stops both services; a second `make run` reuses {root}/.
"""


def _last_dev() -> Path:
    from clients.cli.common import config_dir
    return config_dir() / "last-dev-dir"


def write_text_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.write_text(text)
    path.chmod(0o600)


@click.command("dev-env")
@click.option("--data-dir", default="./var", show_default=True, type=click.Path(file_okay=False))
@handle_errors
def dev_env(data_dir):
    """Print shell exports for talking to `sable dev`: eval "$(sable dev-env)". From another
    folder, it finds the data dir of the last `sable dev` started by this user."""
    path = Path(data_dir) / "dev.json"
    if not path.exists() and data_dir == "./var" and _last_dev().exists():
        path = Path(_last_dev().read_text().strip()) / "dev.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        # Under eval, stdout is what runs: make the failure visible there too.
        click.echo(f"echo 'sable: no {path}: start `sable dev` (make run) first, or pass --data-dir' >&2; false")
        fail(f"no {path}: start `sable dev` (make run) first, or pass --data-dir")
    bin_dir = Path(os.path.realpath(sys.argv[0])).parent
    click.echo(f"export SABLE_AUTHORITY_URL={data['authority_url']}")
    click.echo(f"export SABLE_DISCHARGER_URL={data['discharger_url']}")
    click.echo(f"export SABLE_ADMIN_TOKEN={data['admin_token']}")
    click.echo(f"export SABLE_DEV_USER={data['users'][0]['username']}")
    click.echo(f"export SABLE_DEV_PASSWORD={data['users'][0]['password']}")
    click.echo(f'export PATH="{bin_dir}:$PATH"')
