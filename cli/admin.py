"""`sable admin create|list|revoke|rotate-master-key`: admin credentials and master keys,
changed in the databases directly (offline)."""

from __future__ import annotations

import asyncio
import re
import sys
import time
from pathlib import Path

import click
import nacl.utils

from cli.services import NAMES, services
from cli.stores import opened
from clients import tokens
from clients.cli.common import EXIT_USAGE, fail, handle_errors
from server.logs import configure_logging
from server.postgres import redact


@click.group()
def admin():
    """Admin credentials and master keys."""


def _admin_targets(data_dir, authority_db, discharger_db) -> list:
    """(open_store, location) of each database the options name."""
    known = services()
    targets = []
    if data_dir:
        for s in known.values():
            if (Path(data_dir) / f"{s.name}.db").exists():
                targets.append((s.open_store, str(Path(data_dir) / f"{s.name}.db")))
    for name, location in (("authority", authority_db), ("discharger", discharger_db)):
        if location:
            targets.append((known[name].open_store, location))
    if not targets:
        fail("name a database: --data-dir, --authority-db or --discharger-db", EXIT_USAGE)
    return targets


def _admin_id(digest: bytes) -> str:
    """How a credential is named in listings: the start of its digest, never the secret."""
    return digest.hex()[:12]


def _database_options(fn):
    for opt in reversed([
        click.option("--data-dir", type=click.Path(file_okay=False), help="The databases found here."),
        click.option("--authority-db", metavar="PATH|URL"),
        click.option("--discharger-db", metavar="PATH|URL"),
    ]):
        fn = opt(fn)
    return fn


@admin.command("create")
@_database_options
@click.option("--introspect-only", is_flag=True,
              help="A credential good for the authority's POST /v1/introspect and nothing else (SPEC §17).")
@click.option("--org", "orgs", multiple=True, metavar="ORG",
              help="With --introspect-only: the orgs whose tokens it sees (default all; others look inactive).")
@handle_errors
def admin_create(data_dir, authority_db, discharger_db, introspect_only, orgs):
    """Print a new admin credential, registered (hashed) in the given service databases."""
    targets = _admin_targets(data_dir, authority_db, discharger_db)
    if orgs and not introspect_only:
        fail("--org goes with --introspect-only", EXIT_USAGE)
    if introspect_only:
        targets = [(opener, path) for opener, path in targets if opener is services()["authority"].open_store]
        if not targets:
            fail("an introspect-only credential lives at the authority: give --authority-db or --data-dir", EXIT_USAGE)
    credential = tokens.encode(tokens.ADMIN, nacl.utils.random(32))

    async def go():
        for opener, path in targets:
            async with opened(opener, path) as store:
                if introspect_only:
                    await store.add_introspector(tokens.secret_digest(credential), orgs, int(time.time()))
                else:
                    await store.add_admin(tokens.secret_digest(credential), int(time.time()))
    asyncio.run(go())
    click.echo(credential)
    click.echo(f"registered as {_admin_id(tokens.secret_digest(credential))} in "
               f"{', '.join(redact(p) for _, p in targets)}", err=True)


@admin.command("list")
@_database_options
@handle_errors
def admin_list(data_dir, authority_db, discharger_db):
    """List the admin credentials registered in the databases, by id (the start of their digest)."""
    from clients.caveats import format_time

    async def go():
        rows = []
        for opener, path in _admin_targets(data_dir, authority_db, discharger_db):
            async with opened(opener, path) as store:
                rows += [(path, digest, at, "") for digest, at in await store.list_admins()]
                if hasattr(store, "list_introspectors"):
                    rows += [(path, digest, at, "  introspect-only" + (f" ({', '.join(orgs)})" if orgs else ""))
                             for digest, orgs, at in await store.list_introspectors()]
        return rows
    for path, digest, at, kind in asyncio.run(go()):
        click.echo(f"{_admin_id(digest)}  {format_time(at)}  {redact(path)}{kind}")


@admin.command("revoke")
@click.argument("admin_id")
@_database_options
@handle_errors
def admin_revoke(admin_id, data_dir, authority_db, discharger_db):
    """Remove the admin credential ADMIN_ID (from `sable admin list`) from the databases."""
    if not re.fullmatch(r"[0-9a-f]{8,64}", admin_id):
        fail("ADMIN_ID is the hex id `sable admin list` shows (at least 8 characters)", EXIT_USAGE)

    async def go():
        removed = []
        for opener, path in _admin_targets(data_dir, authority_db, discharger_db):
            async with opened(opener, path) as store:
                matches = [d for d, _ in await store.list_admins() if d.hex().startswith(admin_id)]
                readers = [d for d, _, _ in await store.list_introspectors() if d.hex().startswith(admin_id)] \
                    if hasattr(store, "list_introspectors") else []
                if len(matches) + len(readers) > 1:
                    fail(f"{admin_id} names {len(matches) + len(readers)} credentials in {redact(path)}: give more of it",
                         EXIT_USAGE)
                if matches and await store.remove_admin(matches[0]):
                    removed.append(redact(path))
                if readers and await store.remove_introspector(readers[0]):
                    removed.append(redact(path))
        return removed
    removed = asyncio.run(go())
    if not removed:
        fail(f"no admin credential {admin_id}")
    click.echo(f"removed admin {admin_id} from {', '.join(removed)}")
    click.echo("a credential given to a service in SABLE_ADMIN_TOKEN is registered again at its next start: "
               "remove it from the service's environment too", err=True)


@admin.command("rotate-master-key")
@click.option("--service", type=click.Choice(NAMES), required=True,
              help="Whose master key (each service has its own).")
@click.option("--new-key-file", required=True, type=click.Path(dir_okay=False),
              help="The new key: read if the file exists (mode 0600), else made there.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False),
              help="The service's TOML settings (for its database and key file).")
@click.option("--data-dir", type=click.Path(file_okay=False), help="Where the database lives (default ./var).")
@click.option("--db", metavar="PATH|URL", help="A SQLite file or a postgresql:// URL.")
@click.option("--master-key-file", type=click.Path(dir_okay=False),
              help="The current key, else SABLE_MASTER_KEY, as the service reads it.")
@handle_errors
def admin_rotate_master_key(service, new_key_file, config_path, **flags):
    """Re-seal everything the service's master key seals (root keys, the user-token key,
    discharger keys) with a new key, in one transaction. Stop every process of the service
    first; then start them with the new key. Tokens keep verifying."""
    from server.masterkey import AlreadyRotated, MasterKey, check_rotation, create_key_file, read_key_file, rotate
    from server.postgres import is_url, redact

    described = services()[service]
    config = described.load_config(config_path, **{k: v for k, v in flags.items() if v})
    location = config.db_path
    configure_logging("WARNING", sys.stderr)
    if not is_url(location) and not Path(location).exists():
        fail(f"no database file at {location}", EXIT_USAGE)
    current = MasterKey(config.master_key)
    new_key = read_key_file(new_key_file) if Path(new_key_file).exists() else None
    if new_key == config.master_key:
        fail("the new key is the current key", EXIT_USAGE)
    started = time.monotonic()
    shown: dict[str, float] = {}

    def progress(table: str, done: int, total: int) -> None:
        # Quiet for a pass under 5 s; then a line every 5 s, and each table's last.
        now = time.monotonic()
        if now - max(shown.get(table, 0.0), started) >= 5.0 or (done == total and table in shown):
            shown[table] = now
            click.echo(f"re-sealing {table}: {done}/{total} ({100 * done // total}%)", err=True)

    async def go():
        async with opened(described.open_store, location, migrate=False, role="tool") as store:
            if await store.in_use():
                fail(f"a running {service} has {redact(location)} open: stop every {service} process first"
                     + ("" if is_url(location) else f" (if none runs, `sable db status --db {location}` clears "
                        "what a crashed one left)"), EXIT_USAGE)
            if (have := await store.stored_version()) != store.schema_version():
                fail(f"{redact(location)} has schema version {have}, this build {store.schema_version()}: "
                     "run `sable db upgrade` on it first", EXIT_USAGE)
            await check_rotation(store, current, MasterKey(new_key) if new_key else None)
            if new_key is None:  # made only now that the current key is known to be right
                new = MasterKey(create_key_file(new_key_file))
                click.echo(f"wrote a new master key to {new_key_file} (mode 0600)", err=True)
            else:
                new = MasterKey(new_key)
            return await rotate(store, described.sealed, current, new, progress)
    try:
        done = asyncio.run(go())
    except AlreadyRotated as e:
        click.echo(f"{e}: nothing to do")
        return
    counts = ", ".join(f"{n} in {table}" for table, n in done.counts.items())
    click.echo(f"{service} database {redact(location)} re-sealed with the key in {new_key_file}: {counts} "
               f"({time.monotonic() - started:.1f} s)")
    for table, keys in done.left.items():
        click.echo(f"warning: {len(keys)} value(s) in {table} did not open with the current key and were left as "
                   f"they were (they were unusable already): {', '.join(keys[:5])}{' ...' if len(keys) > 5 else ''}",
                   err=True)
    click.echo(f"next: start every {service} process with the new key (--master-key-file {new_key_file} or "
               "SABLE_MASTER_KEY); keep the old key for backups made before now", err=True)
