"""The authority's storage: SQLite through aiosqlite. All SQL lives here.

Handlers and domain code call these methods and nothing else, so another backend
(PostgreSQL) can stand in without touching them. Writes go through one connection under a
lock, in WAL mode with synchronous=FULL: a commit is on disk before the method returns.
Reads use a second connection and so see only committed data.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass

import aiosqlite

from authority.audit import AuditRecord

SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS orgs (name TEXT PRIMARY KEY, created_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS admins (hash BLOB PRIMARY KEY, created_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS tokens (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    name TEXT,
    org TEXT NOT NULL REFERENCES orgs(name),
    parent TEXT REFERENCES tokens(id),
    user TEXT,
    caveat_count INTEGER NOT NULL,
    sealed_key BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER,
    last_used_at INTEGER
);
CREATE INDEX IF NOT EXISTS tokens_org ON tokens(org);
CREATE INDEX IF NOT EXISTS tokens_parent ON tokens(parent);
CREATE TABLE IF NOT EXISTS revoked_attenuations (
    fingerprint BLOB PRIMARY KEY,
    token_id TEXT NOT NULL REFERENCES tokens(id),
    revoked_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS revoked_attenuations_token ON revoked_attenuations(token_id);
CREATE TABLE IF NOT EXISTS revocations (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    token_id TEXT NOT NULL,
    scope TEXT NOT NULL,
    at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    event TEXT NOT NULL,
    outcome TEXT NOT NULL,
    request_id TEXT,
    client TEXT,
    token_id TEXT,
    parent TEXT,
    org TEXT,
    user TEXT,
    detail TEXT
);
"""


class StoreError(RuntimeError):
    """The database is unusable (wrong schema, unreadable file)."""


@dataclass(slots=True)
class TokenRow:
    id: str
    kind: str
    name: str | None
    org: str
    parent: str | None
    user: str | None
    caveat_count: int
    sealed_key: bytes
    created_at: int
    revoked_at: int | None = None
    last_used_at: int | None = None


_TOKEN_COLS = "id, kind, name, org, parent, user, caveat_count, sealed_key, created_at, revoked_at, last_used_at"


class Store:
    def __init__(self, writer: aiosqlite.Connection, reader: aiosqlite.Connection):
        self._w = writer
        self._r = reader
        self._lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: str) -> Store:
        try:
            writer = await aiosqlite.connect(path, isolation_level=None)
            await writer.execute("PRAGMA journal_mode=WAL")
            await writer.execute("PRAGMA synchronous=FULL")
            await writer.execute("PRAGMA foreign_keys=ON")
            await writer.execute("PRAGMA busy_timeout=5000")
            await writer.executescript(SCHEMA)
            reader = await aiosqlite.connect(path, isolation_level=None)
            await reader.execute("PRAGMA busy_timeout=5000")
            await reader.execute("PRAGMA query_only=ON")
        except Exception as e:  # sqlite3.Error and OSError alike: say which file
            raise StoreError(f"cannot open database {path}: {e}") from None
        store = cls(writer, reader)
        version = await store.get_meta("schema_version")
        if version is None:
            await store.set_meta("schema_version", str(SCHEMA_VERSION).encode())
        elif int(version) != SCHEMA_VERSION:
            raise StoreError(f"database {path} has schema {int(version)}, this build needs {SCHEMA_VERSION}")
        return store

    async def close(self) -> None:
        await self._r.close()
        await self._w.close()

    # --- plumbing --------------------------------------------------------------------------

    async def _tx(self, fn):
        """Run `await fn(conn)` in one write transaction; commit is durable on return."""
        async with self._lock:
            await self._w.execute("BEGIN IMMEDIATE")
            try:
                result = await fn(self._w)
            except BaseException:
                await self._w.execute("ROLLBACK")
                raise
            await self._w.execute("COMMIT")
            return result

    async def _one(self, sql: str, args=()):
        async with self._r.execute(sql, args) as cur:
            return await cur.fetchone()

    async def _all(self, sql: str, args=()):
        async with self._r.execute(sql, args) as cur:
            return await cur.fetchall()

    @staticmethod
    async def _audit(conn: aiosqlite.Connection, records: list[AuditRecord]) -> None:
        await conn.executemany(
            "INSERT INTO audit (at, event, outcome, request_id, client, token_id, parent, org, user, detail)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (r.at, r.event, r.outcome, r.request_id, r.client, r.token_id, r.parent, r.org, r.user,
                 json.dumps(r.detail) if r.detail else None)
                for r in records
            ],
        )

    # --- meta ------------------------------------------------------------------------------

    async def get_meta(self, key: str) -> bytes | None:
        row = await self._one("SELECT v FROM meta WHERE k = ?", (key,))
        return row[0] if row else None

    async def set_meta(self, key: str, value: bytes) -> None:
        async def run(c):
            await c.execute("INSERT OR REPLACE INTO meta (k, v) VALUES (?, ?)", (key, value))
        await self._tx(run)

    # --- orgs and admins -------------------------------------------------------------------

    async def create_org(self, name: str, now: int, audit: AuditRecord) -> bool:
        async def run(c):
            cur = await c.execute("INSERT OR IGNORE INTO orgs (name, created_at) VALUES (?, ?)", (name, now))
            if cur.rowcount:
                await self._audit(c, [audit])
            return cur.rowcount == 1
        return await self._tx(run)

    async def list_orgs(self) -> list[tuple[str, int]]:
        return [tuple(r) for r in await self._all("SELECT name, created_at FROM orgs ORDER BY name")]

    async def org_exists(self, name: str) -> bool:
        return await self._one("SELECT 1 FROM orgs WHERE name = ?", (name,)) is not None

    async def add_admin(self, digest: bytes, now: int) -> None:
        async def run(c):
            await c.execute("INSERT OR IGNORE INTO admins (hash, created_at) VALUES (?, ?)", (digest, now))
        await self._tx(run)

    async def is_admin(self, digest: bytes) -> bool:
        return await self._one("SELECT 1 FROM admins WHERE hash = ?", (digest,)) is not None

    # --- tokens ----------------------------------------------------------------------------

    async def insert_token(self, row: TokenRow, audit: AuditRecord) -> bool:
        """Insert a token; a child is inserted only while its parent is unrevoked."""
        async def run(c):
            if row.parent is not None:
                parent = await (await c.execute("SELECT revoked_at FROM tokens WHERE id = ?", (row.parent,))).fetchone()
                if parent is None or parent[0] is not None:
                    return False
            await c.execute(
                f"INSERT INTO tokens ({_TOKEN_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (row.id, row.kind, row.name, row.org, row.parent, row.user, row.caveat_count,
                 row.sealed_key, row.created_at, row.revoked_at, row.last_used_at),
            )
            await self._audit(c, [audit])
            return True
        return await self._tx(run)

    async def load_token(self, token_id: str) -> tuple[TokenRow, frozenset[bytes]] | None:
        """A token row and the fingerprints of its revoked attenuations."""
        row = await self._one(f"SELECT {_TOKEN_COLS} FROM tokens WHERE id = ?", (token_id,))
        if row is None:
            return None
        fps = await self._all("SELECT fingerprint FROM revoked_attenuations WHERE token_id = ?", (token_id,))
        return TokenRow(*row), frozenset(r[0] for r in fps)

    async def list_tokens(self, org: str) -> list[TokenRow]:
        rows = await self._all(f"SELECT {_TOKEN_COLS} FROM tokens WHERE org = ? ORDER BY created_at, id", (org,))
        return [TokenRow(*r) for r in rows]

    async def touch(self, used: dict[str, int]) -> None:
        if not used:
            return
        async def run(c):
            await c.executemany("UPDATE tokens SET last_used_at = ? WHERE id = ?", [(t, i) for i, t in used.items()])
        await self._tx(run)

    # --- revocation ------------------------------------------------------------------------

    async def revoke_token(self, token_id: str, now: int, audit: AuditRecord) -> list[str] | None:
        """Revoke a token and every descendant not yet revoked. None if the id is unknown."""
        async def run(c):
            if await (await c.execute("SELECT 1 FROM tokens WHERE id = ?", (token_id,))).fetchone() is None:
                return None
            cur = await c.execute(
                "WITH RECURSIVE sub(id) AS (SELECT ? UNION SELECT t.id FROM tokens t JOIN sub ON t.parent = sub.id)"
                " SELECT tokens.id FROM tokens JOIN sub USING (id) WHERE tokens.revoked_at IS NULL",
                (token_id,),
            )
            ids = [r[0] for r in await cur.fetchall()]
            if ids:
                await c.executemany("UPDATE tokens SET revoked_at = ? WHERE id = ?", [(now, i) for i in ids])
                await c.executemany(
                    "INSERT INTO revocations (token_id, scope, at) VALUES (?, 'token', ?)", [(i, now) for i in ids]
                )
                audit.detail = {**(audit.detail or {}), "revoked": ids}
                await self._audit(c, [audit])
            return ids
        return await self._tx(run)

    async def revoke_attenuation(self, token_id: str, fingerprint: bytes, now: int, audit: AuditRecord) -> bool:
        """Revoke one attenuation by its signature's fingerprint. False if already revoked."""
        async def run(c):
            cur = await c.execute(
                "INSERT OR IGNORE INTO revoked_attenuations (fingerprint, token_id, revoked_at) VALUES (?, ?, ?)",
                (fingerprint, token_id, now),
            )
            if not cur.rowcount:
                return False
            await c.execute("INSERT INTO revocations (token_id, scope, at) VALUES (?, 'attenuation', ?)", (token_id, now))
            await self._audit(c, [audit])
            return True
        return await self._tx(run)

    async def revocations_after(self, after: int, limit: int) -> list[tuple[int, str, str, int]]:
        return [tuple(r) for r in await self._all(
            "SELECT seq, token_id, scope, at FROM revocations WHERE seq > ? ORDER BY seq LIMIT ?", (after, limit)
        )]

    async def revocation_head(self) -> int:
        row = await self._one("SELECT COALESCE(MAX(seq), 0) FROM revocations")
        return row[0]

    # --- audit -----------------------------------------------------------------------------

    async def write_audit(self, records: list[AuditRecord]) -> None:
        if records:
            await self._tx(lambda c: self._audit(c, records))
