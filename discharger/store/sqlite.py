"""The discharger's store on SQLite: all of the discharger's SQL lives here."""

from __future__ import annotations

import sqlite3

from discharger.store import UserRow
from server.audit import AuditRecord
from server.sqlite import COMMON_V1, Database

V1 = """
CREATE TABLE IF NOT EXISTS users (
    username TEXT PRIMARY KEY,
    password_hash BLOB NOT NULL,
    disabled INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS memberships (
    username TEXT NOT NULL REFERENCES users(username),
    org TEXT NOT NULL,
    PRIMARY KEY (username, org)
);
CREATE TABLE IF NOT EXISTS sessions (
    hash BLOB PRIMARY KEY,
    username TEXT NOT NULL REFERENCES users(username),
    expires_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_expiry ON sessions(expires_at);
"""


class SqliteStore(Database):
    MIGRATIONS = (COMMON_V1 + V1,)

    async def create_user(self, username: str, password_hash: bytes, orgs: list[str], now: int,
                          audit: AuditRecord) -> bool:
        def run(c: sqlite3.Connection) -> bool:
            cur = c.execute(
                "INSERT OR IGNORE INTO users (username, password_hash, created_at) VALUES (?, ?, ?)",
                (username, password_hash, now),
            )
            if not cur.rowcount:
                return False
            c.executemany("INSERT INTO memberships (username, org) VALUES (?, ?)", [(username, o) for o in orgs])
            self._audit(c, [audit])
            return True
        return await self._tx(run)

    async def get_user(self, username: str) -> UserRow | None:
        row = await self._one("SELECT username, password_hash, disabled FROM users WHERE username = ?", (username,))
        if row is None:
            return None
        orgs = await self._all("SELECT org FROM memberships WHERE username = ?", (username,))
        return UserRow(row[0], row[1], bool(row[2]), frozenset(o[0] for o in orgs))

    async def set_orgs(self, username: str, orgs: list[str], audit: AuditRecord) -> bool:
        def run(c: sqlite3.Connection) -> bool:
            if c.execute("SELECT 1 FROM users WHERE username = ?", (username,)).fetchone() is None:
                return False
            c.execute("DELETE FROM memberships WHERE username = ?", (username,))
            c.executemany("INSERT INTO memberships (username, org) VALUES (?, ?)", [(username, o) for o in orgs])
            self._audit(c, [audit])
            return True
        return await self._tx(run)

    async def disable_user(self, username: str, audit: AuditRecord) -> bool:
        def run(c: sqlite3.Connection) -> bool:
            if not c.execute("UPDATE users SET disabled = 1 WHERE username = ?", (username,)).rowcount:
                return False
            self._audit(c, [audit])
            return True
        return await self._tx(run)

    async def create_session(self, digest: bytes, username: str, expires_at: int, now: int,
                             audit: AuditRecord) -> None:
        def run(c: sqlite3.Connection) -> None:
            c.execute("DELETE FROM sessions WHERE expires_at <= ?", (now,))
            c.execute("INSERT INTO sessions (hash, username, expires_at) VALUES (?, ?, ?)",
                      (digest, username, expires_at))
            self._audit(c, [audit])
        await self._tx(run)

    async def session_user(self, digest: bytes, now: int) -> str | None:
        row = await self._one("SELECT username FROM sessions WHERE hash = ? AND expires_at > ?", (digest, now))
        return row[0] if row else None

    async def delete_session(self, digest: bytes) -> bool:
        def run(c: sqlite3.Connection) -> bool:
            return c.execute("DELETE FROM sessions WHERE hash = ?", (digest,)).rowcount == 1
        return await self._tx(run)
