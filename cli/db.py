"""`sable db status|upgrade|copy`: a service's database: schema versions and moving data
between SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import click

from cli.services import NAMES, services
from cli.stores import opened
from clients.cli.common import EXIT_USAGE, fail, handle_errors
from server.service import Service


@click.group()
def db():
    """A service's database: schema status and upgrades."""


def _db_services(location: str, service: str | None) -> list[Service]:
    """Which services' data `location` holds (or should hold): `--service`, else all of a
    PostgreSQL database's, else the one a SQLite file's name or tables say."""
    from server.postgres import is_url
    from server.sqlite import table_names

    known = services()
    if service:
        return [known[service]]
    if is_url(location):
        return list(known.values())
    path = Path(location)
    if not path.exists():
        fail(f"no database file at {location}", EXIT_USAGE)
    for s in known.values():
        if path.name.startswith(s.name):
            return [s]
    tables = table_names(path)
    for s in known.values():
        if s.marker_table in tables:
            return [s]
    fail(f"{location} holds no Sable data; name the service with --service", EXIT_USAGE)
    raise AssertionError  # unreachable: fail exits


def _db_option(fn):
    fn = click.option("--service", type=click.Choice(NAMES),
                      help="Whose data (default: what the database holds).")(fn)
    return click.option("--db", "location", required=True, metavar="PATH|URL", envvar="SABLE_DATABASE_URL",
                        help="A SQLite file or a postgresql:// URL (else SABLE_DATABASE_URL).")(fn)


@db.command("status")
@_db_option
@handle_errors
def db_status(location, service):
    """Print the schema version each service's data has, and this build's."""
    from server.postgres import redact
    from server.store import StoreError

    failed = []

    async def go() -> list[str]:
        lines = []
        for s in _db_services(location, service):
            try:
                async with opened(s.open_store, location, migrate=False) as store:
                    have, want = await store.stored_version(), store.schema_version()
            except StoreError as e:
                if service:  # the one asked for: its error is the answer
                    raise
                lines.append(f"{s.name}: {e.detail or e.message}")  # e.g. another role's schema
                failed.append(s.name)
                continue
            state = ("empty" if have == 0 else "up to date" if have == want
                     else "needs `sable db upgrade`" if have < want else "newer than this build")
            lines.append(f"{s.name}: schema version {have}, this build {want}: {state}")
        return lines
    click.echo(f"database {redact(location)}")
    for line in asyncio.run(go()):
        click.echo(line)
    if failed:
        sys.exit(1)


@db.command("upgrade")
@_db_option
@handle_errors
def db_upgrade(location, service):
    """Upgrade each service's schema to this build's (services also do this at start)."""
    async def go() -> list[str]:
        lines = []
        for s in _db_services(location, service):
            async with opened(s.open_store, location, migrate=False) as store:
                before, after = await store.migrate()
            lines.append(f"{s.name}: schema version {before} -> {after}" if before != after
                         else f"{s.name}: schema version {after}, nothing to do")
        return lines
    for line in asyncio.run(go()):
        click.echo(line)


@db.command("copy")
@click.option("--from", "src", required=True, metavar="PATH|URL", help="The database to read (not changed).")
@click.option("--to", "dst", required=True, metavar="PATH|URL", help="An empty database to fill.")
@click.option("--service", type=click.Choice(NAMES), help="Whose data (default: what the source holds).")
@click.option("--force", is_flag=True, help="Copy even though a service seems to have the source open.")
@handle_errors
def db_copy(src, dst, service, force):
    """Copy one service's data into an empty database, SQLite <-> PostgreSQL: ids, lineage,
    revocations and feed positions, audit, last-used times and sealed keys (no master key
    needed). Prints the last feed cursor copied."""
    from server.dbcopy import copy_database
    from server.postgres import is_url, redact

    found = _db_services(src, service)
    if len(found) != 1:
        fail("a PostgreSQL database holds both services' data: name one with --service", EXIT_USAGE)
    s = found[0]
    if not is_url(dst) and Path(dst).exists() and Path(dst).stat().st_size:
        fail(f"{dst} exists; copy only into a new file or an empty database", EXIT_USAGE)
    copied = asyncio.run(copy_database(s.open_store, s.tables, src, dst, force, say=lambda m: click.echo(m, err=True)))
    click.echo(f"copied {s.name} from {redact(src)} to {redact(dst)}: "
               + ", ".join(f"{n} {table}" for table, n in copied.rows.items()))
    if s.name == "authority":
        click.echo(f"last feed cursor copied: {copied.last_cursor}")
