"""The authority's store on SQLite: all of the authority's SQL lives here."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence

from authority.store import (
    RECEIVED_FOR,
    TOKEN_COLUMNS,
    ConsoleSessionRow,
    DeliveryRow,
    DischargeUsed,
    OrgRow,
    RevocationRow,
    TokenRow,
    WebhookRow,
    delivery_row,
    token_row,
    token_values,
    webhook_row,
)
from server.audit import AuditFor, AuditRecord, ListedIn
from server.sqlite import COMMON_V1, Database

V1 = """
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
    fingerprint BLOB
);
"""

# v3: who made each token, its caveats and expiry (0.1.0 rows: permission tokens by the
# admin credential, service tokens by their user), and the console's browser state.
V3 = """
ALTER TABLE tokens ADD COLUMN created_by TEXT;
ALTER TABLE tokens ADD COLUMN caveats TEXT;
ALTER TABLE tokens ADD COLUMN expires_at INTEGER;
UPDATE tokens SET created_by = CASE WHEN kind = 'permission' THEN '@admin' ELSE user END WHERE created_by IS NULL;
CREATE TABLE IF NOT EXISTS console_sessions (
    hash BLOB PRIMARY KEY,
    username TEXT NOT NULL,
    org TEXT NOT NULL,
    role TEXT NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS console_signins (
    hash BLOB PRIMARY KEY,
    sealed BLOB NOT NULL,
    expires_at INTEGER NOT NULL
);
"""

# v5 (SPEC §16): the principal a permission token is sealed for, single-use strips.
V5 = """
ALTER TABLE tokens ADD COLUMN principal TEXT;
ALTER TABLE tokens ADD COLUMN strip_once INTEGER NOT NULL DEFAULT 0;
CREATE TABLE IF NOT EXISTS used_discharges (
    token_id TEXT NOT NULL,
    discharge_id TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (token_id, discharge_id)
);
CREATE INDEX IF NOT EXISTS used_discharges_expiry ON used_discharges(expires_at);
"""

# v6 (SPEC §17): credentials that may only introspect, and which orgs they see.
V6 = """
CREATE TABLE IF NOT EXISTS introspectors (
    hash BLOB PRIMARY KEY,
    orgs TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
"""

# v7 (SPEC §18): credentials reported leaked (user tokens until they expire, admin credentials), the public revocation queue and its counts.
V7 = """
CREATE TABLE IF NOT EXISTS revoked_credentials (
    credential TEXT PRIMARY KEY,
    expires_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS leak_queue (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    credentials BLOB NOT NULL,
    client TEXT,
    received_at INTEGER NOT NULL,
    claimed_until INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS public_revocation_counts (
    client TEXT NOT NULL,
    hour INTEGER NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (client, hour)
);
"""

# v8 (SPEC §18): webhook endpoints and their outbox. A trigger on the audit trail writes one
# outbox row per matching endpoint in the very transaction of the change (a mint, strip,
# revocation or leak), so an event is never lost to a crash and never sent for a rollback.
V8 = """
CREATE TABLE IF NOT EXISTS webhooks (
    id TEXT PRIMARY KEY,
    org TEXT NOT NULL,
    url TEXT NOT NULL,
    events TEXT NOT NULL,
    sealed_secret BLOB NOT NULL,
    state TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    disabled_at INTEGER
);
CREATE INDEX IF NOT EXISTS webhooks_org ON webhooks(org);
CREATE TABLE IF NOT EXISTS received_events (
    id TEXT PRIMARY KEY,
    received_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS org_policies (
    org TEXT PRIMARY KEY,
    max_token_lifetime INTEGER
);
CREATE TABLE IF NOT EXISTS webhook_outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    endpoint_id TEXT NOT NULL,
    audit_seq INTEGER NOT NULL,
    type TEXT NOT NULL,
    due_at INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    first_at INTEGER,
    claimed_until INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS webhook_outbox_due ON webhook_outbox(due_at);
CREATE INDEX IF NOT EXISTS webhook_outbox_endpoint ON webhook_outbox(endpoint_id);
CREATE TRIGGER IF NOT EXISTS audit_to_webhooks AFTER INSERT ON audit
WHEN NEW.event IN ('mint', 'strip', 'revoke', 'leak', 'discharger_event') AND NEW.outcome = 'ok'
BEGIN
    -- the discharger's user.* and principal.* events, to each org they name
    INSERT INTO webhook_outbox (endpoint_id, audit_seq, type, due_at)
    SELECT w.id, NEW.seq, json_extract(NEW.detail, '$.type'), CAST(NEW.at AS INTEGER)
    FROM webhooks w
    WHERE NEW.event = 'discharger_event' AND w.state = 'active'
      AND w.org IN (SELECT value FROM json_each(json_extract(NEW.detail, '$.orgs')))
      AND instr(w.events, '"' || json_extract(NEW.detail, '$.type') || '"') > 0;
    INSERT INTO webhook_outbox (endpoint_id, audit_seq, type, due_at)
    SELECT w.id, NEW.seq, CASE NEW.event WHEN 'revoke' THEN 'token.revoked' WHEN 'leak' THEN 'token.leaked' ELSE 'token.created' END, CAST(NEW.at AS INTEGER)
    FROM webhooks w
    WHERE NEW.event <> 'discharger_event' AND w.state = 'active'
      AND (NEW.event <> 'leak' OR json_extract(NEW.detail, '$.announce') = 1)
      AND w.org = COALESCE(NEW.org, (SELECT org FROM tokens WHERE id = NEW.token_id))
      AND instr(w.events, '"' || CASE NEW.event WHEN 'revoke' THEN 'token.revoked' WHEN 'leak' THEN 'token.leaked' ELSE 'token.created' END || '"') > 0;
    -- expiry notices 7 days and 1 day ahead, written at mint, for those still ahead
    INSERT INTO webhook_outbox (endpoint_id, audit_seq, type, due_at)
    SELECT w.id, NEW.seq, 'token.expiring', t.expires_at - ahead.s
    FROM webhooks w JOIN tokens t ON t.id = NEW.token_id
    JOIN (SELECT 604800 AS s UNION ALL SELECT 86400) ahead
    WHERE NEW.event IN ('mint', 'strip') AND w.state = 'active' AND w.org = t.org
      AND instr(w.events, '"token.expiring"') > 0 AND t.expires_at IS NOT NULL
      AND t.expires_at - ahead.s > CAST(NEW.at AS INTEGER);
END;
"""

_TOKEN_COLS = ", ".join(TOKEN_COLUMNS)
_INSERT_TOKEN = f"INSERT INTO tokens ({_TOKEN_COLS}) VALUES ({', '.join('?' * len(TOKEN_COLUMNS))})"


_WEBHOOK_COLS = "w.id, w.org, w.url, w.events, w.sealed_secret, w.state, w.created_at, w.disabled_at"
_DELIVERIES = (
    "SELECT o.seq, o.type, o.attempts, o.first_at, o.audit_seq, " + _WEBHOOK_COLS + ", a.at, a.token_id, a.org,"
    " a.detail, " + ", ".join(f"t.{c}" for c in TOKEN_COLUMNS) +
    " FROM webhook_outbox o JOIN webhooks w ON w.id = o.endpoint_id JOIN audit a ON a.seq = o.audit_seq"
    " LEFT JOIN tokens t ON t.id = a.token_id"
    " WHERE o.due_at <= ? AND o.claimed_until <= ? AND w.state = 'active' ORDER BY o.due_at, o.seq")


class SqliteStore(Database):
    # v2 and v4 changed only the PostgreSQL schema (functions); versions stay the same on both
    # backends so `sable db copy` can compare them.
    MIGRATIONS = (COMMON_V1 + V1, "SELECT 1", V3, "SELECT 1", V5, V6, V7, V8)

    async def record_discharger_event(self, event_id: str, user: str, session_orgs: list[str] | None, now: int,
                                      audit: AuditRecord) -> bool:
        def run(c: sqlite3.Connection) -> bool:
            c.execute("DELETE FROM received_events WHERE received_at < ?", (now - RECEIVED_FOR,))
            if not c.execute("INSERT OR IGNORE INTO received_events (id, received_at) VALUES (?, ?)",
                             (event_id, now)).rowcount:
                return False
            ended = 0
            if session_orgs is None:
                ended = c.execute("DELETE FROM console_sessions WHERE username = ?", (user,)).rowcount
            elif session_orgs:
                ended = c.execute(f"DELETE FROM console_sessions WHERE username = ? AND org IN"
                                  f" ({', '.join('?' * len(session_orgs))})", (user, *session_orgs)).rowcount
            self._audit(c, [audit.add(sessions_ended=ended)])
            return True
        return await self._tx(run)

    # --- org policies (SPEC §18) -----------------------------------------------------------

    async def max_token_lifetime(self, org: str) -> int | None:
        row = await self._one("SELECT max_token_lifetime FROM org_policies WHERE org = ?", (org,))
        return None if row is None else row[0]

    async def set_max_token_lifetime(self, org: str, seconds: int | None, audit: AuditRecord) -> None:
        def run(c: sqlite3.Connection) -> None:
            c.execute("INSERT INTO org_policies (org, max_token_lifetime) VALUES (?, ?) ON CONFLICT (org)"
                      " DO UPDATE SET max_token_lifetime = excluded.max_token_lifetime", (org, seconds))
            self._audit(c, [audit])
        await self._tx(run)

    # --- webhooks (SPEC §18) ---------------------------------------------------------------

    async def create_webhook(self, row: WebhookRow, audit: AuditRecord) -> None:
        def run(c: sqlite3.Connection) -> None:
            c.execute("INSERT INTO webhooks (id, org, url, events, sealed_secret, state, created_at) VALUES"
                      " (?, ?, ?, ?, ?, ?, ?)", (row.id, row.org, row.url, json.dumps(list(row.events)),
                                                 row.sealed_secret, row.state, row.created_at))
            self._audit(c, [audit])
        await self._tx(run)

    async def webhooks(self, org: str | None = None) -> list[WebhookRow]:
        rows = await self._all(
            f"SELECT {_WEBHOOK_COLS}, (SELECT count(*) FROM webhook_outbox o WHERE o.endpoint_id = w.id)"
            " FROM webhooks w WHERE ? IS NULL OR w.org = ? ORDER BY w.created_at, w.id", (org, org))
        return [webhook_row(r[:8], r[8]) for r in rows]

    async def webhook(self, webhook_id: str) -> WebhookRow | None:
        r = await self._one(f"SELECT {_WEBHOOK_COLS} FROM webhooks w WHERE w.id = ?", (webhook_id,))
        return None if r is None else webhook_row(r)

    async def remove_webhook(self, webhook_id: str, audit: AuditRecord) -> bool:
        def run(c: sqlite3.Connection) -> bool:
            if not c.execute("DELETE FROM webhooks WHERE id = ?", (webhook_id,)).rowcount:
                return False
            c.execute("DELETE FROM webhook_outbox WHERE endpoint_id = ?", (webhook_id,))
            self._audit(c, [audit])
            return True
        return await self._tx(run)

    async def claim_deliveries(self, now: int, lease: int, limit: int) -> list[DeliveryRow]:
        def run(c: sqlite3.Connection) -> list[DeliveryRow]:
            rows = c.execute(_DELIVERIES + " LIMIT ?", (now, now, limit)).fetchall()
            c.executemany("UPDATE webhook_outbox SET claimed_until = ? WHERE seq = ?",
                          [(now + lease, r[0]) for r in rows])
            return [delivery_row(r) for r in rows]
        return await self._tx(run)

    async def delivered(self, seq: int) -> None:
        await self._tx(lambda c: c.execute("DELETE FROM webhook_outbox WHERE seq = ?", (seq,)))

    async def delivery_failed(self, seq: int, now: int, due_at: int | None, audit: AuditRecord) -> None:
        def run(c: sqlite3.Connection) -> None:
            if due_at is not None:
                c.execute("UPDATE webhook_outbox SET attempts = attempts + 1, first_at = COALESCE(first_at, ?),"
                          " due_at = ?, claimed_until = 0 WHERE seq = ?", (now, due_at, seq))
                return
            c.execute("UPDATE webhook_outbox SET attempts = attempts + 1, claimed_until = 0 WHERE seq = ?", (seq,))
            if c.execute("UPDATE webhooks SET state = 'disabled', disabled_at = ? WHERE state = 'active' AND id ="
                         " (SELECT endpoint_id FROM webhook_outbox WHERE seq = ?)", (now, seq)).rowcount:
                self._audit(c, [audit])
        await self._tx(run)

    async def outbox_depth(self) -> int:
        row = await self._one("SELECT count(*) FROM webhook_outbox")
        return int(row[0]) if row else 0

    # --- leaks (SPEC §18) ------------------------------------------------------------------

    async def revoke_credential(self, key: str, expires_at: int, now: int, audit: AuditRecord) -> bool:
        def run(c: sqlite3.Connection) -> bool:
            c.execute("DELETE FROM revoked_credentials WHERE expires_at < ?", (now,))
            new = c.execute("INSERT OR IGNORE INTO revoked_credentials (credential, expires_at) VALUES (?, ?)",
                            (key, expires_at)).rowcount == 1
            if new:
                self._audit(c, [audit])
            return new
        return await self._tx(run)

    async def credential_revoked(self, key: str) -> bool:
        return await self._one("SELECT 1 FROM revoked_credentials WHERE credential = ?", (key,)) is not None

    async def count_public_revocation(self, client: str, hour: int, limit: int) -> bool:
        def run(c: sqlite3.Connection) -> bool:
            c.execute("DELETE FROM public_revocation_counts WHERE hour < ?", (hour,))
            row = c.execute("SELECT n FROM public_revocation_counts WHERE client = ? AND hour = ?",
                            (client, hour)).fetchone()
            if row is not None and row[0] >= limit:
                return False
            c.execute("INSERT INTO public_revocation_counts (client, hour, n) VALUES (?, ?, 1)"
                      " ON CONFLICT (client, hour) DO UPDATE SET n = n + 1", (client, hour))
            return True
        return await self._tx(run)

    async def queue_leak_report(self, credentials: bytes, client: str | None, now: int) -> None:
        await self._tx(lambda c: c.execute("INSERT INTO leak_queue (credentials, client, received_at) VALUES (?, ?, ?)",
                                           (credentials, client, now)))

    async def claim_leak_reports(self, now: int, lease: int, limit: int) -> list[tuple[int, bytes, str | None]]:
        def run(c: sqlite3.Connection) -> list[tuple[int, bytes, str | None]]:
            rows = c.execute("SELECT seq, credentials, client FROM leak_queue WHERE claimed_until <= ? ORDER BY seq"
                             " LIMIT ?", (now, limit)).fetchall()
            c.executemany("UPDATE leak_queue SET claimed_until = ? WHERE seq = ?", [(now + lease, r[0]) for r in rows])
            return [(r[0], bytes(r[1]), r[2]) for r in rows]
        return await self._tx(run)

    async def finish_leak_report(self, report_id: int) -> None:
        await self._tx(lambda c: c.execute("DELETE FROM leak_queue WHERE seq = ?", (report_id,)))

    async def leak_queue_depth(self) -> int:
        row = await self._one("SELECT count(*) FROM leak_queue")
        return int(row[0]) if row else 0

    # --- introspect-only credentials -------------------------------------------------------

    async def add_introspector(self, digest: bytes, orgs: Sequence[str], now: int) -> None:
        def run(c: sqlite3.Connection) -> None:
            c.execute("INSERT OR IGNORE INTO introspectors (hash, orgs, created_at) VALUES (?, ?, ?)",
                      (digest, json.dumps(sorted(orgs)), now))
        await self._tx(run)

    async def introspector(self, digest: bytes) -> tuple[str, ...] | None:
        row = await self._one("SELECT orgs FROM introspectors WHERE hash = ?", (digest,))
        return None if row is None else tuple(json.loads(row[0]))

    async def list_introspectors(self) -> list[tuple[bytes, tuple[str, ...], int]]:
        rows = await self._all("SELECT hash, orgs, created_at FROM introspectors ORDER BY created_at")
        return [(bytes(r[0]), tuple(json.loads(r[1])), r[2]) for r in rows]

    async def remove_introspector(self, digest: bytes) -> bool:
        def run(c: sqlite3.Connection) -> bool:
            return c.execute("DELETE FROM introspectors WHERE hash = ?", (digest,)).rowcount == 1
        return await self._tx(run)

    # --- orgs ----------------------------------------------------------------------------

    async def create_org(self, name: str, now: int, audit: AuditRecord) -> bool:
        def run(c: sqlite3.Connection) -> bool:
            cur = c.execute("INSERT OR IGNORE INTO orgs (name, created_at) VALUES (?, ?)", (name, now))
            if cur.rowcount:
                self._audit(c, [audit])
            return cur.rowcount == 1
        return await self._tx(run)

    async def list_orgs(self) -> list[OrgRow]:
        return [OrgRow(*r) for r in await self._all("SELECT name, created_at FROM orgs ORDER BY name")]

    async def org_exists(self, name: str) -> bool:
        return await self._one("SELECT 1 FROM orgs WHERE name = ?", (name,)) is not None

    # --- tokens ----------------------------------------------------------------------------

    async def insert_token(self, row: TokenRow, audit: AuditRecord, lineage: Iterable[bytes] = (),
                           once: tuple[str, int] | None = None) -> bool:
        lineage = list(lineage)

        def run(c: sqlite3.Connection) -> bool:
            if row.parent is not None:
                parent = c.execute("SELECT revoked_at FROM tokens WHERE id = ?", (row.parent,)).fetchone()
                if parent is None or parent[0] is not None:
                    return False
            for fp in lineage:
                if c.execute("SELECT 1 FROM revoked_attenuations WHERE fingerprint = ?", (fp,)).fetchone():
                    return False
            if once is not None:
                c.execute("DELETE FROM used_discharges WHERE expires_at <= ?", (row.created_at,))  # indexed
                if not c.execute("INSERT OR IGNORE INTO used_discharges (token_id, discharge_id, expires_at)"
                                 " VALUES (?, ?, ?)", (row.parent, *once)).rowcount:
                    raise DischargeUsed()
            c.execute(_INSERT_TOKEN, token_values(row))
            c.executemany("INSERT INTO strip_lineage (fingerprint, service_id) VALUES (?, ?)",
                          [(fp, row.id) for fp in lineage])
            self._audit(c, [audit])
            return True
        return await self._tx(run)

    async def replace_token(self, row: TokenRow, audit: AuditRecord, old_id: str, now: int,
                            revoked: ListedIn) -> list[str] | None:
        def run(c: sqlite3.Connection) -> list[str] | None:
            old = c.execute("SELECT revoked_at FROM tokens WHERE id = ?", (old_id,)).fetchone()
            if old is None or old[0] is not None:
                return None
            ids = self._cascade(c, [old_id], now)
            self._audit_for(c, revoked, ids)
            c.execute(_INSERT_TOKEN, token_values(row))
            self._audit(c, [audit])
            return ids
        return await self._tx(run)

    async def insert_tokens(self, rows: Iterable[TokenRow]) -> None:
        rows = list(rows)

        def run(c: sqlite3.Connection) -> None:
            c.executemany("INSERT OR IGNORE INTO orgs (name, created_at) VALUES (?, ?)",
                          {(r.org, r.created_at) for r in rows})
            c.executemany(_INSERT_TOKEN, [token_values(r) for r in rows])
            c.executemany("INSERT INTO revocations (token_id, scope, at) VALUES (?, 'token', ?)",
                          [(r.id, r.revoked_at) for r in rows if r.revoked_at is not None])
        await self._tx(run)

    async def load_token(self, token_id: str, max_fingerprints: int | None = None,
                         ) -> tuple[TokenRow, frozenset[bytes] | None] | None:
        row = await self._one(f"SELECT {_TOKEN_COLS} FROM tokens WHERE id = ?", (token_id,))
        if row is None:
            return None
        limit = -1 if max_fingerprints is None else max_fingerprints + 1
        fps = await self._all("SELECT fingerprint FROM revoked_attenuations WHERE token_id = ? LIMIT ?",
                              (token_id, limit))
        if max_fingerprints is not None and len(fps) > max_fingerprints:
            return token_row(row), None
        return token_row(row), frozenset(r[0] for r in fps)

    async def attenuation_revoked(self, token_id: str, fingerprints: Iterable[bytes]) -> bool:
        fps = list(fingerprints)
        if not fps:
            return False
        marks = ", ".join("?" * len(fps))
        return await self._one(f"SELECT 1 FROM revoked_attenuations WHERE token_id = ? AND fingerprint IN ({marks})"
                               " LIMIT 1", (token_id, *fps)) is not None

    async def user_token_ids(self, username: str) -> list[str]:
        rows = await self._all("SELECT id FROM tokens WHERE (user = ? OR created_by = ?) AND revoked_at IS NULL"
                               " ORDER BY created_at, id", (username, username))
        return [r[0] for r in rows]

    async def list_tokens(self, org: str) -> list[TokenRow]:
        rows = await self._all(f"SELECT {_TOKEN_COLS} FROM tokens WHERE org = ? ORDER BY created_at, id", (org,))
        return [token_row(r) for r in rows]

    async def touch(self, used: dict[str, int]) -> None:
        if not used:
            return

        def run(c: sqlite3.Connection) -> None:
            c.executemany("UPDATE tokens SET last_used_at = ? WHERE id = ?", [(t, i) for i, t in used.items()])
        await self._tx(run)

    # --- revocation ------------------------------------------------------------------------

    @staticmethod
    def _cascade(c: sqlite3.Connection, roots: list[str], now: int) -> list[str]:
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
        c.executemany("INSERT INTO revocations (token_id, scope, at) VALUES (?, 'token', ?)", [(i, now) for i in ids])
        return ids

    async def revoke_token(self, token_id: str, now: int, audit: AuditFor[list[str]]) -> list[str] | None:
        def run(c: sqlite3.Connection) -> list[str] | None:
            if c.execute("SELECT 1 FROM tokens WHERE id = ?", (token_id,)).fetchone() is None:
                return None
            ids = self._cascade(c, [token_id], now)
            self._audit_for(c, audit, ids)
            return ids
        return await self._tx(run)

    async def revoke_attenuation(self, token_id: str, fingerprint: bytes, now: int,
                                 audit: AuditFor[list[str]]) -> list[str] | None:
        def run(c: sqlite3.Connection) -> list[str] | None:
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
            self._audit_for(c, audit, ids)
            return ids
        return await self._tx(run)

    async def revocations_after(self, after: int, limit: int) -> list[RevocationRow]:
        rows = await self._all(
            "SELECT seq, token_id, scope, at, fingerprint FROM revocations WHERE seq > ? ORDER BY seq LIMIT ?",
            (after, limit),
        )
        return [RevocationRow(*r) for r in rows]

    async def revocation_head(self) -> int:
        row = await self._one("SELECT COALESCE(MAX(seq), 0) FROM revocations")
        return int(row[0])

    async def watch_feed(self, wake) -> None:
        """Nothing to watch: every process on the file polls the feed table."""

    # --- the console's browser state -----------------------------------------------------------

    async def create_console_session(self, digest: bytes, row: ConsoleSessionRow, now: int,
                                     audit: AuditRecord) -> None:
        def run(c: sqlite3.Connection) -> None:
            c.execute("DELETE FROM console_sessions WHERE expires_at <= ?", (now,))
            c.execute("INSERT INTO console_sessions (hash, username, org, role, expires_at) VALUES (?, ?, ?, ?, ?)",
                      (digest, row.username, row.org, row.role, row.expires_at))
            self._audit(c, [audit])
        await self._tx(run)

    async def console_session(self, digest: bytes, now: int) -> ConsoleSessionRow | None:
        row = await self._one("SELECT username, org, role, expires_at FROM console_sessions"
                              " WHERE hash = ? AND expires_at > ?", (digest, now))
        return ConsoleSessionRow(*row) if row else None

    async def delete_console_session(self, digest: bytes) -> None:
        def run(c: sqlite3.Connection) -> None:
            c.execute("DELETE FROM console_sessions WHERE hash = ?", (digest,))
        await self._tx(run)

    async def end_console_sessions(self, username: str, audit: AuditFor[int]) -> int:
        def run(c: sqlite3.Connection) -> int:
            ended = c.execute("DELETE FROM console_sessions WHERE username = ?", (username,)).rowcount
            self._audit_for(c, audit, ended)
            return ended
        return await self._tx(run)

    async def add_signin(self, digest: bytes, sealed: bytes, expires_at: int, now: int) -> None:
        def run(c: sqlite3.Connection) -> None:
            c.execute("DELETE FROM console_signins WHERE expires_at <= ?", (now,))
            c.execute("INSERT INTO console_signins (hash, sealed, expires_at) VALUES (?, ?, ?)",
                      (digest, sealed, expires_at))
        await self._tx(run)

    async def take_signin(self, digest: bytes, now: int) -> bytes | None:
        def run(c: sqlite3.Connection) -> bytes | None:
            row = c.execute("SELECT sealed FROM console_signins WHERE hash = ? AND expires_at > ?",
                            (digest, now)).fetchone()
            c.execute("DELETE FROM console_signins WHERE hash = ?", (digest,))
            return bytes(row[0]) if row else None
        return await self._tx(run)
