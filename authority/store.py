"""The authority's storage: SQLite through aiosqlite. All of its SQL lives here.

Handlers and domain code call these methods and nothing else, so another backend
(PostgreSQL) can stand in without touching them. Durability comes from `clients.sqlite`.
"""

from __future__ import annotations

from dataclasses import dataclass

from clients.audit import AuditRecord
from clients.sqlite import Database, StoreError  # noqa: F401  (StoreError is part of this API)

SCHEMA = """
CREATE TABLE IF NOT EXISTS orgs (name TEXT PRIMARY KEY, created_at INTEGER NOT NULL);
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
CREATE TABLE IF NOT EXISTS strip_lineage (
    fingerprint BLOB NOT NULL,
    service_id TEXT NOT NULL REFERENCES tokens(id)
);
CREATE INDEX IF NOT EXISTS strip_lineage_fingerprint ON strip_lineage(fingerprint);
CREATE TABLE IF NOT EXISTS revocations (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    token_id TEXT NOT NULL,
    scope TEXT NOT NULL,
    at INTEGER NOT NULL,
    fingerprint BLOB  -- for scope 'attenuation': which one, so caches can add it in place
);
"""


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


class Store(Database):
    SCHEMA = SCHEMA

    # --- orgs ----------------------------------------------------------------------------

    async def create_org(self, name: str, now: int, audit: AuditRecord) -> bool:
        def run(c):
            cur = c.execute("INSERT OR IGNORE INTO orgs (name, created_at) VALUES (?, ?)", (name, now))
            if cur.rowcount:
                self._audit(c, [audit])
            return cur.rowcount == 1
        return await self._tx(run)

    async def list_orgs(self) -> list[tuple[str, int]]:
        return [tuple(r) for r in await self._all("SELECT name, created_at FROM orgs ORDER BY name")]

    async def org_exists(self, name: str) -> bool:
        return await self._one("SELECT 1 FROM orgs WHERE name = ?", (name,)) is not None

    # --- tokens ----------------------------------------------------------------------------

    async def insert_token(self, row: TokenRow, audit: AuditRecord, lineage: list[bytes] = ()) -> bool:
        """Insert a token. A child (service token) is inserted only while its parent is
        unrevoked and none of the attenuations it was stripped from (`lineage`, signature
        fingerprints) is revoked; revoking one of those later revokes the child too."""
        def run(c):
            if row.parent is not None:
                parent = (c.execute("SELECT revoked_at FROM tokens WHERE id = ?", (row.parent,))).fetchone()
                if parent is None or parent[0] is not None:
                    return False
            for fp in lineage:
                if (c.execute("SELECT 1 FROM revoked_attenuations WHERE fingerprint = ?", (fp,))).fetchone():
                    return False
            c.execute(
                f"INSERT INTO tokens ({_TOKEN_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (row.id, row.kind, row.name, row.org, row.parent, row.user, row.caveat_count,
                 row.sealed_key, row.created_at, row.revoked_at, row.last_used_at),
            )
            c.executemany("INSERT INTO strip_lineage (fingerprint, service_id) VALUES (?, ?)",
                                [(fp, row.id) for fp in lineage])
            self._audit(c, [audit])
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
        def run(c):
            c.executemany("UPDATE tokens SET last_used_at = ? WHERE id = ?", [(t, i) for i, t in used.items()])
        await self._tx(run)

    # --- revocation ------------------------------------------------------------------------

    @staticmethod
    def _cascade(c, roots: list[str], now: int) -> list[str]:
        """Revoke these tokens and all their descendants not yet revoked; return their ids."""
        if not roots:
            return []
        marks = ",".join("?" * len(roots))
        cur = c.execute(
            f"WITH RECURSIVE sub(id) AS (SELECT id FROM tokens WHERE id IN ({marks})"
            " UNION SELECT t.id FROM tokens t JOIN sub ON t.parent = sub.id)"
            " SELECT tokens.id FROM tokens JOIN sub USING (id) WHERE tokens.revoked_at IS NULL",
            roots,
        )
        ids = [r[0] for r in cur.fetchall()]
        c.executemany("UPDATE tokens SET revoked_at = ? WHERE id = ?", [(now, i) for i in ids])
        c.executemany("INSERT INTO revocations (token_id, scope, at) VALUES (?, 'token', ?)",
                            [(i, now) for i in ids])
        return ids

    async def revoke_token(self, token_id: str, now: int, audit: AuditRecord) -> list[str] | None:
        """Revoke a token and every descendant not yet revoked. None if the id is unknown."""
        def run(c):
            if (c.execute("SELECT 1 FROM tokens WHERE id = ?", (token_id,))).fetchone() is None:
                return None
            ids = self._cascade(c, [token_id], now)
            if ids:
                audit.detail = {**(audit.detail or {}), "revoked": ids}
                self._audit(c, [audit])
            return ids
        return await self._tx(run)

    async def revoke_attenuation(self, token_id: str, fingerprint: bytes, now: int,
                                 audit: AuditRecord) -> list[str] | None:
        """Revoke one attenuation by its signature's fingerprint, and every service token
        stripped from it or from a further attenuation of it. None if already revoked;
        otherwise the ids of the service tokens revoked with it."""
        def run(c):
            cur = c.execute(
                "INSERT OR IGNORE INTO revoked_attenuations (fingerprint, token_id, revoked_at) VALUES (?, ?, ?)",
                (fingerprint, token_id, now),
            )
            if not cur.rowcount:
                return None
            c.execute("INSERT INTO revocations (token_id, scope, at, fingerprint) VALUES (?, 'attenuation', ?, ?)",
                            (token_id, now, fingerprint))
            children = c.execute("SELECT service_id FROM strip_lineage WHERE fingerprint = ?", (fingerprint,))
            ids = self._cascade(c, [r[0] for r in children.fetchall()], now)
            if ids:
                audit.detail = {**(audit.detail or {}), "revoked": ids}
            self._audit(c, [audit])
            return ids
        return await self._tx(run)

    async def revocations_after(self, after: int, limit: int) -> list[tuple[int, str, str, int, bytes | None]]:
        """(seq, token id, scope, at, fingerprint of a revoked attenuation) after a cursor."""
        return [tuple(r) for r in await self._all(
            "SELECT seq, token_id, scope, at, fingerprint FROM revocations WHERE seq > ? ORDER BY seq LIMIT ?",
            (after, limit)
        )]

    async def revocation_head(self) -> int:
        row = await self._one("SELECT COALESCE(MAX(seq), 0) FROM revocations")
        return row[0]
