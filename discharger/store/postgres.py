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


class PostgresStore(PgDatabase):
    SCHEMA = "discharger"
    MIGRATIONS = (COMMON_V1 + V1,)

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
