"""The discharger's store on PostgreSQL (schema `discharger`): all of its PostgreSQL SQL."""

from __future__ import annotations

import json

import asyncpg

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

# v3: roles, browser sessions, pending grants (device logins and interactive discharges).
V3 = """
ALTER TABLE memberships ADD COLUMN IF NOT EXISTS role TEXT NOT NULL DEFAULT 'member';
CREATE TABLE IF NOT EXISTS browser_sessions (
    hash BYTEA PRIMARY KEY,
    username TEXT NOT NULL REFERENCES users(username),
    expires_at BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS grants (
    hash BYTEA PRIMARY KEY,
    kind TEXT NOT NULL,
    lookup TEXT NOT NULL,
    data TEXT NOT NULL,
    status TEXT NOT NULL,
    username TEXT,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    interval INTEGER NOT NULL,
    polled_at DOUBLE PRECISION,
    code_hash BYTEA,
    code_expires_at BIGINT,
    UNIQUE (kind, lookup)
);
CREATE INDEX IF NOT EXISTS grants_expiry ON grants(expires_at);
"""

# v4 (SPEC §15): how each session was made, identities at OpenID providers, used sign-in states.
V4 = """
ALTER TABLE users ADD COLUMN IF NOT EXISTS idp TEXT;
ALTER TABLE sessions ADD COLUMN IF NOT EXISTS auth_method TEXT NOT NULL DEFAULT 'password';
ALTER TABLE browser_sessions ADD COLUMN IF NOT EXISTS auth_method TEXT NOT NULL DEFAULT 'password';
CREATE TABLE IF NOT EXISTS identity_links (
    issuer TEXT NOT NULL,
    sub TEXT NOT NULL,
    username TEXT NOT NULL REFERENCES users(username),
    provider TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (issuer, sub)
);
CREATE INDEX IF NOT EXISTS identity_links_user ON identity_links(username);
CREATE TABLE IF NOT EXISTS used_states (
    hash BYTEA PRIMARY KEY,
    expires_at BIGINT NOT NULL
);
"""


# v5 (SPEC §15): second factors and org policies.
V5 = """
CREATE TABLE IF NOT EXISTS totp (
    username TEXT PRIMARY KEY REFERENCES users(username),
    sealed_seed BYTEA NOT NULL,
    confirmed INTEGER NOT NULL DEFAULT 0,
    last_step BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS recovery_codes (
    username TEXT NOT NULL REFERENCES users(username),
    hash BYTEA NOT NULL,
    used_at BIGINT,
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
    credential_id BYTEA PRIMARY KEY,
    username TEXT NOT NULL REFERENCES users(username),
    public_key BYTEA NOT NULL,
    sign_count BIGINT NOT NULL,
    created_at BIGINT NOT NULL
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
    created_at BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS trust_policies (
    id TEXT PRIMARY KEY,
    principal TEXT NOT NULL REFERENCES principals(name),
    issuer TEXT NOT NULL,
    audience TEXT,
    claims TEXT NOT NULL,
    max_age INTEGER NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS trust_policies_principal ON trust_policies(principal);
CREATE TABLE IF NOT EXISTS used_id_tokens (
    issuer TEXT NOT NULL,
    jti TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (issuer, jti)
);
CREATE INDEX IF NOT EXISTS used_id_tokens_expiry ON used_id_tokens(expires_at);
"""


class _Undo(Exception):
    """Roll the transaction back and answer False."""


_GRANT_COLS = ("hash, kind, lookup, data, status, created_at, expires_at, username, interval, polled_at, code_hash,"
               " code_expires_at")


def _grant(r: asyncpg.Record) -> GrantRow:
    return GrantRow(bytes(r[0]), r[1], r[2], json.loads(r[3]), r[4], r[5], r[6], r[7], r[8], r[9],
                    bytes(r[10]) if r[10] is not None else None, r[11])


# Advisory lock spaces (the two-key form; the authority's feed lock is a one-key lock).
_KEYS_LOCK = (0x5AB1E, 1)
_THROTTLE_SPACE = 0x5AB1F


# v9 (SPEC §18): secrets reported leaked, and the outbox of events for the authorities (user.*,
# principal.*), filled by triggers in the transaction of each change.
V9 = """
CREATE TABLE IF NOT EXISTS leaked_secrets (
    hash BYTEA PRIMARY KEY,
    kind TEXT NOT NULL,
    reported_at BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS event_outbox (
    seq BIGSERIAL PRIMARY KEY,
    id TEXT NOT NULL DEFAULT md5(random()::text || clock_timestamp()::text),
    type TEXT NOT NULL,
    subject TEXT NOT NULL,
    orgs TEXT NOT NULL,
    at BIGINT NOT NULL,
    due_at BIGINT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    claimed_until BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS event_outbox_due ON event_outbox(due_at);
CREATE OR REPLACE FUNCTION queue_event(kind TEXT, subject TEXT, orgs TEXT) RETURNS void LANGUAGE sql AS $fn$
    INSERT INTO discharger.event_outbox (type, subject, orgs, at, due_at)
    VALUES (kind, subject, orgs, extract(epoch FROM now())::bigint, extract(epoch FROM now())::bigint);
$fn$;
CREATE OR REPLACE FUNCTION user_disabled_event() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    PERFORM discharger.queue_event('user.disabled', NEW.username, COALESCE(
        (SELECT json_agg(m.org ORDER BY m.org)::text FROM discharger.memberships m WHERE m.username = NEW.username),
        '[]'));
    RETURN NULL;
END
$fn$;
CREATE OR REPLACE FUNCTION membership_removed_event() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    PERFORM discharger.queue_event('user.removed_from_org', OLD.username, json_build_array(OLD.org)::text);
    RETURN NULL;
END
$fn$;
CREATE OR REPLACE FUNCTION principal_disabled_event() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    PERFORM discharger.queue_event('principal.disabled', NEW.name, json_build_array(NEW.org)::text);
    RETURN NULL;
END
$fn$;
DROP TRIGGER IF EXISTS user_disabled_event ON users;
CREATE TRIGGER user_disabled_event AFTER UPDATE OF disabled ON users FOR EACH ROW
    WHEN (NEW.disabled = 1 AND OLD.disabled = 0) EXECUTE FUNCTION user_disabled_event();
DROP TRIGGER IF EXISTS membership_removed_event ON memberships;
CREATE TRIGGER membership_removed_event AFTER DELETE ON memberships FOR EACH ROW
    EXECUTE FUNCTION membership_removed_event();
DROP TRIGGER IF EXISTS principal_disabled_event ON principals;
CREATE TRIGGER principal_disabled_event AFTER UPDATE OF disabled ON principals FOR EACH ROW
    WHEN (NEW.disabled = 1 AND OLD.disabled = 0) EXECUTE FUNCTION principal_disabled_event();
"""

class PostgresStore(PgDatabase):
    SCHEMA = "discharger"
    MIGRATIONS = (COMMON_V1 + V1, V2, V3, V4, V5, V6, V7, V8, V9)

    async def create_user(self, username: str, password_hash: bytes, roles: dict[str, str], now: int,
                          audit: AuditRecord, idp: str | None = None, link: Link | None = None) -> bool:
        try:
            async with self._tx() as c:
                done = await c.fetchval("INSERT INTO discharger.users (username, password_hash, created_at, idp)"
                                        " VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING RETURNING 1",
                                        username, password_hash, now, idp)
                if not done:
                    return False
                if link is not None and not await self._link(c, username, link, now):
                    raise _Undo
                await c.executemany("INSERT INTO discharger.memberships (username, org, role) VALUES ($1, $2, $3)",
                                    [(username, o, r) for o, r in roles.items()])
                await self._audit(c, [audit])
                return True
        except _Undo:
            return False

    async def get_user(self, username: str) -> UserRow | None:
        async with self._conn() as c:
            row = await c.fetchrow("SELECT username, password_hash, disabled, idp FROM discharger.users WHERE username = $1",
                                   username)
            if row is None:
                return None
            orgs = await c.fetch("SELECT org, role FROM discharger.memberships WHERE username = $1", username)
        return UserRow(row[0], bytes(row[1]), bool(row[2]), {o[0]: o[1] for o in orgs}, row[3])

    async def set_orgs(self, username: str, roles: dict[str, str], audit: AuditRecord) -> bool:
        async with self._tx() as c:
            if await c.fetchval("SELECT 1 FROM discharger.users WHERE username = $1 FOR UPDATE", username) is None:
                return False
            # Only memberships that end are deleted: each deletion is a user.removed_from_org event.
            await c.execute("DELETE FROM discharger.memberships WHERE username = $1 AND NOT (org = ANY($2::text[]))",
                            username, sorted(roles))
            await c.executemany("INSERT INTO discharger.memberships (username, org, role) VALUES ($1, $2, $3)"
                                " ON CONFLICT (username, org) DO UPDATE SET role = excluded.role",
                                [(username, o, r) for o, r in roles.items()])
            await self._audit(c, [audit])
            return True

    async def change_orgs(self, username: str, changes: dict[str, str | None], audit: AuditRecord) -> bool:
        async with self._tx() as c:
            if await c.fetchval("SELECT 1 FROM discharger.users WHERE username = $1 FOR UPDATE", username) is None:
                return False
            changed = 0
            for org, role in sorted(changes.items()):
                if role is None:
                    done = await c.fetch("DELETE FROM discharger.memberships WHERE username = $1 AND org = $2 RETURNING 1",
                                         username, org)
                else:
                    done = await c.fetch("INSERT INTO discharger.memberships (username, org, role) VALUES ($1, $2, $3)"
                                         " ON CONFLICT (username, org) DO UPDATE SET role = excluded.role"
                                         " WHERE memberships.role <> excluded.role RETURNING 1", username, org, role)
                changed += len(done)
            if changed:
                await self._audit(c, [audit])
            return bool(changed)

    async def disable_user(self, username: str, audit: AuditRecord, disabled: bool = True) -> bool:
        async with self._tx() as c:
            if await c.fetchval("UPDATE discharger.users SET disabled = $1 WHERE username = $2 RETURNING 1",
                                int(disabled), username) is None:
                return False
            await self._audit(c, [audit])
            return True

    async def list_users(self) -> list[UserRow]:
        async with self._conn() as c:
            users = await c.fetch("SELECT username, password_hash, disabled, idp FROM discharger.users ORDER BY username")
            members = await c.fetch("SELECT username, org, role FROM discharger.memberships")
        roles: dict[str, dict[str, str]] = {}
        for m in members:
            roles.setdefault(m[0], {})[m[1]] = m[2]
        return [UserRow(u[0], bytes(u[1]), bool(u[2]), roles.get(u[0], {}), u[3]) for u in users]

    async def set_password(self, username: str, password_hash: bytes, audit: AuditRecord) -> bool:
        async with self._tx() as c:
            if await c.fetchval("UPDATE discharger.users SET password_hash = $1 WHERE username = $2 RETURNING 1",
                                password_hash, username) is None:
                return False
            await c.execute("DELETE FROM discharger.sessions WHERE username = $1", username)
            await c.execute("DELETE FROM discharger.browser_sessions WHERE username = $1", username)
            await self._audit(c, [audit])
            return True

    async def create_session(self, digest: bytes, username: str, expires_at: int, now: int,
                             audit: AuditRecord, auth_method: str = "password") -> None:
        async with self._tx() as c:
            await c.execute("DELETE FROM discharger.sessions WHERE expires_at <= $1", now)
            await c.execute("INSERT INTO discharger.sessions (hash, username, expires_at, auth_method) VALUES ($1, $2, $3, $4)",
                            digest, username, expires_at, auth_method)
            await self._audit(c, [audit])

    async def session_user(self, digest: bytes, now: int) -> str | None:
        found = await self.session(digest, now)
        return found.username if found else None

    async def session(self, digest: bytes, now: int) -> SessionRow | None:
        row = await self._one("SELECT username, expires_at, auth_method FROM discharger.sessions"
                              " WHERE hash = $1 AND expires_at > $2", digest, now)
        return SessionRow(row[0], row[1], row[2]) if row else None

    async def delete_session(self, digest: bytes) -> bool:
        async with self._tx() as c:
            return await c.fetchval("DELETE FROM discharger.sessions WHERE hash = $1 RETURNING 1", digest) is not None

    # --- events for the authorities (SPEC §18) ------------------------------------------------

    async def claim_events(self, now: int, lease: int, limit: int) -> list[tuple[int, str, str, str, str, int, int]]:
        async with self._tx() as c:
            rows = await c.fetch(
                "UPDATE discharger.event_outbox SET claimed_until = $2 WHERE seq IN (SELECT seq FROM"
                " discharger.event_outbox WHERE due_at <= $1 AND claimed_until <= $1 ORDER BY seq LIMIT $3"
                " FOR UPDATE SKIP LOCKED) RETURNING seq, id, type, subject, orgs, at, attempts", now, now + lease, limit)
        return sorted((r[0], r[1], r[2], r[3], r[4], r[5], r[6]) for r in rows)

    async def event_sent(self, seq: int) -> None:
        async with self._tx() as c:
            await c.execute("DELETE FROM discharger.event_outbox WHERE seq = $1", seq)

    async def event_failed(self, seq: int, due_at: int) -> None:
        async with self._tx() as c:
            await c.execute("UPDATE discharger.event_outbox SET attempts = attempts + 1, due_at = $1,"
                            " claimed_until = 0 WHERE seq = $2", due_at, seq)

    async def events_pending(self) -> int:
        row = await self._one("SELECT count(*) FROM discharger.event_outbox")
        return int(row[0]) if row else 0

    async def record_leaked(self, digest: bytes, kind: str, now: int, audit: AuditRecord) -> bool:
        async with self._tx() as c:
            new = await c.fetchval("INSERT INTO discharger.leaked_secrets (hash, kind, reported_at) VALUES ($1, $2, $3)"
                                   " ON CONFLICT DO NOTHING RETURNING 1", digest, kind, now) is not None
            if new:
                await self._audit(c, [audit])
        return new

    async def leaked(self, digest: bytes) -> bool:
        return await self._one("SELECT 1 FROM discharger.leaked_secrets WHERE hash = $1", digest) is not None

    # --- browser sessions and grants ----------------------------------------------------------

    async def create_browser_session(self, digest: bytes, username: str, expires_at: int, now: int,
                                     audit: AuditRecord, auth_method: str = "password") -> None:
        async with self._tx() as c:
            await c.execute("DELETE FROM discharger.browser_sessions WHERE expires_at <= $1", now)
            await c.execute("INSERT INTO discharger.browser_sessions (hash, username, expires_at, auth_method)"
                            " VALUES ($1, $2, $3, $4)", digest, username, expires_at, auth_method)
            await self._audit(c, [audit])

    async def browser_session(self, digest: bytes, now: int) -> SessionRow | None:
        row = await self._one("SELECT username, expires_at, auth_method FROM discharger.browser_sessions"
                              " WHERE hash = $1 AND expires_at > $2", digest, now)
        return SessionRow(row[0], row[1], row[2]) if row else None

    async def delete_browser_session(self, digest: bytes) -> bool:
        async with self._tx() as c:
            return await c.fetchval("DELETE FROM discharger.browser_sessions WHERE hash = $1 RETURNING 1", digest) is not None

    async def add_grant(self, row: GrantRow, now: int) -> bool:
        async with self._tx() as c:
            await c.execute("DELETE FROM discharger.grants WHERE expires_at <= $1", now - 3600)
            done = await c.fetchval(
                f"INSERT INTO discharger.grants ({_GRANT_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
                " ON CONFLICT DO NOTHING RETURNING 1",
                row.hash, row.kind, row.lookup, json.dumps(row.data), row.status, row.created_at, row.expires_at,
                row.username, row.interval, row.polled_at, row.code_hash, row.code_expires_at)
            return done is not None

    async def get_grant(self, kind: str, *, digest: bytes | None = None, lookup: str | None = None) -> GrantRow | None:
        if digest is not None:
            row = await self._one(f"SELECT {_GRANT_COLS} FROM discharger.grants WHERE kind = $1 AND hash = $2", kind, digest)
        else:
            row = await self._one(f"SELECT {_GRANT_COLS} FROM discharger.grants WHERE kind = $1 AND lookup = $2", kind, lookup)
        return _grant(row) if row else None

    async def update_grant(self, row: GrantRow, expected: str, audit: AuditRecord | None = None) -> bool:
        async with self._tx() as c:
            done = await c.fetchval(
                "UPDATE discharger.grants SET status = $1, username = $2, interval = $3, polled_at = $4, code_hash = $5,"
                " code_expires_at = $6, data = $9 WHERE hash = $7 AND status = $8 RETURNING 1",
                row.status, row.username, row.interval, row.polled_at, row.code_hash, row.code_expires_at, row.hash,
                expected, json.dumps(row.data))
            if done is not None and audit is not None:
                await self._audit(c, [audit])
            return done is not None

    # --- identities at OpenID providers ----------------------------------------------------

    @staticmethod
    async def _link(c: asyncpg.Connection, username: str, link: Link, now: int) -> bool:
        return await c.fetchval("INSERT INTO discharger.identity_links (issuer, sub, username, provider, created_at)"
                                " VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING RETURNING 1",
                                link.issuer, link.sub, username, link.provider, now) is not None

    async def link_identity(self, username: str, link: Link, now: int, audit: AuditRecord) -> bool:
        async with self._tx() as c:
            if await c.fetchval("SELECT 1 FROM discharger.users WHERE username = $1 FOR SHARE", username) is None:
                return False
            if not await self._link(c, username, link, now):
                return False
            await self._audit(c, [audit])
            return True

    async def linked_user(self, issuer: str, sub: str) -> str | None:
        row = await self._one("SELECT username FROM discharger.identity_links WHERE issuer = $1 AND sub = $2", issuer, sub)
        return row[0] if row else None

    async def links(self, username: str) -> list[Link]:
        rows = await self._all("SELECT issuer, sub, provider FROM discharger.identity_links WHERE username = $1"
                               " ORDER BY created_at, issuer, sub", username)
        return [Link(r[0], r[1], r[2]) for r in rows]

    async def claim_state(self, digest: bytes, expires_at: int, now: int) -> bool:
        async with self._tx() as c:
            await c.execute("DELETE FROM discharger.used_states WHERE expires_at <= $1", now)
            return await c.fetchval("INSERT INTO discharger.used_states (hash, expires_at) VALUES ($1, $2)"
                                    " ON CONFLICT DO NOTHING RETURNING 1", digest, expires_at) is not None

    # --- second factors and org policies ----------------------------------------------------

    async def begin_totp(self, username: str, sealed_seed: bytes, now: int) -> bool:
        async with self._tx() as c:
            return await c.fetchval(
                "INSERT INTO discharger.totp (username, sealed_seed, confirmed, last_step, created_at) VALUES ($1, $2, 0, 0, $3)"
                " ON CONFLICT (username) DO UPDATE SET sealed_seed = $2, last_step = 0, created_at = $3"
                " WHERE totp.confirmed = 0 RETURNING 1", username, sealed_seed, now) is not None

    async def totp(self, username: str) -> TotpRow | None:
        row = await self._one("SELECT sealed_seed, confirmed, last_step FROM discharger.totp WHERE username = $1", username)
        return TotpRow(bytes(row[0]), bool(row[1]), row[2]) if row else None

    async def confirm_totp(self, username: str, step: int, recovery: list[bytes], audit: AuditRecord,
                           sealed_seed: bytes) -> bool:
        async with self._tx() as c:
            if await c.fetchval("UPDATE discharger.totp SET confirmed = 1, last_step = $1 WHERE username = $2 AND confirmed = 0"
                                " AND last_step < $1 AND sealed_seed = $3 RETURNING 1", step, username,
                                sealed_seed) is None:
                return False
            await c.execute("DELETE FROM discharger.recovery_codes WHERE username = $1", username)
            await c.executemany("INSERT INTO discharger.recovery_codes (username, hash) VALUES ($1, $2)",
                                [(username, h) for h in recovery])
            await self._audit(c, [audit])
            return True

    async def use_totp_step(self, username: str, step: int) -> bool:
        async with self._tx() as c:
            return await c.fetchval("UPDATE discharger.totp SET last_step = $1 WHERE username = $2 AND confirmed = 1"
                                    " AND last_step < $1 RETURNING 1", step, username) is not None

    async def use_recovery_code(self, username: str, digest: bytes, now: int) -> bool:
        async with self._tx() as c:
            return await c.fetchval("UPDATE discharger.recovery_codes SET used_at = $1 WHERE username = $2 AND hash = $3"
                                    " AND used_at IS NULL RETURNING 1", now, username, digest) is not None

    async def recovery_left(self, username: str) -> int:
        row = await self._one("SELECT count(*) FROM discharger.recovery_codes WHERE username = $1 AND used_at IS NULL", username)
        return int(row[0])

    async def remove_factors(self, username: str, audit: AuditRecord) -> bool:
        async with self._tx() as c:
            totp = await c.fetchval("DELETE FROM discharger.totp WHERE username = $1 RETURNING 1", username)
            keys = await c.fetch("DELETE FROM discharger.passkeys WHERE username = $1 RETURNING 1", username)
            await c.execute("DELETE FROM discharger.recovery_codes WHERE username = $1", username)
            removed = totp is not None or bool(keys)
            if removed:
                await self._audit(c, [audit])
            return removed

    async def add_passkey(self, row: PasskeyRow, now: int, audit: AuditRecord) -> bool:
        async with self._tx() as c:
            if await c.fetchval("INSERT INTO discharger.passkeys (credential_id, username, public_key, sign_count, created_at)"
                                " VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING RETURNING 1", row.credential_id,
                                row.username, row.public_key, row.sign_count, now) is None:
                return False
            await self._audit(c, [audit])
            return True

    async def passkey(self, credential_id: bytes) -> PasskeyRow | None:
        row = await self._one("SELECT credential_id, username, public_key, sign_count FROM discharger.passkeys"
                              " WHERE credential_id = $1", credential_id)
        return PasskeyRow(bytes(row[0]), row[1], bytes(row[2]), row[3]) if row else None

    async def passkeys_of(self, username: str) -> list[PasskeyRow]:
        rows = await self._all("SELECT credential_id, username, public_key, sign_count FROM discharger.passkeys"
                               " WHERE username = $1 ORDER BY created_at", username)
        return [PasskeyRow(bytes(r[0]), r[1], bytes(r[2]), r[3]) for r in rows]

    async def use_passkey(self, credential_id: bytes, sign_count: int) -> bool:
        async with self._tx() as c:
            return await c.fetchval("UPDATE discharger.passkeys SET sign_count = $2 WHERE credential_id = $1"
                                    " AND (sign_count < $2 OR (sign_count = 0 AND $2 = 0)) RETURNING 1",
                                    credential_id, sign_count) is not None

    async def org_policy(self, org: str) -> OrgPolicy:
        row = await self._one("SELECT require_idp, require_mfa FROM discharger.org_policies WHERE org = $1", org)
        return OrgPolicy(org, row[0], bool(row[1])) if row else OrgPolicy(org)

    async def set_org_policy(self, policy: OrgPolicy, audit: AuditRecord) -> None:
        async with self._tx() as c:
            await c.execute("INSERT INTO discharger.org_policies (org, require_idp, require_mfa) VALUES ($1, $2, $3)"
                            " ON CONFLICT (org) DO UPDATE SET require_idp = $2, require_mfa = $3",
                            policy.org, policy.require_idp, int(policy.require_mfa))
            await self._audit(c, [audit])

    # --- service principals -----------------------------------------------------------------

    async def create_principal(self, row: PrincipalRow, audit: AuditRecord) -> bool:
        async with self._tx() as c:
            done = await c.fetchval("INSERT INTO discharger.principals (name, org, role, disabled, created_at)"
                                    " VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING RETURNING 1",
                                    row.name, row.org, row.role, int(row.disabled), row.created_at)
            if done:
                await self._audit(c, [audit])
            return bool(done)

    async def principal(self, name: str) -> PrincipalRow | None:
        found = await self.list_principals(name=name)
        return found[0] if found else None

    async def list_principals(self, org: str | None = None, name: str | None = None) -> list[PrincipalRow]:
        async with self._conn() as c:
            rows = await c.fetch("SELECT name, org, role, disabled, created_at FROM discharger.principals"
                                 " WHERE ($1::text IS NULL OR name = $1) AND ($2::text IS NULL OR org = $2)"
                                 " ORDER BY name", name, org or None)
            found = await c.fetch("SELECT principal, id, issuer, audience, claims, max_age FROM discharger.trust_policies"
                                  " WHERE principal = ANY($1::text[]) ORDER BY created_at, id", [r[0] for r in rows])
        policies: dict[str, list[TrustPolicy]] = {}
        for r in found:
            policies.setdefault(r[0], []).append(TrustPolicy(r[1], r[2], r[3], json.loads(r[4]), r[5]))
        return [PrincipalRow(r[0], r[1], r[2], bool(r[3]), r[4], tuple(policies.get(r[0], ()))) for r in rows]

    async def set_principal_disabled(self, name: str, disabled: bool, audit: AuditRecord) -> bool:
        async with self._tx() as c:
            done = await c.fetchval("UPDATE discharger.principals SET disabled = $2 WHERE name = $1 RETURNING 1",
                                    name, int(disabled))
            if done:
                await self._audit(c, [audit])
            return bool(done)

    async def remove_principal(self, name: str, audit: AuditRecord) -> bool:
        async with self._tx() as c:
            await c.execute("DELETE FROM discharger.trust_policies WHERE principal = $1", name)
            done = await c.fetchval("DELETE FROM discharger.principals WHERE name = $1 RETURNING 1", name)
            if done:
                await self._audit(c, [audit])
            return bool(done)

    async def add_trust_policy(self, name: str, policy: TrustPolicy, now: int, audit: AuditRecord) -> bool:
        async with self._tx() as c:
            if await c.fetchval("SELECT 1 FROM discharger.principals WHERE name = $1 FOR UPDATE", name) is None:
                return False
            await c.execute("INSERT INTO discharger.trust_policies (id, principal, issuer, audience, claims, max_age,"
                            " created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)", policy.id, name, policy.issuer,
                            policy.audience, json.dumps(policy.claims), policy.max_age, now)
            await self._audit(c, [audit])
            return True

    async def remove_trust_policy(self, name: str, policy_id: str, audit: AuditRecord) -> bool:
        async with self._tx() as c:
            done = await c.fetchval("DELETE FROM discharger.trust_policies WHERE principal = $1 AND id = $2 RETURNING 1",
                                    name, policy_id)
            if done:
                await self._audit(c, [audit])
            return bool(done)

    async def claim_id_token(self, issuer: str, jti: str, expires_at: int, now: int) -> bool:
        async with self._tx() as c:
            await c.execute("DELETE FROM discharger.used_id_tokens WHERE expires_at <= $1", now)
            return await c.fetchval("INSERT INTO discharger.used_id_tokens (issuer, jti, expires_at) VALUES ($1, $2, $3)"
                                    " ON CONFLICT DO NOTHING RETURNING 1", issuer, jti, expires_at) is not None

    # --- keys -------------------------------------------------------------------------------

    async def list_keys(self) -> list[tuple[str, bytes]]:
        return [(r[0], bytes(r[1])) for r in await self._all("SELECT kid, sealed FROM discharger.keys ORDER BY position DESC")]

    async def add_keys_if_none(self, rows: list[tuple[str, bytes]], now: int, audit: AuditRecord) -> bool:
        async with self._tx() as c:
            await c.execute("SELECT pg_advisory_xact_lock($1, $2)", *_KEYS_LOCK)  # replicas starting together
            if await c.fetchval("SELECT 1 FROM discharger.keys LIMIT 1") is not None:
                return False
            await c.executemany("INSERT INTO discharger.keys (kid, sealed, position, created_at) VALUES ($1, $2, $3, $4)",
                                [(kid, sealed, len(rows) - i, now) for i, (kid, sealed) in enumerate(rows)])
            await self._audit(c, [audit])
            return True

    async def add_key(self, kid: str, sealed: bytes, now: int, audit: AuditRecord) -> None:
        async with self._tx() as c:
            await c.execute("SELECT pg_advisory_xact_lock($1, $2)", *_KEYS_LOCK)
            await c.execute("INSERT INTO discharger.keys (kid, sealed, position, created_at) "
                            "VALUES ($1, $2, (SELECT coalesce(max(position), 0) + 1 FROM discharger.keys), $3)", kid, sealed, now)
            await self._audit(c, [audit])

    async def retire_key(self, kid: str, audit: AuditRecord) -> str:
        async with self._tx() as c:
            await c.execute("SELECT pg_advisory_xact_lock($1, $2)", *_KEYS_LOCK)
            if await c.fetchval("SELECT 1 FROM discharger.keys WHERE kid = $1", kid) is None:
                return "unknown"
            if await c.fetchval("SELECT count(*) FROM discharger.keys") == 1:
                return "last"
            await c.execute("DELETE FROM discharger.keys WHERE kid = $1", kid)
            await self._audit(c, [audit])
            return "ok"

    # --- the login throttle -----------------------------------------------------------------

    async def login_attempt(self, limits: list[tuple[str, int]], now: float, window: float) -> float | None:
        subjects = sorted(s for s, _ in limits)
        async with self._tx() as c:
            for s in subjects:  # one subject's check-and-count at a time, across replicas
                await c.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))", _THROTTLE_SPACE, s)
            counts = {r[0]: (r[1], r[2]) for r in await c.fetch(
                "SELECT subject, count(*), min(at) FROM discharger.login_failures WHERE subject = ANY($1) AND at > $2 "
                "GROUP BY subject", subjects, now - window)}
            wait = None
            for subject, limit in limits:
                n, oldest = counts.get(subject, (0, now))
                if n >= limit:
                    wait = max(wait or 0.0, oldest + window - now)
            if wait is None:
                await c.executemany("INSERT INTO discharger.login_failures (subject, at) VALUES ($1, $2)",
                                    [(s, now) for s in subjects])
            return wait

    async def clear_login_failures(self, subject: str) -> None:
        async with self._tx() as c:
            await c.execute("DELETE FROM discharger.login_failures WHERE subject = $1", subject)

    async def prune_login_failures(self, before: float) -> None:
        async with self._tx() as c:
            await c.execute("DELETE FROM discharger.login_failures WHERE at <= $1", before)

    async def forget_attempt(self, subjects: list[str], at: float) -> None:
        async with self._tx() as c:
            for subject in subjects:
                await c.execute("DELETE FROM discharger.login_failures WHERE ctid IN"
                                " (SELECT ctid FROM discharger.login_failures WHERE subject = $1 AND at = $2 LIMIT 1)", subject, at)
