"""`sable discharger keys list|rotate|retire`: the discharger's X25519 keys, sealed in its
database, changed offline (running dischargers pick changes up by themselves)."""

from __future__ import annotations

import asyncio
import json
import sys

import click

from cli.stores import opened
from clients.cli.common import fail, handle_errors
from server.logs import configure_logging


@click.group("keys")
def keys():
    """The discharger's X25519 keys, sealed in its database: list, rotate, retire."""


def _key_options(fn):
    for opt in reversed([
        click.option("--data-dir", type=click.Path(file_okay=False), help="Where the database lives (default ./var)."),
        click.option("--db", metavar="PATH|URL", help="A SQLite file or a postgresql:// URL."),
        click.option("--config", "config_path", type=click.Path(dir_okay=False), help="The discharger's TOML settings."),
        click.option("--master-key-file", type=click.Path(dir_okay=False), help="Else SABLE_MASTER_KEY is used."),
        click.option("--keys", type=click.Path(dir_okay=False), help="A 0.1.0 key file to move in first."),
    ]):
        fn = opt(fn)
    return fn


async def open_keys(config, action):
    """Run `action(keys)` on the discharger keys in `config`'s database (moving a 0.1.0 key
    file in first), checking the master key as the service would."""
    from discharger.store import open_store
    from discharger.ticket_keys import TicketKeys
    from server.masterkey import MasterKey

    master = MasterKey(config.master_key)
    async with opened(open_store, config.db_path, role="tool") as store:
        await master.check(store, config.db_path)
        return await action(await TicketKeys.load(store, master, config.keys_path))


def _with_keys(config_path, flags, action):
    """Run `action(keys)` on the discharger database the options name."""
    from discharger.config import load

    config = load(config_path, **flags)
    configure_logging("WARNING", sys.stderr)
    return asyncio.run(open_keys(config, action))


@keys.command("list")
@_key_options
@click.option("--json", "as_json", is_flag=True, help="As [{kid, key}], the shape of an authority's public_keys.")
@handle_errors
def keys_list(config_path, as_json, **flags):
    """Print the keys, newest (the one new tickets are sealed to) first."""
    async def action(keys):
        return keys.public_keys()
    listed = _with_keys(config_path, flags, action)
    if as_json:
        click.echo(json.dumps([{"kid": k["kid"], "key": k["key"]} for k in listed]))
        return
    for i, k in enumerate(listed):
        click.echo(f"{k['kid']}  {k['key']}" + ("  (current)" if i == 0 else ""))


@keys.command("rotate")
@_key_options
@handle_errors
def keys_rotate(config_path, **flags):
    """Add a new current key; the old ones stay accepted until retired. Running dischargers
    pick it up within 10 s, and authorities that take this discharger's keys from its URL
    seal new tickets to it within 60 s."""
    async def action(keys):
        return await keys.rotate()
    click.echo(_with_keys(config_path, flags, action))


@keys.command("retire")
@click.argument("kid")
@_key_options
@handle_errors
def keys_retire(kid, config_path, **flags):
    """Stop accepting tickets sealed to KID."""
    from discharger.ticket_keys import KeyChangeError

    async def action(keys):
        await keys.retire(kid)
    try:
        _with_keys(config_path, flags, action)
    except KeyChangeError as e:
        fail(str(e))
    click.echo(f"retired {kid}", err=True)
