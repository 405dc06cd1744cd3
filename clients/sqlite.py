"""SQLite plumbing both services share: connections, durable transactions, meta, admins
and the audit table. Each service's store subclasses `Database` and adds its own SQL.

Writes go through one connection under a lock, in WAL mode with synchronous=FULL, so a
commit is on disk before the method returns. Reads use a second connection and see only
committed data.
"""

from __future__ import annotations

import asyncio
import json

import aiosqlite

from clients.audit import AuditRecord

COMMON_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS admins (hash BLOB PRIMARY KEY, created_at INTEGER NOT NULL);
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


def _settle(future: asyncio.Future, result) -> None:
    if not future.done():  # its caller may have been cancelled; the write stands regardless
        future.set_result(result)


class StoreError(RuntimeError):
    """The database is unusable (unreadable file, wrong schema, wrong master key)."""


class Database:
    SCHEMA = ""
    SCHEMA_VERSION = 1

    def __init__(self, writer: aiosqlite.Connection, reader: aiosqlite.Connection):
        self._w = writer
        self._r = reader
        self._queue: list[tuple] = []
        self._writer_task: asyncio.Task | None = None

    @classmethod
    async def open(cls, path: str):
        writer = reader = None
        try:
            writer = await aiosqlite.connect(path, isolation_level=None)
            await writer.execute("PRAGMA journal_mode=WAL")
            await writer.execute("PRAGMA synchronous=FULL")
            await writer.execute("PRAGMA foreign_keys=ON")
            await writer.execute("PRAGMA busy_timeout=5000")
            await writer.executescript(COMMON_SCHEMA + cls.SCHEMA)
            reader = await aiosqlite.connect(path, isolation_level=None)
            await reader.execute("PRAGMA busy_timeout=5000")
            await reader.execute("PRAGMA query_only=ON")
        except Exception as e:  # sqlite3.Error and OSError alike: say which file
            for conn in (reader, writer):
                if conn is not None:
                    await conn.close()
            raise StoreError(f"cannot open database {path}: {e}") from None
        db = cls(writer, reader)
        version = await db.get_meta("schema_version")
        if version is None:
            await db.set_meta("schema_version", str(cls.SCHEMA_VERSION).encode())
        elif int(version) != cls.SCHEMA_VERSION:
            await db.close()
            raise StoreError(f"database {path} has schema {int(version)}, this build needs {cls.SCHEMA_VERSION}")
        return db

    async def close(self) -> None:
        if self._writer_task is not None:
            await asyncio.shield(self._writer_task)
        await self._r.close()
        await self._w.close()

    async def _tx(self, fn):
        """Run `await fn(conn)` in a write transaction; its commit is durable when this returns.

        Group commit: writes that arrive while a transaction is committing are queued, and the
        next transaction runs them all, so one fsync serves many writers. If one of them raises,
        the batch is rolled back and each is run again on its own, so only that one fails.
        """
        future = asyncio.get_running_loop().create_future()
        self._queue.append((fn, future))
        if self._writer_task is None or self._writer_task.done():
            self._writer_task = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        while self._queue:
            batch, self._queue = self._queue, []
            try:
                results = await self._run_batch(batch)
            except Exception:
                for fn, future in batch:  # isolate the failure: one transaction each
                    try:
                        (result,) = await self._run_batch([(fn, future)])
                        _settle(future, result)
                    except Exception as e:
                        if not future.done():
                            future.set_exception(e)
                continue
            for (_, future), result in zip(batch, results):
                _settle(future, result)

    async def _run_batch(self, batch: list[tuple]) -> list:
        await self._w.execute("BEGIN IMMEDIATE")
        try:
            results = [await fn(self._w) for fn, _ in batch]
        except BaseException:
            await self._w.execute("ROLLBACK")
            raise
        await self._w.execute("COMMIT")
        return results

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

    async def write_audit(self, records: list[AuditRecord]) -> None:
        if records:
            await self._tx(lambda c: self._audit(c, records))

    async def get_meta(self, key: str) -> bytes | None:
        row = await self._one("SELECT v FROM meta WHERE k = ?", (key,))
        return row[0] if row else None

    async def set_meta(self, key: str, value: bytes) -> None:
        async def run(c):
            await c.execute("INSERT OR REPLACE INTO meta (k, v) VALUES (?, ?)", (key, value))
        await self._tx(run)

    async def add_admin(self, digest: bytes, now: int) -> None:
        async def run(c):
            await c.execute("INSERT OR IGNORE INTO admins (hash, created_at) VALUES (?, ?)", (digest, now))
        await self._tx(run)

    async def is_admin(self, digest: bytes) -> bool:
        return await self._one("SELECT 1 FROM admins WHERE hash = ?", (digest,)) is not None
