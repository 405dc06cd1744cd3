"""The discharger's store on SQLite: all of the discharger's SQL lives here."""

from __future__ import annotations

import json
import sqlite3

from discharger.store import (
    GrantRow,
    Link,
    OrgPolicy,
    PasskeyRow,
    PrincipalRow,
    SessionRow,
    TotpRow,
    TrustPolicy,
    UserRow,
)
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

# v2: keys sealed in the database (replicas share them), the login throttle shared by replicas.
V2 = """
CREATE TABLE IF NOT EXISTS keys (
    kid TEXT PRIMARY KEY,
    sealed BLOB NOT NULL,
    position INTEGER NOT NULL UNIQUE,
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS login_failures (
    subject TEXT NOT NULL,
    at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS login_failures_subject ON login_failures(subject, at);
CREATE INDEX IF NOT EXISTS login_failures_at ON login_failures(at);
"""

# v3: roles, browser sessions, pending grants (device logins and interactive discharges).
V3 = """
ALTER TABLE memberships ADD COLUMN role TEXT NOT NULL DEFAULT 'member';
CREATE TABLE IF NOT EXISTS browser_sessions (
    hash BLOB PRIMARY KEY,
    username TEXT NOT NULL REFERENCES users(username),
    expires_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS grants (
    hash BLOB PRIMARY KEY,
    kind TEXT NOT NULL,
    lookup TEXT NOT NULL,
    data TEXT NOT NULL,
    status TEXT NOT NULL,
    username TEXT,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    interval INTEGER NOT NULL,
    polled_at REAL,
    code_hash BLOB,
    code_expires_at INTEGER,
    UNIQUE (kind, lookup)
);
CREATE INDEX IF NOT EXISTS grants_expiry ON grants(expires_at);
"""

# v4 (SPEC §15): how each session was made, identities at OpenID providers, used sign-in states.
V4 = """
ALTER TABLE users ADD COLUMN idp TEXT;
ALTER TABLE sessions ADD COLUMN auth_method TEXT NOT NULL DEFAULT 'password';
ALTER TABLE browser_sessions ADD COLUMN auth_method TEXT NOT NULL DEFAULT 'password';
CREATE TABLE IF NOT EXISTS identity_links (
    issuer TEXT NOT NULL,
    sub TEXT NOT NULL,
    username TEXT NOT NULL REFERENCES users(username),
    provider TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (issuer, sub)
);
CREATE INDEX IF NOT EXISTS identity_links_user ON identity_links(username);
CREATE TABLE IF NOT EXISTS used_states (
    hash BLOB PRIMARY KEY,
    expires_at INTEGER NOT NULL
);
"""

# v5 (SPEC §15): second factors and org policies.
V5 = """
CREATE TABLE IF NOT EXISTS totp (
    username TEXT PRIMARY KEY REFERENCES users(username),
    sealed_seed BLOB NOT NULL,
    confirmed INTEGER NOT NULL DEFAULT 0,
    last_step INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS recovery_codes (
    username TEXT NOT NULL REFERENCES users(username),
    hash BLOB NOT NULL,
    used_at INTEGER,
    PRIMARY KEY (username, hash)
);
CREATE TABLE IF NOT EXISTS org_policies (
    org TEXT PRIMARY KEY,
    require_idp TEXT,
    require_mfa INTEGER NOT NULL DEFAULT 0
);
"""

# v6 (SPEC §15): passkeys.
V6 = """
CREATE TABLE IF NOT EXISTS passkeys (
    credential_id BLOB PRIMARY KEY,
    username TEXT NOT NULL REFERENCES users(username),
    public_key BLOB NOT NULL,
    sign_count INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS passkeys_user ON passkeys(username);
"""

# v7: one identity per user at each provider, held by the database (not a read-then-insert).
V7 = """
CREATE UNIQUE INDEX IF NOT EXISTS identity_links_user_issuer ON identity_links(username, issuer);
"""


# v8 (SPEC §16): service principals, their trust policies, used ID tokens.
V8 = """
CREATE TABLE IF NOT EXISTS principals (
    name TEXT PRIMARY KEY,
    org TEXT NOT NULL,
    role TEXT NOT NULL,
    disabled INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS trust_policies (
    id TEXT PRIMARY KEY,
    principal TEXT NOT NULL REFERENCES principals(name),
    issuer TEXT NOT NULL,
    audience TEXT,
    claims TEXT NOT NULL,
    max_age INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS trust_policies_principal ON trust_policies(principal);
CREATE TABLE IF NOT EXISTS used_id_tokens (
    issuer TEXT NOT NULL,
    jti TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (issuer, jti)
);
CREATE INDEX IF NOT EXISTS used_id_tokens_expiry ON used_id_tokens(expires_at);
"""

# v9 (SPEC §18): secrets reported leaked, and the outbox of events for the authorities (user.*,
# principal.*), filled by triggers in the transaction of each change.
V9 = """
CREATE TABLE IF NOT EXISTS leaked_secrets (
    hash BLOB PRIMARY KEY,
    kind TEXT NOT NULL,
    reported_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS event_outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL DEFAULT (lower(hex(randomblob(16)))),
    type TEXT NOT NULL,
    subject TEXT NOT NULL,
    orgs TEXT NOT NULL,
    at INTEGER NOT NULL,
    due_at INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    claimed_until INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS event_outbox_due ON event_outbox(due_at);
CREATE TRIGGER IF NOT EXISTS user_disabled_event AFTER UPDATE OF disabled ON users
WHEN NEW.disabled = 1 AND OLD.disabled = 0
BEGIN
    INSERT INTO event_outbox (type, subject, orgs, at, due_at)
    VALUES ('user.disabled', NEW.username,
            (SELECT json_group_array(org) FROM memberships WHERE username = NEW.username),
            CAST(strftime('%s', 'now') AS INTEGER), CAST(strftime('%s', 'now') AS INTEGER));
END;
CREATE TRIGGER IF NOT EXISTS membership_removed_event AFTER DELETE ON memberships
BEGIN
    INSERT INTO event_outbox (type, subject, orgs, at, due_at)
    VALUES ('user.removed_from_org', OLD.username, json_array(OLD.org),
            CAST(strftime('%s', 'now') AS INTEGER), CAST(strftime('%s', 'now') AS INTEGER));
END;
CREATE TRIGGER IF NOT EXISTS principal_disabled_event AFTER UPDATE OF disabled ON principals
WHEN NEW.disabled = 1 AND OLD.disabled = 0
BEGIN
    INSERT INTO event_outbox (type, subject, orgs, at, due_at)
    VALUES ('principal.disabled', NEW.name, json_array(NEW.org),
            CAST(strftime('%s', 'now') AS INTEGER), CAST(strftime('%s', 'now') AS INTEGER));
END;
"""

_GRANT_COLS = ("hash, kind, lookup, data, status, created_at, expires_at, username, interval, polled_at, code_hash,"
               " code_expires_at")


def _grant(r: tuple) -> GrantRow:
    return GrantRow(r[0], r[1], r[2], json.loads(r[3]), *r[4:])


class SqliteStore(Database):
    MIGRATIONS = (COMMON_V1 + V1, V2, V3, V4, V5, V6, V7, V8, V9)

    async def create_user(self, username: str, password_hash: bytes, roles: dict[str, str], now: int,
                          audit: AuditRecord, idp: str | None = None, link: Link | None = None) -> bool:
        def run(c: sqlite3.Connection) -> bool:
            cur = c.execute(
                "INSERT OR IGNORE INTO users (username, password_hash, created_at, idp) VALUES (?, ?, ?, ?)",
                (username, password_hash, now, idp),
            )
            if not cur.rowcount:
                return False
            if link is not None and not self._link(c, username, link, now):
                c.execute("DELETE FROM users WHERE username = ?", (username,))
                return False
            c.executemany("INSERT INTO memberships (username, org, role) VALUES (?, ?, ?)",
                          [(username, o, r) for o, r in roles.items()])
            self._audit(c, [audit])
            return True
        return await self._tx(run)

    async def get_user(self, username: str) -> UserRow | None:
        row = await self._one("SELECT username, password_hash, disabled, idp FROM users WHERE username = ?", (username,))
        if row is None:
            return None
        orgs = await self._all("SELECT org, role FROM memberships WHERE username = ?", (username,))
        return UserRow(row[0], row[1], bool(row[2]), {o[0]: o[1] for o in orgs}, row[3])

    async def set_orgs(self, username: str, roles: dict[str, str], audit: AuditRecord) -> bool:
        def run(c: sqlite3.Connection) -> bool:
            if c.execute("SELECT 1 FROM users WHERE username = ?", (username,)).fetchone() is None:
                return False
            # Only memberships that end are deleted: each deletion is a user.removed_from_org event.
            kept = sorted(roles)
            c.execute(f"DELETE FROM memberships WHERE username = ? AND org NOT IN ({', '.join('?' * len(kept))})",
                      (username, *kept))
            c.executemany("INSERT INTO memberships (username, org, role) VALUES (?, ?, ?)"
                          " ON CONFLICT (username, org) DO UPDATE SET role = excluded.role",
                          [(username, o, r) for o, r in roles.items()])
            self._audit(c, [audit])
            return True
        return await self._tx(run)

    async def change_orgs(self, username: str, changes: dict[str, str | None], audit: AuditRecord) -> bool:
        def run(c: sqlite3.Connection) -> bool:
            if c.execute("SELECT 1 FROM users WHERE username = ?", (username,)).fetchone() is None:
                return False
            changed = 0
            for org, role in sorted(changes.items()):
                if role is None:
                    changed += c.execute("DELETE FROM memberships WHERE username = ? AND org = ?",
                                         (username, org)).rowcount
                else:
                    changed += c.execute("INSERT INTO memberships (username, org, role) VALUES (?, ?, ?)"
                                         " ON CONFLICT (username, org) DO UPDATE SET role = excluded.role"
                                         " WHERE memberships.role <> excluded.role", (username, org, role)).rowcount
            if changed:
                self._audit(c, [audit])
            return bool(changed)
        return await self._tx(run)

    async def disable_user(self, username: str, audit: AuditRecord, disabled: bool = True) -> bool:
        def run(c: sqlite3.Connection) -> bool:
            if not c.execute("UPDATE users SET disabled = ? WHERE username = ?", (int(disabled), username)).rowcount:
                return False
            self._audit(c, [audit])
            return True
        return await self._tx(run)

    async def list_users(self) -> list[UserRow]:
        users = await self._all("SELECT username, password_hash, disabled, idp FROM users ORDER BY username")
        roles: dict[str, dict[str, str]] = {}
        for username, org, role in await self._all("SELECT username, org, role FROM memberships"):
            roles.setdefault(username, {})[org] = role
        return [UserRow(u[0], u[1], bool(u[2]), roles.get(u[0], {}), u[3]) for u in users]

    async def set_password(self, username: str, password_hash: bytes, audit: AuditRecord) -> bool:
        def run(c: sqlite3.Connection) -> bool:
            if not c.execute("UPDATE users SET password_hash = ? WHERE username = ?", (password_hash, username)).rowcount:
                return False
            c.execute("DELETE FROM sessions WHERE username = ?", (username,))
            c.execute("DELETE FROM browser_sessions WHERE username = ?", (username,))
            self._audit(c, [audit])
            return True
        return await self._tx(run)

    async def create_session(self, digest: bytes, username: str, expires_at: int, now: int,
                             audit: AuditRecord, auth_method: str = "password") -> None:
        def run(c: sqlite3.Connection) -> None:
            c.execute("DELETE FROM sessions WHERE expires_at <= ?", (now,))
            c.execute("INSERT INTO sessions (hash, username, expires_at, auth_method) VALUES (?, ?, ?, ?)",
                      (digest, username, expires_at, auth_method))
            self._audit(c, [audit])
        await self._tx(run)

    async def session_user(self, digest: bytes, now: int) -> str | None:
        found = await self.session(digest, now)
        return found.username if found else None

    async def session(self, digest: bytes, now: int) -> SessionRow | None:
        row = await self._one("SELECT username, expires_at, auth_method FROM sessions WHERE hash = ? AND expires_at > ?",
                              (digest, now))
        return SessionRow(*row) if row else None

    async def delete_session(self, digest: bytes) -> bool:
        def run(c: sqlite3.Connection) -> bool:
            return c.execute("DELETE FROM sessions WHERE hash = ?", (digest,)).rowcount == 1
        return await self._tx(run)

    # --- events for the authorities (SPEC §18) ------------------------------------------------

    async def claim_events(self, now: int, lease: int, limit: int) -> list[tuple[int, str, str, str, str, int, int]]:
        def run(c: sqlite3.Connection) -> list[tuple[int, str, str, str, str, int, int]]:
            rows = c.execute("SELECT seq, id, type, subject, orgs, at, attempts FROM event_outbox WHERE due_at <= ? AND"
                             " claimed_until <= ? ORDER BY seq LIMIT ?", (now, now, limit)).fetchall()
            c.executemany("UPDATE event_outbox SET claimed_until = ? WHERE seq = ?", [(now + lease, r[0]) for r in rows])
            return [tuple(r) for r in rows]
        return await self._tx(run)

    async def event_sent(self, seq: int) -> None:
        await self._tx(lambda c: c.execute("DELETE FROM event_outbox WHERE seq = ?", (seq,)))

    async def event_failed(self, seq: int, due_at: int) -> None:
        await self._tx(lambda c: c.execute("UPDATE event_outbox SET attempts = attempts + 1, due_at = ?,"
                                           " claimed_until = 0 WHERE seq = ?", (due_at, seq)))

    async def events_pending(self) -> int:
        row = await self._one("SELECT count(*) FROM event_outbox")
        return int(row[0]) if row else 0

    async def record_leaked(self, digest: bytes, kind: str, now: int, audit: AuditRecord) -> bool:
        def run(c: sqlite3.Connection) -> bool:
            new = c.execute("INSERT OR IGNORE INTO leaked_secrets (hash, kind, reported_at) VALUES (?, ?, ?)",
                            (digest, kind, now)).rowcount == 1
            if new:
                self._audit(c, [audit])
            return new
        return await self._tx(run)

    async def leaked(self, digest: bytes) -> bool:
        return await self._one("SELECT 1 FROM leaked_secrets WHERE hash = ?", (digest,)) is not None

    # --- browser sessions and grants ----------------------------------------------------------

    async def create_browser_session(self, digest: bytes, username: str, expires_at: int, now: int,
                                     audit: AuditRecord, auth_method: str = "password") -> None:
        def run(c: sqlite3.Connection) -> None:
            c.execute("DELETE FROM browser_sessions WHERE expires_at <= ?", (now,))
            c.execute("INSERT INTO browser_sessions (hash, username, expires_at, auth_method) VALUES (?, ?, ?, ?)",
                      (digest, username, expires_at, auth_method))
            self._audit(c, [audit])
        await self._tx(run)

    async def browser_session(self, digest: bytes, now: int) -> SessionRow | None:
        row = await self._one("SELECT username, expires_at, auth_method FROM browser_sessions"
                              " WHERE hash = ? AND expires_at > ?", (digest, now))
        return SessionRow(*row) if row else None

    async def delete_browser_session(self, digest: bytes) -> bool:
        def run(c: sqlite3.Connection) -> bool:
            return c.execute("DELETE FROM browser_sessions WHERE hash = ?", (digest,)).rowcount == 1
        return await self._tx(run)

    async def add_grant(self, row: GrantRow, now: int) -> bool:
        def run(c: sqlite3.Connection) -> bool:
            c.execute("DELETE FROM grants WHERE expires_at <= ?", (now - 3600,))
            cur = c.execute(f"INSERT OR IGNORE INTO grants ({_GRANT_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                            (row.hash, row.kind, row.lookup, json.dumps(row.data), row.status, row.created_at,
                             row.expires_at, row.username, row.interval, row.polled_at, row.code_hash,
                             row.code_expires_at))
            return cur.rowcount == 1
        return await self._tx(run)

    async def get_grant(self, kind: str, *, digest: bytes | None = None, lookup: str | None = None) -> GrantRow | None:
        if digest is not None:
            row = await self._one(f"SELECT {_GRANT_COLS} FROM grants WHERE kind = ? AND hash = ?", (kind, digest))
        else:
            row = await self._one(f"SELECT {_GRANT_COLS} FROM grants WHERE kind = ? AND lookup = ?", (kind, lookup))
        return _grant(row) if row else None

    async def update_grant(self, row: GrantRow, expected: str, audit: AuditRecord | None = None) -> bool:
        def run(c: sqlite3.Connection) -> bool:
            cur = c.execute("UPDATE grants SET status = ?, username = ?, interval = ?, polled_at = ?, code_hash = ?,"
                            " code_expires_at = ?, data = ? WHERE hash = ? AND status = ?",
                            (row.status, row.username, row.interval, row.polled_at, row.code_hash,
                             row.code_expires_at, json.dumps(row.data), row.hash, expected))
            if cur.rowcount and audit is not None:
                self._audit(c, [audit])
            return cur.rowcount == 1
        return await self._tx(run)

    # --- identities at OpenID providers ----------------------------------------------------

    @staticmethod
    def _link(c: sqlite3.Connection, username: str, link: Link, now: int) -> bool:
        return c.execute("INSERT OR IGNORE INTO identity_links (issuer, sub, username, provider, created_at)"
                         " VALUES (?, ?, ?, ?, ?)", (link.issuer, link.sub, username, link.provider, now)).rowcount == 1

    async def link_identity(self, username: str, link: Link, now: int, audit: AuditRecord) -> bool:
        def run(c: sqlite3.Connection) -> bool:
            if c.execute("SELECT 1 FROM users WHERE username = ?", (username,)).fetchone() is None:
                return False
            if not self._link(c, username, link, now):
                return False
            self._audit(c, [audit])
            return True
        return await self._tx(run)

    async def linked_user(self, issuer: str, sub: str) -> str | None:
        row = await self._one("SELECT username FROM identity_links WHERE issuer = ? AND sub = ?", (issuer, sub))
        return row[0] if row else None

    async def links(self, username: str) -> list[Link]:
        rows = await self._all("SELECT issuer, sub, provider FROM identity_links WHERE username = ?"
                               " ORDER BY created_at, issuer, sub", (username,))
        return [Link(*r) for r in rows]

    async def claim_state(self, digest: bytes, expires_at: int, now: int) -> bool:
        def run(c: sqlite3.Connection) -> bool:
            c.execute("DELETE FROM used_states WHERE expires_at <= ?", (now,))
            return c.execute("INSERT OR IGNORE INTO used_states (hash, expires_at) VALUES (?, ?)",
                             (digest, expires_at)).rowcount == 1
        return await self._tx(run)

    # --- second factors and org policies ----------------------------------------------------

    async def begin_totp(self, username: str, sealed_seed: bytes, now: int) -> bool:
        def run(c: sqlite3.Connection) -> bool:
            if c.execute("SELECT 1 FROM totp WHERE username = ? AND confirmed = 1", (username,)).fetchone():
                return False
            c.execute("INSERT OR REPLACE INTO totp (username, sealed_seed, confirmed, last_step, created_at)"
                      " VALUES (?, ?, 0, 0, ?)", (username, sealed_seed, now))
            return True
        return await self._tx(run)

    async def totp(self, username: str) -> TotpRow | None:
        row = await self._one("SELECT sealed_seed, confirmed, last_step FROM totp WHERE username = ?", (username,))
        return TotpRow(bytes(row[0]), bool(row[1]), row[2]) if row else None

    async def confirm_totp(self, username: str, step: int, recovery: list[bytes], audit: AuditRecord,
                           sealed_seed: bytes) -> bool:
        def run(c: sqlite3.Connection) -> bool:
            if not c.execute("UPDATE totp SET confirmed = 1, last_step = ? WHERE username = ? AND confirmed = 0"
                             " AND last_step < ? AND sealed_seed = ?", (step, username, step, sealed_seed)).rowcount:
                return False
            c.execute("DELETE FROM recovery_codes WHERE username = ?", (username,))
            c.executemany("INSERT INTO recovery_codes (username, hash) VALUES (?, ?)", [(username, h) for h in recovery])
            self._audit(c, [audit])
            return True
        return await self._tx(run)

    async def use_totp_step(self, username: str, step: int) -> bool:
        def run(c: sqlite3.Connection) -> bool:
            return c.execute("UPDATE totp SET last_step = ? WHERE username = ? AND confirmed = 1 AND last_step < ?",
                             (step, username, step)).rowcount == 1
        return await self._tx(run)

    async def use_recovery_code(self, username: str, digest: bytes, now: int) -> bool:
        def run(c: sqlite3.Connection) -> bool:
            return c.execute("UPDATE recovery_codes SET used_at = ? WHERE username = ? AND hash = ? AND used_at IS NULL",
                             (now, username, digest)).rowcount == 1
        return await self._tx(run)

    async def recovery_left(self, username: str) -> int:
        row = await self._one("SELECT count(*) FROM recovery_codes WHERE username = ? AND used_at IS NULL", (username,))
        return int(row[0])

    async def remove_factors(self, username: str, audit: AuditRecord) -> bool:
        def run(c: sqlite3.Connection) -> bool:
            removed = c.execute("DELETE FROM totp WHERE username = ?", (username,)).rowcount
            removed += c.execute("DELETE FROM passkeys WHERE username = ?", (username,)).rowcount
            c.execute("DELETE FROM recovery_codes WHERE username = ?", (username,))
            if removed:
                self._audit(c, [audit])
            return bool(removed)
        return await self._tx(run)

    async def add_passkey(self, row: PasskeyRow, now: int, audit: AuditRecord) -> bool:
        def run(c: sqlite3.Connection) -> bool:
            if not c.execute("INSERT OR IGNORE INTO passkeys (credential_id, username, public_key, sign_count,"
                             " created_at) VALUES (?, ?, ?, ?, ?)", (row.credential_id, row.username, row.public_key,
                                                                    row.sign_count, now)).rowcount:
                return False
            self._audit(c, [audit])
            return True
        return await self._tx(run)

    async def passkey(self, credential_id: bytes) -> PasskeyRow | None:
        row = await self._one("SELECT credential_id, username, public_key, sign_count FROM passkeys"
                              " WHERE credential_id = ?", (credential_id,))
        return PasskeyRow(bytes(row[0]), row[1], bytes(row[2]), row[3]) if row else None

    async def passkeys_of(self, username: str) -> list[PasskeyRow]:
        rows = await self._all("SELECT credential_id, username, public_key, sign_count FROM passkeys"
                               " WHERE username = ? ORDER BY created_at", (username,))
        return [PasskeyRow(bytes(r[0]), r[1], bytes(r[2]), r[3]) for r in rows]

    async def use_passkey(self, credential_id: bytes, sign_count: int) -> bool:
        def run(c: sqlite3.Connection) -> bool:
            return c.execute("UPDATE passkeys SET sign_count = ? WHERE credential_id = ?"
                             " AND (sign_count < ? OR (sign_count = 0 AND ? = 0))",
                             (sign_count, credential_id, sign_count, sign_count)).rowcount == 1
        return await self._tx(run)

    async def org_policy(self, org: str) -> OrgPolicy:
        row = await self._one("SELECT require_idp, require_mfa FROM org_policies WHERE org = ?", (org,))
        return OrgPolicy(org, row[0], bool(row[1])) if row else OrgPolicy(org)

    async def set_org_policy(self, policy: OrgPolicy, audit: AuditRecord) -> None:
        def run(c: sqlite3.Connection) -> None:
            c.execute("INSERT OR REPLACE INTO org_policies (org, require_idp, require_mfa) VALUES (?, ?, ?)",
                      (policy.org, policy.require_idp, int(policy.require_mfa)))
            self._audit(c, [audit])
        await self._tx(run)

    # --- service principals -----------------------------------------------------------------

    async def create_principal(self, row: PrincipalRow, audit: AuditRecord) -> bool:
        def run(c: sqlite3.Connection) -> bool:
            if not c.execute("INSERT OR IGNORE INTO principals (name, org, role, disabled, created_at)"
                             " VALUES (?, ?, ?, ?, ?)", (row.name, row.org, row.role, int(row.disabled),
                                                         row.created_at)).rowcount:
                return False
            self._audit(c, [audit])
            return True
        return await self._tx(run)

    async def principal(self, name: str) -> PrincipalRow | None:
        found = await self.list_principals(name=name)
        return found[0] if found else None

    async def list_principals(self, org: str | None = None, name: str | None = None) -> list[PrincipalRow]:
        where, args = ("WHERE name = ?", (name,)) if name is not None else ("WHERE org = ?", (org,)) if org else ("", ())
        rows = await self._all(f"SELECT name, org, role, disabled, created_at FROM principals {where} ORDER BY name", args)
        policies: dict[str, list[TrustPolicy]] = {}
        if rows:
            marks = ", ".join("?" * len(rows))
            for r in await self._all(f"SELECT principal, id, issuer, audience, claims, max_age FROM trust_policies"
                                     f" WHERE principal IN ({marks}) ORDER BY created_at, id", tuple(r[0] for r in rows)):
                policies.setdefault(r[0], []).append(TrustPolicy(r[1], r[2], r[3], json.loads(r[4]), r[5]))
        return [PrincipalRow(r[0], r[1], r[2], bool(r[3]), r[4], tuple(policies.get(r[0], ()))) for r in rows]

    async def set_principal_disabled(self, name: str, disabled: bool, audit: AuditRecord) -> bool:
        def run(c: sqlite3.Connection) -> bool:
            if not c.execute("UPDATE principals SET disabled = ? WHERE name = ?", (int(disabled), name)).rowcount:
                return False
            self._audit(c, [audit])
            return True
        return await self._tx(run)

    async def remove_principal(self, name: str, audit: AuditRecord) -> bool:
        def run(c: sqlite3.Connection) -> bool:
            c.execute("DELETE FROM trust_policies WHERE principal = ?", (name,))
            if not c.execute("DELETE FROM principals WHERE name = ?", (name,)).rowcount:
                return False
            self._audit(c, [audit])
            return True
        return await self._tx(run)

    async def add_trust_policy(self, name: str, policy: TrustPolicy, now: int, audit: AuditRecord) -> bool:
        def run(c: sqlite3.Connection) -> bool:
            if not c.execute("SELECT 1 FROM principals WHERE name = ?", (name,)).fetchone():
                return False
            c.execute("INSERT INTO trust_policies (id, principal, issuer, audience, claims, max_age, created_at)"
                      " VALUES (?, ?, ?, ?, ?, ?, ?)", (policy.id, name, policy.issuer, policy.audience,
                                                        json.dumps(policy.claims), policy.max_age, now))
            self._audit(c, [audit])
            return True
        return await self._tx(run)

    async def remove_trust_policy(self, name: str, policy_id: str, audit: AuditRecord) -> bool:
        def run(c: sqlite3.Connection) -> bool:
            if not c.execute("DELETE FROM trust_policies WHERE principal = ? AND id = ?", (name, policy_id)).rowcount:
                return False
            self._audit(c, [audit])
            return True
        return await self._tx(run)

    async def claim_id_token(self, issuer: str, jti: str, expires_at: int, now: int) -> bool:
        def run(c: sqlite3.Connection) -> bool:
            c.execute("DELETE FROM used_id_tokens WHERE expires_at <= ?", (now,))  # indexed: only the newly expired
            return c.execute("INSERT OR IGNORE INTO used_id_tokens (issuer, jti, expires_at) VALUES (?, ?, ?)",
                             (issuer, jti, expires_at)).rowcount == 1
        return await self._tx(run)

    # --- keys -------------------------------------------------------------------------------

    async def list_keys(self) -> list[tuple[str, bytes]]:
        return [(r[0], bytes(r[1])) for r in await self._all("SELECT kid, sealed FROM keys ORDER BY position DESC")]

    async def add_keys_if_none(self, rows: list[tuple[str, bytes]], now: int, audit: AuditRecord) -> bool:
        def run(c: sqlite3.Connection) -> bool:
            if c.execute("SELECT 1 FROM keys LIMIT 1").fetchone() is not None:
                return False
            c.executemany("INSERT INTO keys (kid, sealed, position, created_at) VALUES (?, ?, ?, ?)",
                          [(kid, sealed, len(rows) - i, now) for i, (kid, sealed) in enumerate(rows)])
            self._audit(c, [audit])
            return True
        return await self._tx(run)

    async def add_key(self, kid: str, sealed: bytes, now: int, audit: AuditRecord) -> None:
        def run(c: sqlite3.Connection) -> None:
            c.execute("INSERT INTO keys (kid, sealed, position, created_at) "
                      "VALUES (?, ?, (SELECT coalesce(max(position), 0) + 1 FROM keys), ?)", (kid, sealed, now))
            self._audit(c, [audit])
        await self._tx(run)

    async def retire_key(self, kid: str, audit: AuditRecord) -> str:
        def run(c: sqlite3.Connection) -> str:
            if c.execute("SELECT 1 FROM keys WHERE kid = ?", (kid,)).fetchone() is None:
                return "unknown"
            if c.execute("SELECT count(*) FROM keys").fetchone()[0] == 1:
                return "last"
            c.execute("DELETE FROM keys WHERE kid = ?", (kid,))
            self._audit(c, [audit])
            return "ok"
        return await self._tx(run)

    # --- the login throttle -----------------------------------------------------------------

    async def login_attempt(self, limits: list[tuple[str, int]], now: float, window: float) -> float | None:
        def run(c: sqlite3.Connection) -> float | None:
            wait = None
            for subject, limit in limits:
                n, oldest = c.execute("SELECT count(*), min(at) FROM login_failures WHERE subject = ? AND at > ?",
                                      (subject, now - window)).fetchone()
                if n >= limit:
                    wait = max(wait or 0.0, oldest + window - now)
            if wait is None:
                c.executemany("INSERT INTO login_failures (subject, at) VALUES (?, ?)", [(s, now) for s, _ in limits])
            return wait
        return await self._tx(run)

    async def clear_login_failures(self, subject: str) -> None:
        def run(c: sqlite3.Connection) -> None:
            c.execute("DELETE FROM login_failures WHERE subject = ?", (subject,))
        await self._tx(run)

    async def prune_login_failures(self, before: float) -> None:
        def run(c: sqlite3.Connection) -> None:
            c.execute("DELETE FROM login_failures WHERE at <= ?", (before,))
        await self._tx(run)

    async def forget_attempt(self, subjects: list[str], at: float) -> None:
        def run(c: sqlite3.Connection) -> None:
            for subject in subjects:
                c.execute("DELETE FROM login_failures WHERE rowid IN"
                          " (SELECT rowid FROM login_failures WHERE subject = ? AND at = ? LIMIT 1)", (subject, at))
        await self._tx(run)
