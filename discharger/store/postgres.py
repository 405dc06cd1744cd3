"""The discharger's store on PostgreSQL (schema `discharger`): all of its PostgreSQL SQL."""

from __future__ import annotations

from discharger.store import UserRow
from server.audit import AuditRecord
from server.postgres import COMMON_V1, PgDatabase

V1 = """
CREATE TABLE IF NOT EXISTS users (
    username TEXT PRIMARY KEY,
    password_hash BYTEA NOT NULL,
    disabled INTEGER NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS memberships (
    username TEXT NOT NULL REFERENCES users(username),
    org TEXT NOT NULL,
    PRIMARY KEY (username, org)
);
CREATE TABLE IF NOT EXISTS sessions (
    hash BYTEA PRIMARY KEY,
    username TEXT NOT NULL REFERENCES users(username),
    expires_at BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_expiry ON sessions(expires_at);
"""

# v2: keys sealed in the database (replicas share them), the login throttle shared by replicas.
V2 = """
CREATE TABLE IF NOT EXISTS keys (
    kid TEXT PRIMARY KEY,
    sealed BYTEA NOT NULL,
    position INTEGER NOT NULL UNIQUE,
    created_at BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS login_failures (
    subject TEXT NOT NULL,
    at DOUBLE PRECISION NOT NULL
);
CREATE INDEX IF NOT EXISTS login_failures_subject ON login_failures(subject, at);
CREATE INDEX IF NOT EXISTS login_failures_at ON login_failures(at);
"""

# Advisory lock spaces (the two-key form; the authority's feed lock is a one-key lock).
_KEYS_LOCK = (0x5AB1E, 1)
_THROTTLE_SPACE = 0x5AB1F


class PostgresStore(PgDatabase):
    SCHEMA = "discharger"
    MIGRATIONS = (COMMON_V1 + V1, V2)

    async def create_user(self, username: str, password_hash: bytes, orgs: list[str], now: int,
                          audit: AuditRecord) -> bool:
        async with self._tx() as c:
            done = await c.fetchval("INSERT INTO users (username, password_hash, created_at) VALUES ($1, $2, $3)"
                                    " ON CONFLICT DO NOTHING RETURNING 1", username, password_hash, now)
            if not done:
                return False
            await c.executemany("INSERT INTO memberships (username, org) VALUES ($1, $2)", [(username, o) for o in orgs])
            await self._audit(c, [audit])
            return True

    async def get_user(self, username: str) -> UserRow | None:
        async with self._conn() as c:
            row = await c.fetchrow("SELECT username, password_hash, disabled FROM users WHERE username = $1", username)
            if row is None:
                return None
            orgs = await c.fetch("SELECT org FROM memberships WHERE username = $1", username)
        return UserRow(row[0], bytes(row[1]), bool(row[2]), frozenset(o[0] for o in orgs))

    async def set_orgs(self, username: str, orgs: list[str], audit: AuditRecord) -> bool:
        async with self._tx() as c:
            if await c.fetchval("SELECT 1 FROM users WHERE username = $1 FOR UPDATE", username) is None:
                return False
            await c.execute("DELETE FROM memberships WHERE username = $1", username)
            await c.executemany("INSERT INTO memberships (username, org) VALUES ($1, $2)", [(username, o) for o in orgs])
            await self._audit(c, [audit])
            return True

    async def disable_user(self, username: str, audit: AuditRecord) -> bool:
        async with self._tx() as c:
            if await c.fetchval("UPDATE users SET disabled = 1 WHERE username = $1 RETURNING 1", username) is None:
                return False
            await self._audit(c, [audit])
            return True

    async def create_session(self, digest: bytes, username: str, expires_at: int, now: int,
                             audit: AuditRecord) -> None:
        async with self._tx() as c:
            await c.execute("DELETE FROM sessions WHERE expires_at <= $1", now)
            await c.execute("INSERT INTO sessions (hash, username, expires_at) VALUES ($1, $2, $3)",
                            digest, username, expires_at)
            await self._audit(c, [audit])

    async def session_user(self, digest: bytes, now: int) -> str | None:
        row = await self._one("SELECT username FROM sessions WHERE hash = $1 AND expires_at > $2", digest, now)
        return row[0] if row else None

    async def delete_session(self, digest: bytes) -> bool:
        async with self._tx() as c:
            return await c.fetchval("DELETE FROM sessions WHERE hash = $1 RETURNING 1", digest) is not None

    # --- keys -------------------------------------------------------------------------------

    async def list_keys(self) -> list[tuple[str, bytes]]:
        return [(r[0], bytes(r[1])) for r in await self._all("SELECT kid, sealed FROM keys ORDER BY position DESC")]

    async def add_keys_if_none(self, rows: list[tuple[str, bytes]], now: int, audit: AuditRecord) -> bool:
        async with self._tx() as c:
            await c.execute("SELECT pg_advisory_xact_lock($1, $2)", *_KEYS_LOCK)  # replicas starting together
            if await c.fetchval("SELECT 1 FROM keys LIMIT 1") is not None:
                return False
            await c.executemany("INSERT INTO keys (kid, sealed, position, created_at) VALUES ($1, $2, $3, $4)",
                                [(kid, sealed, len(rows) - i, now) for i, (kid, sealed) in enumerate(rows)])
            await self._audit(c, [audit])
            return True

    async def add_key(self, kid: str, sealed: bytes, now: int, audit: AuditRecord) -> None:
        async with self._tx() as c:
            await c.execute("SELECT pg_advisory_xact_lock($1, $2)", *_KEYS_LOCK)
            await c.execute("INSERT INTO keys (kid, sealed, position, created_at) "
                            "VALUES ($1, $2, (SELECT coalesce(max(position), 0) + 1 FROM keys), $3)", kid, sealed, now)
            await self._audit(c, [audit])

    async def retire_key(self, kid: str, audit: AuditRecord) -> str:
        async with self._tx() as c:
            await c.execute("SELECT pg_advisory_xact_lock($1, $2)", *_KEYS_LOCK)
            if await c.fetchval("SELECT 1 FROM keys WHERE kid = $1", kid) is None:
                return "unknown"
            if await c.fetchval("SELECT count(*) FROM keys") == 1:
                return "last"
            await c.execute("DELETE FROM keys WHERE kid = $1", kid)
            await self._audit(c, [audit])
            return "ok"

    # --- the login throttle -----------------------------------------------------------------

    async def login_attempt(self, limits: list[tuple[str, int]], now: float, window: float) -> float | None:
        subjects = sorted(s for s, _ in limits)
        async with self._tx() as c:
            for s in subjects:  # one subject's check-and-count at a time, across replicas
                await c.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))", _THROTTLE_SPACE, s)
            counts = {r[0]: (r[1], r[2]) for r in await c.fetch(
                "SELECT subject, count(*), min(at) FROM login_failures WHERE subject = ANY($1) AND at > $2 "
                "GROUP BY subject", subjects, now - window)}
            wait = None
            for subject, limit in limits:
                n, oldest = counts.get(subject, (0, now))
                if n >= limit:
                    wait = max(wait or 0.0, oldest + window - now)
            if wait is None:
                await c.executemany("INSERT INTO login_failures (subject, at) VALUES ($1, $2)",
                                    [(s, now) for s in subjects])
            return wait

    async def clear_login_failures(self, subject: str) -> None:
        async with self._tx() as c:
            await c.execute("DELETE FROM login_failures WHERE subject = $1", subject)

    async def prune_login_failures(self, before: float) -> None:
        async with self._tx() as c:
            await c.execute("DELETE FROM login_failures WHERE at <= $1", before)
