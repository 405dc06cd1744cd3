"""SQLite plumbing both services share: connections, durable transactions, meta, admins
and the audit table. Each service's store subclasses `Database` and adds its own SQL.

Writes go through one plain sqlite3 connection on its own thread, in WAL mode with
synchronous=FULL: a whole batch of queued writes runs there in one call and one commit, and
each caller resumes only after that commit is on disk. Reads use an aiosqlite connection and
see only committed data. Write functions take the sqlite3 connection and are synchronous.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from concurrent.futures import ThreadPoolExecutor

import aiosqlite

from clients.audit import AuditRecord
from clients.tokens import ADMIN, secret_digest

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

    def __init__(self, writer: sqlite3.Connection, pool: ThreadPoolExecutor, reader: aiosqlite.Connection):
        self._w = writer
        self._pool = pool  # one thread: the writer connection is only ever used from it
        self._r = reader
        self._queue: list[tuple] = []
        self._writer_task: asyncio.Task | None = None

    @classmethod
    async def open(cls, path: str):
        loop = asyncio.get_running_loop()
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-writer")

        def connect() -> sqlite3.Connection:
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=FULL")
                conn.execute("PRAGMA foreign_keys=ON")
                conn.execute("PRAGMA busy_timeout=5000")
                conn.executescript(COMMON_SCHEMA + cls.SCHEMA)
            except BaseException:
                conn.close()
                raise
            return conn

        reader = None
        try:
            writer = await loop.run_in_executor(pool, connect)
        except Exception as e:  # sqlite3.Error and OSError alike: say which file
            pool.shutdown()
            raise StoreError(f"cannot open database {path}: {e}") from None
        try:
            reader = await aiosqlite.connect(path, isolation_level=None)
            await reader.execute("PRAGMA busy_timeout=5000")
            await reader.execute("PRAGMA query_only=ON")
        except Exception as e:
            if reader is not None:
                await reader.close()
            await loop.run_in_executor(pool, writer.close)
            pool.shutdown()
            raise StoreError(f"cannot open database {path}: {e}") from None
        db = cls(writer, pool, reader)
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
        await asyncio.get_running_loop().run_in_executor(self._pool, self._w.close)
        self._pool.shutdown()

    async def _tx(self, fn):
        """Run `fn(conn)` (synchronous, on the writer thread) in a write transaction; its commit is durable when this returns.

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
        fns = [fn for fn, _ in batch]
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._batch_sync, fns)

    def _batch_sync(self, fns: list) -> list:
        """On the writer thread: the whole batch in one transaction, one fsync at its COMMIT."""
        self._w.execute("BEGIN IMMEDIATE")
        try:
            results = [fn(self._w) for fn in fns]
        except BaseException:
            self._w.execute("ROLLBACK")
            raise
        self._w.execute("COMMIT")
        return results

    async def _one(self, sql: str, args=()):
        async with self._r.execute(sql, args) as cur:
            return await cur.fetchone()

    async def _all(self, sql: str, args=()):
        async with self._r.execute(sql, args) as cur:
            return await cur.fetchall()

    @staticmethod
    def _audit(conn: sqlite3.Connection, records: list[AuditRecord]) -> None:
        conn.executemany(
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
        def run(c):
            c.execute("INSERT OR REPLACE INTO meta (k, v) VALUES (?, ?)", (key, value))
        await self._tx(run)

    async def add_admin(self, digest: bytes, now: int) -> None:
        def run(c):
            c.execute("INSERT OR IGNORE INTO admins (hash, created_at) VALUES (?, ?)", (digest, now))
        await self._tx(run)

    async def is_admin(self, credential: str | None) -> bool:
        """Whether this is a registered admin credential (`sable_adm_...`), compared by digest."""
        if not credential or not credential.startswith(ADMIN):
            return False
        digest = secret_digest(credential)
        return await self._one("SELECT 1 FROM admins WHERE hash = ?", (digest,)) is not None
