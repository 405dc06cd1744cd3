"""The PostgreSQL base both services' stores build on: an asyncpg pool, durable commits,
versioned migrations under an advisory lock, each service in its own schema, the tables
every service has (meta, admins, audit), and a LISTEN connection of its own.

Every failure to reach the database becomes `StoreError` (503 `unavailable`), with the URL's
password shown as `***`, and every query has a deadline, so a lost database is a prompt 503,
never a hang.

Every name is schema-qualified and nothing depends on session state, so a service works the
same behind a transaction pooler (PgBouncer's `pool_mode = transaction`, SPEC §19): with
`pooler=True` no setting is passed at connection start (a pooler refuses or silently drops
them), prepared statements are not cached (a pooler hands each transaction another server
connection), and durability is set per write transaction (`SET LOCAL`). Migrations set their
`search_path` per transaction (`SET LOCAL`) and the functions they create keep it.

This is the only module, with the services' `store/postgres.py`, that speaks PostgreSQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import zlib
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import structlog

from clients.errors import BadRequest
from clients.tokens import ADMIN, secret_digest
from server.audit import AuditFor, AuditRecord, AuditRow
from server.store import POSTGRES_SCHEMES, RESEAL_PAGE, Resealed, Resealing, StoreError

T = TypeVar("T")
Change = TypeVar("Change")
log = structlog.get_logger("sable.postgres")

QUERY_TIMEOUT = 3.0  # seconds: with the pool wait below, a request learns of an outage in < 5 s
CONNECT_TIMEOUT = 2.0
WEAKER_THAN_ON = {"off", "local", "remote_write"}

COMMON_V1 = """
CREATE TABLE IF NOT EXISTS admins (hash BYTEA PRIMARY KEY, created_at BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS audit (
    seq BIGSERIAL PRIMARY KEY,
    at DOUBLE PRECISION NOT NULL,
    event TEXT NOT NULL,
    outcome TEXT NOT NULL,
    request_id TEXT,
    client TEXT,
    token_id TEXT,
    parent TEXT,
    org TEXT,
    "user" TEXT,
    detail TEXT
);
"""


def is_url(location: str) -> bool:
    return location.startswith(POSTGRES_SCHEMES)


def redact(url: str) -> str:
    """The URL with its password, if any, as `***`: the only form messages and logs show."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable database URL>"
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def _describe(e: BaseException) -> str:
    """What went wrong, in words that never carry the password (asyncpg's messages don't) nor
    an exception's class name (SPEC §12)."""
    if isinstance(e, asyncio.TimeoutError):
        return "timed out"
    if isinstance(e, asyncpg.InvalidPasswordError):
        return "password authentication failed"
    if isinstance(e, asyncpg.InvalidAuthorizationSpecificationError):
        return "the server refused this role"
    if isinstance(e, asyncpg.InvalidCatalogNameError):
        return "no such database"
    if isinstance(e, OSError):
        return e.strerror or "the connection failed"
    if isinstance(e, asyncpg.PostgresError):
        message = str(e.args[0]) if e.args else ""
        code = getattr(e, "sqlstate", None)
        return f"{message} (SQLSTATE {code})" if message and code else message or "the server refused the request"
    if isinstance(e, asyncpg.InterfaceError):  # a protocol error, e.g. from a pooler in between
        return f"the connection broke: {e}" if str(e) else "the connection broke"
    return "the connection failed"


# What "the database is not there right now" looks like from asyncpg.
UNREACHABLE = (OSError, asyncio.TimeoutError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError,
               asyncpg.CannotConnectNowError, asyncpg.AdminShutdownError, asyncpg.CrashShutdownError,
               asyncpg.QueryCanceledError, asyncpg.TooManyConnectionsError, ConnectionError,
               asyncpg.InternalClientError,  # what a connection the server ended mid-query can raise
               # and what the pool's reconnect meets when the database was closed to connections
               # (ALLOW_CONNECTIONS false), dropped, or its role or password changed meanwhile
               asyncpg.ObjectNotInPrerequisiteStateError, asyncpg.InvalidCatalogNameError,
               asyncpg.InvalidAuthorizationSpecificationError, asyncpg.InvalidPasswordError)


# What "try again in a moment" looks like: the transaction lost a lock cycle or a serialization
# race, or reached a server that is (now) a read-only standby. 503 with Retry-After (SPEC §19).
RETRYABLE = (asyncpg.DeadlockDetectedError, asyncpg.SerializationError, asyncpg.ReadOnlySQLTransactionError)


async def _no_reset(conn: asyncpg.Connection) -> None:
    """Sable sets no session state, so the pool's reset round trip (and its UNLISTEN) is skipped."""


@dataclass
class _Listener:
    channel: str
    wake: Callable[[], None]
    conn: asyncpg.Connection | None = None
    task: asyncio.Task | None = None


class PgDatabase:
    """Subclasses name their `SCHEMA` and list `MIGRATIONS`: entry N-1 takes it to version N."""

    SCHEMA: ClassVar[str]
    MIGRATIONS: ClassVar[Sequence[str]] = ()

    def __init__(self, pool: asyncpg.Pool, url: str, connect_args: dict, *, sync_local: bool = False,
                 listen_url: str | None = None, pooler: bool = False):
        self.path = redact(url)  # what messages name
        self._url = url
        self._pool = pool
        self._connect_args = connect_args
        self._sync_local = sync_local  # each write transaction sets synchronous_commit = on itself
        self._listen_url = listen_url if listen_url is not None else (None if pooler else url)
        self._listeners: list[_Listener] = []
        self.commit_observer: Callable[[float], None] | None = None  # told each commit's duration (metrics)

    @classmethod
    def schema_version(cls) -> int:
        return len(cls.MIGRATIONS)

    @classmethod
    async def _weak_commits(cls, url: str, pooler: bool) -> bool:
        """Whether the server's (or role's) synchronous_commit is weaker than `on`: then every
        session (or, behind a pooler, every write transaction) raises it. A stronger default,
        such as `remote_apply`, is kept."""
        conn = await asyncpg.connect(url, timeout=CONNECT_TIMEOUT, statement_cache_size=0 if pooler else 100)
        try:
            return await conn.fetchval("SHOW synchronous_commit", timeout=QUERY_TIMEOUT) in WEAKER_THAN_ON
        finally:
            await conn.close()

    @classmethod
    async def open(cls: type[T], url: str, migrate: bool = True, role: str = "service",
                   min_size: int = 1, max_size: int = 10, pooler: bool = False, listen_url: str | None = None) -> T:
        """`pooler`: `url` leads to a transaction pooler (see the module doc). `listen_url`: a
        direct connection for LISTEN (by default `url`, or none behind a pooler, which delivers
        no notifications: the feed is then polled)."""
        db_cls: Any = cls
        try:
            weak = await db_cls._weak_commits(url, pooler)
            args: dict[str, Any] = {"timeout": CONNECT_TIMEOUT, "command_timeout": QUERY_TIMEOUT}
            if pooler:
                args["statement_cache_size"] = 0
            else:
                # The application name tells a running service ("service") from `sable db` ("tool").
                args["server_settings"] = {"application_name": f"sable-{cls.SCHEMA}-{role}"}  # type: ignore[attr-defined]
                if weak:
                    args["server_settings"]["synchronous_commit"] = "on"
            pool = await asyncpg.create_pool(url, min_size=min_size, max_size=max_size, reset=_no_reset, **args)
        except UNREACHABLE + (asyncpg.PostgresError, ValueError) as e:
            raise StoreError(f"cannot open database {redact(url)}: {_describe(e)}") from None
        listen_args = {k: v for k, v in args.items() if k != "statement_cache_size"}
        db = db_cls(pool, url, listen_args, sync_local=pooler and weak, listen_url=listen_url, pooler=pooler)
        try:
            if migrate:
                await db.migrate()
            else:
                await db.check_version()
        except BaseException:
            await pool.close()
            raise
        return db

    async def close(self) -> None:
        for listener in self._listeners:
            if listener.task is not None:
                listener.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await listener.task
            if listener.conn is not None and not listener.conn.is_closed():
                listener.conn.terminate()
        self._listeners.clear()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._pool.close(), 5)

    # --- schema versions -----------------------------------------------------------------------

    @classmethod
    def _lock_key(cls) -> int:
        return zlib.crc32(f"sable-migrate-{cls.SCHEMA}".encode())

    async def stored_version(self) -> int:
        """The schema version the database records (0 when it holds nothing of ours)."""
        async with self._conn() as c:
            # One round trip (this runs for every /readyz): the schema, whether this role may
            # use it, and only then whether it holds our tables.
            found = await c.fetchrow(
                "SELECT has_schema_privilege(oid, 'USAGE'), CASE WHEN has_schema_privilege(oid, 'USAGE')"
                " THEN to_regclass($2) IS NOT NULL END, current_user FROM pg_namespace WHERE nspname = $1",
                self.SCHEMA, f"{self.SCHEMA}.meta")
            if found is None:
                return 0
            usable, has_meta, role = found
            if not usable:
                raise StoreError(f"database {self.path}: role {role} may not use schema {self.SCHEMA} "
                                 "(it is another role's; use that service's URL)")
            if not has_meta:
                return 0
            row = await c.fetchval(f"SELECT v FROM {self.SCHEMA}.meta WHERE k = 'schema_version'")
            return int(row) if row else 0

    async def check_version(self) -> int:
        current, wanted = await self.stored_version(), self.schema_version()
        if current > wanted:
            raise StoreError(f"database {self.path} has schema version {current}, newer than this build's "
                             f"{wanted}: upgrade Sable")
        return current

    async def migrate(self) -> tuple[int, int]:
        """Bring the schema to this build's version in one transaction, under an advisory lock
        so replicas starting together upgrade it once. Returns (from, to)."""
        async with self._tx() as c:
            await c.execute("SELECT pg_advisory_xact_lock($1)", self._lock_key())
            await self._create_schema(c)
            # Migrations name tables unqualified: this transaction's search_path (SET LOCAL,
            # so it never outlives the transaction on a pooled server connection) is the
            # schema alone, and the functions they create keep it (SET search_path FROM CURRENT).
            await c.execute(f"SET LOCAL search_path = {self.SCHEMA}")
            await c.execute("CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v BYTEA NOT NULL)")
            row = await c.fetchval("SELECT v FROM meta WHERE k = 'schema_version'")
            current, wanted = (int(row) if row else 0), self.schema_version()
            if current > wanted:
                raise StoreError(f"database {self.path} has schema version {current}, newer than this build's "
                                 f"{wanted}: upgrade Sable")
            for script in self.MIGRATIONS[current:]:
                await c.execute(script)
            if current != wanted:
                await c.execute("INSERT INTO meta (k, v) VALUES ('schema_version', $1)"
                                " ON CONFLICT (k) DO UPDATE SET v = excluded.v", str(wanted).encode())
        return current, wanted

    async def _create_schema(self, c: asyncpg.Connection) -> None:
        """Create this service's schema unless it exists. Only then: CREATE SCHEMA (even with
        IF NOT EXISTS) needs CREATE on the database, which a least-privilege role lacks."""
        if await c.fetchval("SELECT 1 FROM pg_namespace WHERE nspname = $1", self.SCHEMA):
            if not await c.fetchval("SELECT has_schema_privilege($1, 'USAGE, CREATE')", self.SCHEMA):
                raise StoreError(f"database {self.path}: role {await c.fetchval('SELECT current_user')} may not use "
                                 f"schema {self.SCHEMA}: make it the schema's owner "
                                 f"(ALTER SCHEMA {self.SCHEMA} OWNER TO ...) or grant USAGE and CREATE on it")
            return
        try:
            async with c.transaction():  # a savepoint: the refusal below is reported, not fatal to it
                await c.execute(f"CREATE SCHEMA {self.SCHEMA}")
        except asyncpg.InsufficientPrivilegeError:
            user, db = await c.fetchrow("SELECT current_user, current_database()")
            raise StoreError(f"database {self.path}: schema {self.SCHEMA} does not exist and role {user} may not "
                             f"create it: run CREATE SCHEMA {self.SCHEMA} AUTHORIZATION {user} as the database's "
                             f"owner, or GRANT CREATE ON DATABASE {db} TO {user}") from None

    # --- connections and transactions ------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _conn(self) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection. Whatever the block raises from the driver is translated here,
        once: unreachable or retryable → StoreError (503 with Retry-After), a value the
        database cannot take → BadRequest (400). Clients are never told the URL; the log is."""
        try:
            async with self._pool.acquire(timeout=QUERY_TIMEOUT) as c:
                yield c
        except UNREACHABLE as e:
            detail = f"database {self.path}: {_describe(e)}"
            log.warning("database_unavailable", detail=detail)
            raise StoreError("the database is unavailable; try again shortly", retry_after=1, detail=detail) from None
        except RETRYABLE as e:
            detail = f"database {self.path}: {_describe(e)}"
            log.warning("database_retry", detail=detail)
            raise StoreError("the database could not complete this request now; try again", retry_after=1,
                             detail=detail) from None
        except asyncpg.InvalidSQLStatementNameError:  # a cached statement another server connection never saw
            detail = (f"database {self.path}: a prepared statement vanished between statements: a transaction "
                      "pooler is in between; set `pooler = true` (--pooler)")
            log.error("database_pooler_detected", detail=detail)
            raise StoreError("the database could not complete this request now; try again", retry_after=1,
                             detail=detail) from None
        except asyncpg.InsufficientPrivilegeError as e:  # an operator's grant is missing: name it to them
            detail = f"database {self.path}: {_describe(e)}: grant this service's role the privilege"
            log.error("database_privilege_missing", detail=detail)
            raise StoreError("the database refused this request; the operator has been told", detail=detail) from None
        except asyncpg.DataError as e:  # e.g. a character the database's encoding has no room for
            log.info("database_refused_value", error=getattr(e, "sqlstate", None))
            raise BadRequest("a value in this request cannot be stored") from None

    @contextlib.asynccontextmanager
    async def _tx(self) -> AsyncIterator[asyncpg.Connection]:
        """A transaction; its commit is durable (synchronous_commit at least on) on exit."""
        async with self._conn() as c:
            tx = c.transaction()
            await tx.start()
            try:
                if self._sync_local:
                    await c.execute("SET LOCAL synchronous_commit = on")
                yield c
            except BaseException:
                await tx.rollback()
                raise
            started = time.perf_counter()
            await tx.commit()
            if self.commit_observer is not None:
                self.commit_observer(time.perf_counter() - started)

    async def _write_all(self, sql: str, *args: Any) -> list:
        """One writing statement, committed durably as it ends."""
        if not self._sync_local:
            return await self._all(sql, *args)
        async with self._tx() as c:
            return list(await c.fetch(sql, *args))

    async def _one(self, sql: str, *args: Any) -> Any:
        async with self._conn() as c:
            return await c.fetchrow(sql, *args)

    async def _all(self, sql: str, *args: Any) -> list:
        async with self._conn() as c:
            return list(await c.fetch(sql, *args))

    async def ping(self) -> bool:
        """Whether the database answers now and holds the schema this build serves."""
        try:
            return await asyncio.wait_for(self.stored_version(), QUERY_TIMEOUT) == self.schema_version()
        except (TimeoutError, StoreError):
            return False

    # --- LISTEN ----------------------------------------------------------------------------------

    async def watch(self, channel: str, wake: Callable[[], None]) -> None:
        """Call `wake()` on every NOTIFY on `channel`, and after every (re)connect, since
        notifications sent while disconnected are lost. A dedicated connection outside the
        pool (the pool's reset would UNLISTEN it); reconnects by itself."""
        if self._listen_url is None:  # behind a pooler, LISTEN hears nothing: callers poll
            log.info("listen_off", channel=channel, reason="pooler without listen_database")
            return
        listener = _Listener(channel, wake)
        self._listeners.append(listener)
        listener.task = asyncio.create_task(self._listen(listener))

    async def _listen(self, listener: _Listener) -> None:
        delay = 0.1
        while True:
            try:
                conn = await asyncpg.connect(self._listen_url, **self._connect_args)
                listener.conn = conn
                await conn.add_listener(listener.channel, lambda *_: listener.wake())
                listener.wake()  # catch up on what was missed while disconnected
                delay = 0.1
                while not conn.is_closed():  # a heartbeat: a dead connection is found within 1 s
                    await asyncio.sleep(0.5)
                    await conn.fetchval("SELECT 1", timeout=1.0)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.warning("listen_lost", channel=listener.channel, error=_describe(e))
            finally:
                if listener.conn is not None and not listener.conn.is_closed():
                    listener.conn.terminate()
                listener.conn = None
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)

    def listening(self) -> bool:
        return bool(self._listeners) and all(x.conn is not None and not x.conn.is_closed() for x in self._listeners)

    # --- what every service stores -----------------------------------------------------------------

    async def _audit_for(self, c: asyncpg.Connection, audit: AuditFor[Change], change: Change) -> None:
        """Store the record `audit` makes of `change` (if any) in this transaction."""
        record = audit(change)
        if record is not None:
            await self._audit(c, [record])

    async def _audit(self, c: asyncpg.Connection, records: list[AuditRecord]) -> None:
        await c.executemany(
            f'INSERT INTO {self.SCHEMA}.audit (at, event, outcome, request_id, client, token_id, parent, org, "user", detail)'
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            [(r.at, r.event, r.outcome, r.request_id, r.client, r.token_id, r.parent, r.org, r.user,
              json.dumps(r.detail) if r.detail else None) for r in records],
        )

    async def write_audit(self, records: list[AuditRecord]) -> None:
        if records:
            async with self._tx() as c:
                await self._audit(c, records)

    async def audit_rows(self, event: str | None = None) -> list[AuditRow]:
        cols = 'seq, at, event, outcome, request_id, client, token_id, parent, org, "user", detail'
        if event is None:
            rows = await self._all(f"SELECT {cols} FROM {self.SCHEMA}.audit ORDER BY seq")
        else:
            rows = await self._all(f"SELECT {cols} FROM {self.SCHEMA}.audit WHERE event = $1 ORDER BY seq", event)
        return [AuditRow(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], json.loads(r[10]) if r[10] else None)
                for r in rows]

    async def get_meta(self, key: str) -> bytes | None:
        row = await self._one(f"SELECT v FROM {self.SCHEMA}.meta WHERE k = $1", key)
        return bytes(row[0]) if row else None

    async def ensure_meta(self, key: str, value: bytes) -> bytes:
        async with self._tx() as c:
            await c.execute(f"INSERT INTO {self.SCHEMA}.meta (k, v) VALUES ($1, $2) ON CONFLICT (k) DO NOTHING", key, value)
            return bytes(await c.fetchval(f"SELECT v FROM {self.SCHEMA}.meta WHERE k = $1", key))

    async def add_admin(self, digest: bytes, now: int) -> None:
        async with self._tx() as c:
            await c.execute(f"INSERT INTO {self.SCHEMA}.admins (hash, created_at) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                            digest, now)

    async def list_admins(self) -> list[tuple[bytes, int]]:
        return [(bytes(r[0]), r[1]) for r in await self._all(f"SELECT hash, created_at FROM {self.SCHEMA}.admins ORDER BY created_at")]

    async def remove_admin(self, digest: bytes) -> bool:
        async with self._tx() as c:
            return await c.fetchval(f"DELETE FROM {self.SCHEMA}.admins WHERE hash = $1 RETURNING 1", digest) is not None

    async def is_admin(self, credential: str | None) -> bool:
        if not credential or not credential.startswith(ADMIN):
            return False
        return await self._one(f"SELECT 1 FROM {self.SCHEMA}.admins WHERE hash = $1", secret_digest(credential)) is not None

    async def in_use(self) -> bool:
        """Whether a service process is connected to this schema now (other than us)."""
        async with self._conn() as c:
            return bool(await c.fetchval(
                "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND application_name = $1 AND pid <> pg_backend_pid()", f"sable-{self.SCHEMA}-service"))

    async def snapshot(self, tables: Sequence[tuple[str, Sequence[str]]]) -> dict[str, list[tuple]]:
        """Every row of `tables`, read in one REPEATABLE READ transaction: one snapshot."""
        out: dict[str, list[tuple]] = {}
        async with self._conn() as c:
            async with c.transaction(isolation="repeatable_read", readonly=True):
                for name, cols in tables:
                    quoted = ", ".join(f'"{x}"' for x in cols)
                    rows = await c.fetch(f"SELECT {quoted} FROM {self.SCHEMA}.{name}")
                    out[name] = [tuple(bytes(v) if isinstance(v, memoryview) else v for v in r) for r in rows]
        return out

    async def load(self, tables: Sequence[tuple[str, Sequence[str]]], data: dict[str, list[tuple]]) -> None:
        """Insert rows as given (ids, sequence numbers and all) in one transaction, then move
        each sequence past the highest number copied."""
        async with self._tx() as c:
            await c.execute(f"DELETE FROM {self.SCHEMA}.meta WHERE k = 'schema_version'")  # the source's comes with the data
            for name, cols in tables:
                if data[name]:
                    await c.copy_records_to_table(name, schema_name=self.SCHEMA, records=data[name], columns=list(cols),
                                                  timeout=600)
                if "seq" in cols:
                    await c.execute(f"SELECT setval(pg_get_serial_sequence('{self.SCHEMA}.{name}', 'seq'),"
                                    f" COALESCE((SELECT MAX(seq) FROM {self.SCHEMA}.{name}), 0) + 1, false)")

    async def row_count(self, tables: Sequence[tuple[str, Sequence[str]]]) -> int:
        total = 0
        for name, _ in tables:
            where = " WHERE k <> 'schema_version'" if name == "meta" else ""
            total += (await self._one(f"SELECT COUNT(*) FROM {self.SCHEMA}.{name}{where}"))[0]
        return total

    async def reseal(self, columns, fn, audit: AuditRecord, progress=None) -> Resealed:
        """Every value in `columns` replaced by `fn(column, value)` in one transaction, the
        tables locked against writers throughout (see `server.store.ServiceStore.reseal`)."""
        work = Resealing(fn, progress)
        async with self._tx() as c:
            for table in dict.fromkeys(col.table for col in columns):
                await c.execute(f"LOCK TABLE {self.SCHEMA}.{table} IN EXCLUSIVE MODE")
            for col in columns:
                table = f"{self.SCHEMA}.{col.table}"
                where = f" AND ({col.where})" if col.where else ""
                work.column(col, await c.fetchval(f"SELECT COUNT(*) FROM {table} WHERE true{where}"))
                last = None
                while True:
                    after = "" if last is None else f" AND {col.key} > $1"
                    page = await c.fetch(f"SELECT {col.key}, {col.key}, {col.column} FROM {table} WHERE true{where}"
                                         f"{after} ORDER BY {col.key} LIMIT {RESEAL_PAGE}", *(() if last is None else (last,)))
                    if not page:
                        break
                    updates = work.page(page)  # the row's handle is its key
                    key_type = "bytea" if isinstance(page[0][0], bytes | memoryview) else "text"
                    await c.execute(f"UPDATE {table} SET {col.column} = u.v FROM unnest($1::{key_type}[], $2::bytea[])"
                                    f" AS u(k, v) WHERE {table}.{col.key} = u.k",
                                    [k for _, k in updates], [v for v, _ in updates])
                    last = page[-1][0]
            resealed = work.finish(audit)
            await self._audit(c, [audit])
        return resealed

    async def integrity_ok(self) -> bool:
        return await self.ping()

