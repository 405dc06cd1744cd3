"""`sable db copy`: one service's data from one database to another (SQLite -> PostgreSQL or
back), ids, sequence numbers and sealed keys as they are, so nothing needs the master key and
a feed reader at cursor N continues on the new database without a gap or a repeat."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clients.errors import Conflict, NotFound
from server.postgres import is_url, redact

Tables = Sequence[tuple[str, Sequence[str]]]


@dataclass(frozen=True)
class Copied:
    rows: dict[str, int]
    last_cursor: int  # the highest revocation feed position copied (0 for the discharger)


async def copy_database(open_store: Callable[..., Awaitable[Any]], tables: Tables, src: str, dst: str,
                        force: bool = False, say: Callable[[str], None] = lambda _: None) -> Copied:
    """`say` hears what is being done, for a progress line: a million tokens take a while."""
    if not is_url(src) and not Path(src).exists():
        raise NotFound(f"no database at {src}")
    source = await open_store(src, migrate=False, role="tool")
    try:
        if await source.in_use() and not force:
            raise Conflict(f"a service has {redact(src)} open; stop it, or pass --force to copy anyway"
                           + ("" if is_url(src) else f" (if none runs, `sable db status --db {src}` clears what"
                              " a crashed one left)"))
        have, want = await source.stored_version(), source.schema_version()
        if have != want:
            raise Conflict(f"{redact(src)} has schema version {have}, this build {want}: "
                           "run `sable db upgrade` on it first (or use the matching Sable version)")
        target = await open_store(dst, role="tool")
        try:
            if await target.row_count(tables):
                raise Conflict(f"{redact(dst)} is not empty; copy only into an empty database")
            say(f"reading {redact(src)} (one snapshot)...")
            data = await source.snapshot(tables)
            say(f"writing {sum(len(rows) for rows in data.values())} rows to {redact(dst)} (one transaction)...")
            await target.load(tables, data)
        finally:
            await target.close()
    finally:
        await source.close()
    feed = data.get("revocations", [])
    return Copied({name: len(data[name]) for name, _ in tables}, max((r[0] for r in feed), default=0))
