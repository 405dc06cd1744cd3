"""The discharger's storage: users, org memberships and sessions. All of its SQL lives here."""

from __future__ import annotations

from dataclasses import dataclass

from clients.audit import AuditRecord
from clients.sqlite import Database

SCHEMA = """
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


@dataclass(slots=True)
class UserRow:
    username: str
    password_hash: bytes
    disabled: bool
    orgs: frozenset[str]


class Store(Database):
    SCHEMA = SCHEMA

    async def create_user(self, username: str, password_hash: bytes, orgs: list[str], now: int,
                          audit: AuditRecord) -> bool:
        def run(c):
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
        def run(c):
            if (c.execute("SELECT 1 FROM users WHERE username = ?", (username,))).fetchone() is None:
                return False
            c.execute("DELETE FROM memberships WHERE username = ?", (username,))
            c.executemany("INSERT INTO memberships (username, org) VALUES (?, ?)", [(username, o) for o in orgs])
            self._audit(c, [audit])
            return True
        return await self._tx(run)

    async def disable_user(self, username: str, audit: AuditRecord) -> bool:
        def run(c):
            cur = c.execute("UPDATE users SET disabled = 1 WHERE username = ?", (username,))
            if not cur.rowcount:
                return False
            self._audit(c, [audit])
            return True
        return await self._tx(run)

    async def create_session(self, digest: bytes, username: str, expires_at: int, now: int,
                             audit: AuditRecord) -> None:
        def run(c):
            c.execute("DELETE FROM sessions WHERE expires_at <= ?", (now,))
            c.execute("INSERT INTO sessions (hash, username, expires_at) VALUES (?, ?, ?)",
                            (digest, username, expires_at))
            self._audit(c, [audit])
        await self._tx(run)

    async def session_user(self, digest: bytes, now: int) -> str | None:
        row = await self._one("SELECT username FROM sessions WHERE hash = ? AND expires_at > ?", (digest, now))
        return row[0] if row else None

    async def delete_session(self, digest: bytes) -> bool:
        def run(c):
            return (c.execute("DELETE FROM sessions WHERE hash = ?", (digest,))).rowcount == 1
        return await self._tx(run)
