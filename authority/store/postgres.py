"""The authority's store on PostgreSQL (schema `authority`): all of its PostgreSQL SQL.

Concurrency, since replicas write at once (the SQLite store has one writer and needs none
of this):
- A strip locks its parent's row (FOR SHARE) and a revocation locks its token's row
  (FOR UPDATE) before reading lineage, so a strip racing a revocation either sees it and is
  refused, or commits first and is found by the revocation's cascade. The strip runs as one
  function call (`insert_token`, v2); strips arriving together run as one statement
  (`GroupCall`), one round trip and one commit per batch. Being VOLATILE, each query in
  it takes a fresh snapshot, so the lineage read after the lock sees a revocation that
  committed while the strip waited for it.
- Feed entries are numbered under one advisory lock held to commit, so their `seq` order is
  commit order and a reader following `seq > cursor` never passes an entry that commits
  later. The same transaction NOTIFYs `sable_feed`, a wake-up delivered at commit.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from typing import Any

import asyncpg

from authority.store import (
    RECEIVED_FOR,
    TOKEN_COLUMNS,
    ConsoleSessionRow,
    DeliveryRow,
    DischargeUsed,
    OrgRow,
    RevocationRow,
    StoreError,
    TokenRow,
    WebhookRow,
    delivery_row,
    token_row,
    token_values,
    webhook_row,
)
from server.audit import AuditFor, AuditRecord, ListedIn
from server.groupcommit import GroupCall
from server.postgres import COMMON_V1, PgDatabase

FEED_CHANNEL = "sable_feed"
_FEED_LOCK = 0x5AB1EFEED

V1 = """
CREATE TABLE IF NOT EXISTS orgs (name TEXT PRIMARY KEY, created_at BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS tokens (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    name TEXT,
    org TEXT NOT NULL REFERENCES orgs(name),
    parent TEXT REFERENCES tokens(id),
    "user" TEXT,
    caveat_count INTEGER NOT NULL,
    sealed_key BYTEA NOT NULL,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT,
    last_used_at BIGINT
);
CREATE INDEX IF NOT EXISTS tokens_org ON tokens(org);
CREATE INDEX IF NOT EXISTS tokens_parent ON tokens(parent);
CREATE TABLE IF NOT EXISTS revoked_attenuations (
    fingerprint BYTEA PRIMARY KEY,
    token_id TEXT NOT NULL REFERENCES tokens(id),
    revoked_at BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS revoked_attenuations_token ON revoked_attenuations(token_id);
CREATE TABLE IF NOT EXISTS strip_lineage (
    fingerprint BYTEA NOT NULL,
    service_id TEXT NOT NULL REFERENCES tokens(id)
);
CREATE INDEX IF NOT EXISTS strip_lineage_fingerprint ON strip_lineage(fingerprint);
CREATE TABLE IF NOT EXISTS revocations (
    seq BIGSERIAL PRIMARY KEY,
    token_id TEXT NOT NULL,
    scope TEXT NOT NULL,
    at BIGINT NOT NULL,
    fingerprint BYTEA
);
"""

_TOKEN_COLS = ", ".join(f'"{c}"' for c in TOKEN_COLUMNS)  # "user" is a keyword here


async def _feed(c: asyncpg.Connection, entries: list[tuple]) -> None:
    """Append (token_id, scope, at, fingerprint) entries to the feed in commit order."""
    if not entries:
        return
    await c.execute("SELECT pg_advisory_xact_lock($1)", _FEED_LOCK)
    await c.executemany("INSERT INTO authority.revocations (token_id, scope, at, fingerprint) VALUES ($1, $2, $3, $4)", entries)
    await c.execute("SELECT pg_notify($1, '')", FEED_CHANNEL)


# v2: a new token, its lineage and its audit row in one call (see the module doc).
V2 = """
CREATE OR REPLACE FUNCTION insert_token(
    p_id TEXT, p_kind TEXT, p_name TEXT, p_org TEXT, p_parent TEXT, p_user TEXT, p_caveat_count INTEGER,
    p_sealed_key BYTEA, p_created_at BIGINT, p_revoked_at BIGINT, p_last_used_at BIGINT, p_lineage BYTEA[],
    a_at DOUBLE PRECISION, a_event TEXT, a_outcome TEXT, a_request_id TEXT, a_client TEXT, a_token_id TEXT,
    a_parent TEXT, a_org TEXT, a_user TEXT, a_detail TEXT
) RETURNS BOOLEAN LANGUAGE plpgsql VOLATILE SET search_path FROM CURRENT AS $fn$
BEGIN
    IF p_parent IS NOT NULL THEN
        PERFORM 1 FROM tokens WHERE id = p_parent AND revoked_at IS NULL FOR SHARE;
        IF NOT FOUND THEN
            RETURN FALSE;
        END IF;
    END IF;
    IF EXISTS (SELECT 1 FROM revoked_attenuations WHERE fingerprint = ANY(p_lineage)) THEN
        RETURN FALSE;
    END IF;
    INSERT INTO tokens (id, kind, name, org, parent, "user", caveat_count, sealed_key, created_at, revoked_at,
                        last_used_at)
        VALUES (p_id, p_kind, p_name, p_org, p_parent, p_user, p_caveat_count, p_sealed_key, p_created_at,
                p_revoked_at, p_last_used_at);
    INSERT INTO strip_lineage (fingerprint, service_id) SELECT fp, p_id FROM unnest(p_lineage) AS fp;
    INSERT INTO audit (at, event, outcome, request_id, client, token_id, parent, org, "user", detail)
        VALUES (a_at, a_event, a_outcome, a_request_id, a_client, a_token_id, a_parent, a_org, a_user, a_detail);
    RETURN TRUE;
END
$fn$;
"""


# v3: who made each token, its caveats and expiry (0.1.0 rows: permission tokens by the admin
# credential, service tokens by their user), the console's browser state, and an
# insert_token() taking the new columns. The v2 function stays for a rolling upgrade.
V3 = """
ALTER TABLE tokens ADD COLUMN IF NOT EXISTS created_by TEXT;
ALTER TABLE tokens ADD COLUMN IF NOT EXISTS caveats TEXT;
ALTER TABLE tokens ADD COLUMN IF NOT EXISTS expires_at BIGINT;
UPDATE tokens SET created_by = CASE WHEN kind = 'permission' THEN '@admin' ELSE "user" END WHERE created_by IS NULL;
CREATE TABLE IF NOT EXISTS console_sessions (
    hash BYTEA PRIMARY KEY,
    username TEXT NOT NULL,
    org TEXT NOT NULL,
    role TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS console_signins (
    hash BYTEA PRIMARY KEY,
    sealed BYTEA NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE OR REPLACE FUNCTION insert_token(
    p_id TEXT, p_kind TEXT, p_name TEXT, p_org TEXT, p_parent TEXT, p_user TEXT, p_caveat_count INTEGER,
    p_sealed_key BYTEA, p_created_at BIGINT, p_revoked_at BIGINT, p_last_used_at BIGINT, p_created_by TEXT,
    p_caveats TEXT, p_expires_at BIGINT, p_lineage BYTEA[],
    a_at DOUBLE PRECISION, a_event TEXT, a_outcome TEXT, a_request_id TEXT, a_client TEXT, a_token_id TEXT,
    a_parent TEXT, a_org TEXT, a_user TEXT, a_detail TEXT
) RETURNS BOOLEAN LANGUAGE plpgsql VOLATILE SET search_path FROM CURRENT AS $fn$
BEGIN
    IF p_parent IS NOT NULL THEN
        PERFORM 1 FROM tokens WHERE id = p_parent AND revoked_at IS NULL FOR SHARE;
        IF NOT FOUND THEN
            RETURN FALSE;
        END IF;
    END IF;
    IF EXISTS (SELECT 1 FROM revoked_attenuations WHERE fingerprint = ANY(p_lineage)) THEN
        RETURN FALSE;
    END IF;
    INSERT INTO tokens (id, kind, name, org, parent, "user", caveat_count, sealed_key, created_at, revoked_at,
                        last_used_at, created_by, caveats, expires_at)
        VALUES (p_id, p_kind, p_name, p_org, p_parent, p_user, p_caveat_count, p_sealed_key, p_created_at,
                p_revoked_at, p_last_used_at, p_created_by, p_caveats, p_expires_at);
    INSERT INTO strip_lineage (fingerprint, service_id) SELECT fp, p_id FROM unnest(p_lineage) AS fp;
    INSERT INTO audit (at, event, outcome, request_id, client, token_id, parent, org, "user", detail)
        VALUES (a_at, a_event, a_outcome, a_request_id, a_client, a_token_id, a_parent, a_org, a_user, a_detail);
    RETURN TRUE;
END
$fn$;
"""

# v4: revocations that arrive together, in one statement (see `PostgresStore._revoke_batch`).
# Item i revokes token p_tokens[i] whole (p_fps[i] NULL) or only its attenuation p_fps[i]; its
# result is the ids its cascade revoked, or NULL when it changed nothing (no such token, or the
# attenuation was revoked already). An item with an audit row (a_event[i] not NULL) gets it
# here: a_detail[i] with the ids under a_key[i], or as it is when none were and a_when_none[i]
# (`server.audit.ListedIn`). Every row lock comes first (tokens in id order, so two batches
# never wait for each other in a cycle), the feed lock last, after every row lock.
V4 = """
CREATE OR REPLACE FUNCTION revoke_batch(
    p_tokens TEXT[], p_fps BYTEA[], p_nows BIGINT[], p_feed_lock BIGINT,
    a_at DOUBLE PRECISION[], a_event TEXT[], a_outcome TEXT[], a_request_id TEXT[], a_client TEXT[],
    a_token_id TEXT[], a_parent TEXT[], a_org TEXT[], a_user TEXT[], a_detail TEXT[], a_key TEXT[],
    a_when_none BOOLEAN[]
) RETURNS TABLE (ord INTEGER, ids TEXT[]) LANGUAGE plpgsql VOLATILE SET search_path FROM CURRENT AS $fn$
DECLARE
    i INTEGER;
    found_ids TEXT[];
    roots TEXT[];
    feed_token TEXT[] := '{}';
    feed_scope TEXT[] := '{}';
    feed_fp BYTEA[] := '{}';
    feed_at BIGINT[] := '{}';
BEGIN
    PERFORM 1 FROM tokens WHERE id = ANY(p_tokens) ORDER BY id FOR UPDATE;
    FOR i IN 1 .. coalesce(array_length(p_tokens, 1), 0) LOOP
        IF p_fps[i] IS NULL THEN
            IF NOT EXISTS (SELECT 1 FROM tokens WHERE id = p_tokens[i]) THEN
                ord := i; ids := NULL; RETURN NEXT; CONTINUE;
            END IF;
            roots := ARRAY[p_tokens[i]];
        ELSE
            INSERT INTO revoked_attenuations (fingerprint, token_id, revoked_at) VALUES (p_fps[i], p_tokens[i], p_nows[i])
                ON CONFLICT DO NOTHING;
            IF NOT FOUND THEN
                ord := i; ids := NULL; RETURN NEXT; CONTINUE;
            END IF;
            roots := ARRAY(SELECT service_id FROM strip_lineage WHERE fingerprint = p_fps[i]);
            feed_token := feed_token || p_tokens[i];
            feed_scope := feed_scope || 'attenuation'::TEXT;
            feed_fp := feed_fp || p_fps[i];
            feed_at := feed_at || p_nows[i];
        END IF;
        WITH RECURSIVE sub(id) AS (SELECT id FROM tokens WHERE id = ANY(roots)
                                   UNION SELECT t.id FROM tokens t JOIN sub ON t.parent = sub.id),
             done AS (UPDATE tokens SET revoked_at = p_nows[i] FROM sub
                      WHERE tokens.id = sub.id AND tokens.revoked_at IS NULL RETURNING tokens.id)
        SELECT coalesce(array_agg(done.id ORDER BY done.id), '{}') INTO found_ids FROM done;
        feed_token := feed_token || found_ids;
        feed_scope := feed_scope || array_fill('token'::TEXT, ARRAY[cardinality(found_ids)]);
        feed_fp := feed_fp || array_fill(NULL::BYTEA, ARRAY[cardinality(found_ids)]);
        feed_at := feed_at || array_fill(p_nows[i], ARRAY[cardinality(found_ids)]);
        IF a_event[i] IS NOT NULL AND (cardinality(found_ids) > 0 OR a_when_none[i]) THEN
            INSERT INTO audit (at, event, outcome, request_id, client, token_id, parent, org, "user", detail)
                VALUES (a_at[i], a_event[i], a_outcome[i], a_request_id[i], a_client[i], a_token_id[i], a_parent[i],
                        a_org[i], a_user[i],
                        CASE WHEN cardinality(found_ids) > 0
                             THEN (coalesce(a_detail[i]::jsonb, '{}'::jsonb)
                                   || jsonb_build_object(a_key[i], to_jsonb(found_ids)))::text
                             ELSE a_detail[i] END);
        END IF;
        ord := i; ids := found_ids; RETURN NEXT;
    END LOOP;
    IF cardinality(feed_token) > 0 THEN
        PERFORM pg_advisory_xact_lock(p_feed_lock);
        INSERT INTO revocations (token_id, scope, at, fingerprint)
            SELECT f.t, f.s, f.at, f.fp FROM unnest(feed_token, feed_scope, feed_at, feed_fp) WITH ORDINALITY
                AS f(t, s, at, fp, n)
            ORDER BY f.n;
        PERFORM pg_notify('sable_feed', '');
    END IF;
END
$fn$;
"""

# v5 (SPEC §16): the principal a permission token is sealed for, single-use strips, and
# add_token(): insert_token() with the new columns and a discharge claimed once per token,
# answering 'ok', 'revoked' (parent or lineage) or 'used' (that discharge stripped it before),
# writing nothing unless 'ok'. The v3 function stays for a rolling upgrade.
V5 = """
ALTER TABLE tokens ADD COLUMN IF NOT EXISTS principal TEXT;
ALTER TABLE tokens ADD COLUMN IF NOT EXISTS strip_once INTEGER NOT NULL DEFAULT 0;
CREATE TABLE IF NOT EXISTS used_discharges (
    token_id TEXT NOT NULL,
    discharge_id TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (token_id, discharge_id)
);
CREATE INDEX IF NOT EXISTS used_discharges_expiry ON used_discharges(expires_at);
CREATE OR REPLACE FUNCTION add_token(
    p_id TEXT, p_kind TEXT, p_name TEXT, p_org TEXT, p_parent TEXT, p_user TEXT, p_caveat_count INTEGER,
    p_sealed_key BYTEA, p_created_at BIGINT, p_revoked_at BIGINT, p_last_used_at BIGINT, p_created_by TEXT,
    p_caveats TEXT, p_expires_at BIGINT, p_principal TEXT, p_strip_once INTEGER, p_lineage BYTEA[],
    p_once_id TEXT, p_once_expires BIGINT,
    a_at DOUBLE PRECISION, a_event TEXT, a_outcome TEXT, a_request_id TEXT, a_client TEXT, a_token_id TEXT,
    a_parent TEXT, a_org TEXT, a_user TEXT, a_detail TEXT
) RETURNS TEXT LANGUAGE plpgsql VOLATILE SET search_path FROM CURRENT AS $fn$
BEGIN
    IF p_parent IS NOT NULL THEN
        PERFORM 1 FROM tokens WHERE id = p_parent AND revoked_at IS NULL FOR SHARE;
        IF NOT FOUND THEN
            RETURN 'revoked';
        END IF;
    END IF;
    IF EXISTS (SELECT 1 FROM revoked_attenuations WHERE fingerprint = ANY(p_lineage)) THEN
        RETURN 'revoked';
    END IF;
    IF p_once_id IS NOT NULL THEN
        -- the expired, a few at a time, never waiting for rows another strip is deleting
        DELETE FROM used_discharges WHERE ctid IN (SELECT ctid FROM used_discharges WHERE expires_at <= p_created_at
                                                   LIMIT 100 FOR UPDATE SKIP LOCKED);
        INSERT INTO used_discharges (token_id, discharge_id, expires_at) VALUES (p_parent, p_once_id, p_once_expires)
            ON CONFLICT DO NOTHING;
        IF NOT FOUND THEN
            RETURN 'used';
        END IF;
    END IF;
    INSERT INTO tokens (id, kind, name, org, parent, "user", caveat_count, sealed_key, created_at, revoked_at,
                        last_used_at, created_by, caveats, expires_at, principal, strip_once)
        VALUES (p_id, p_kind, p_name, p_org, p_parent, p_user, p_caveat_count, p_sealed_key, p_created_at,
                p_revoked_at, p_last_used_at, p_created_by, p_caveats, p_expires_at, p_principal, p_strip_once);
    INSERT INTO strip_lineage (fingerprint, service_id) SELECT fp, p_id FROM unnest(p_lineage) AS fp;
    INSERT INTO audit (at, event, outcome, request_id, client, token_id, parent, org, "user", detail)
        VALUES (a_at, a_event, a_outcome, a_request_id, a_client, a_token_id, a_parent, a_org, a_user, a_detail);
    RETURN 'ok';
END
$fn$;
"""

# v6 (SPEC §17): credentials that may only introspect, and which orgs they see.
V6 = """
CREATE TABLE IF NOT EXISTS introspectors (
    hash BYTEA PRIMARY KEY,
    orgs TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
"""

# v7 (SPEC §18): credentials reported leaked (user tokens until they expire, admin credentials), the public revocation queue and its counts.
V7 = """
CREATE TABLE IF NOT EXISTS revoked_credentials (
    credential TEXT PRIMARY KEY,
    expires_at BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS leak_queue (
    seq BIGSERIAL PRIMARY KEY,
    credentials BYTEA NOT NULL,
    client TEXT,
    received_at BIGINT NOT NULL,
    claimed_until BIGINT NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS public_revocation_counts (
    client TEXT NOT NULL,
    hour BIGINT NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (client, hour)
);
"""

# v8 (SPEC §18): webhook endpoints and their outbox. A trigger on the audit trail writes one
# outbox row per matching endpoint in the very transaction of the change (a mint, strip,
# revocation or leak; the PL/pgSQL functions' audit rows included), so an event is never lost
# to a crash and never sent for a rollback.
V8 = """
CREATE TABLE IF NOT EXISTS webhooks (
    id TEXT PRIMARY KEY,
    org TEXT NOT NULL,
    url TEXT NOT NULL,
    events TEXT NOT NULL,
    sealed_secret BYTEA NOT NULL,
    state TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    disabled_at BIGINT
);
CREATE INDEX IF NOT EXISTS webhooks_org ON webhooks(org);
CREATE TABLE IF NOT EXISTS received_events (
    id TEXT PRIMARY KEY,
    received_at BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS org_policies (
    org TEXT PRIMARY KEY,
    max_token_lifetime BIGINT
);
CREATE TABLE IF NOT EXISTS webhook_outbox (
    seq BIGSERIAL PRIMARY KEY,
    endpoint_id TEXT NOT NULL,
    audit_seq BIGINT NOT NULL,
    type TEXT NOT NULL,
    due_at BIGINT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    first_at BIGINT,
    claimed_until BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS webhook_outbox_due ON webhook_outbox(due_at);
CREATE INDEX IF NOT EXISTS webhook_outbox_endpoint ON webhook_outbox(endpoint_id);
CREATE OR REPLACE FUNCTION audit_to_webhooks() RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE
    kind TEXT := CASE NEW.event WHEN 'revoke' THEN 'token.revoked' WHEN 'leak' THEN 'token.leaked' ELSE 'token.created' END;
BEGIN
    IF NEW.event = 'discharger_event' THEN  -- the discharger's user.* and principal.* events
        INSERT INTO authority.webhook_outbox (endpoint_id, audit_seq, type, due_at)
        SELECT w.id, NEW.seq, NEW.detail::jsonb->>'type', NEW.at::bigint
        FROM authority.webhooks w
        WHERE w.state = 'active'
          AND w.org IN (SELECT jsonb_array_elements_text(NEW.detail::jsonb->'orgs'))
          AND position('"' || (NEW.detail::jsonb->>'type') || '"' in w.events) > 0;
        RETURN NULL;
    END IF;
    IF NEW.event = 'leak' AND (NEW.detail::jsonb->>'announce') IS DISTINCT FROM 'true' THEN
        RETURN NULL;  -- one webhook per leaked token and report (authority.leaks)
    END IF;
    INSERT INTO authority.webhook_outbox (endpoint_id, audit_seq, type, due_at)
    SELECT w.id, NEW.seq, kind, NEW.at::bigint
    FROM authority.webhooks w
    WHERE w.state = 'active'
      AND w.org = COALESCE(NEW.org, (SELECT t.org FROM authority.tokens t WHERE t.id = NEW.token_id))
      AND position('"' || kind || '"' in w.events) > 0;
    -- expiry notices 7 days and 1 day ahead, written at mint, for those still ahead
    IF NEW.event IN ('mint', 'strip') THEN
        INSERT INTO authority.webhook_outbox (endpoint_id, audit_seq, type, due_at)
        SELECT w.id, NEW.seq, 'token.expiring', t.expires_at - ahead.s
        FROM authority.webhooks w JOIN authority.tokens t ON t.id = NEW.token_id
        CROSS JOIN (VALUES (604800), (86400)) AS ahead(s)
        WHERE w.state = 'active' AND w.org = t.org AND position('"token.expiring"' in w.events) > 0
          AND t.expires_at IS NOT NULL AND t.expires_at - ahead.s > NEW.at::bigint;
    END IF;
    RETURN NULL;
END
$fn$;
DROP TRIGGER IF EXISTS audit_to_webhooks ON audit;
CREATE TRIGGER audit_to_webhooks AFTER INSERT ON audit FOR EACH ROW
    WHEN (NEW.event IN ('mint', 'strip', 'revoke', 'leak', 'discharger_event') AND NEW.outcome = 'ok')
    EXECUTE FUNCTION audit_to_webhooks();
"""

_REVOKE_BATCH = ("SELECT ord, ids FROM authority.revoke_batch($1::text[], $2::bytea[], $3::bigint[], $4, $5::float8[],"
                 " $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::text[],"
                 " $14::text[], $15::text[], $16::bool[])")

_INSERT_BATCH = """
SELECT authority.add_token(t.id, t.kind, t.name, t.org, t.parent, t.usr, t.caveat_count, t.sealed_key, t.created_at,
                    t.revoked_at, t.last_used_at, t.created_by, t.caveats, t.expires_at, t.principal, t.strip_once,
                    ($31::bytea[])[t.lo + 1 : t.lo + t.n], t.once_id, t.once_expires, t.at, t.event, t.outcome,
                    t.request_id, t.client, t.token_id, t.a_parent, t.a_org, t.a_user, t.detail)
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::int[], $8::bytea[],
            $9::bigint[], $10::bigint[], $11::bigint[], $12::text[], $13::text[], $14::bigint[], $15::text[],
            $16::int[], $17::int[], $18::int[], $19::text[], $20::bigint[], $21::float8[], $22::text[], $23::text[],
            $24::text[], $25::text[], $26::text[], $27::text[], $28::text[], $29::text[], $30::text[])
    WITH ORDINALITY AS t(id, kind, name, org, parent, usr, caveat_count, sealed_key, created_at, revoked_at,
                         last_used_at, created_by, caveats, expires_at, principal, strip_once, lo, n, once_id,
                         once_expires, at, event, outcome, request_id, client, token_id, a_parent, a_org, a_user,
                         detail, ord)
ORDER BY t.ord
"""


_WEBHOOK_COLS = "w.id, w.org, w.url, w.events, w.sealed_secret, w.state, w.created_at, w.disabled_at"
_DELIVERIES = (
    "SELECT o.seq, o.type, o.attempts, o.first_at, o.audit_seq, " + _WEBHOOK_COLS + ", a.at, a.token_id, a.org,"
    " a.detail, " + ", ".join(f't."{c}"' for c in TOKEN_COLUMNS) +
    " FROM authority.webhook_outbox o JOIN authority.webhooks w ON w.id = o.endpoint_id JOIN authority.audit a ON a.seq = o.audit_seq"
    " LEFT JOIN authority.tokens t ON t.id = a.token_id"
    " WHERE o.due_at <= $1 AND o.claimed_until <= $2 AND w.state = 'active' ORDER BY o.due_at, o.seq")


def _insert_args(items: list[tuple[TokenRow, AuditRecord, list[bytes], tuple[str, int] | None]],
                 ) -> tuple[list[int], list]:
    """(the items' order in the statement, _INSERT_BATCH's arguments)."""
    # Parents in one order, so two batches (or a batch and `touch`) never lock in a cycle.
    order = sorted(range(len(items)), key=lambda i: items[i][0].parent or "")
    values: list[tuple] = []
    flat: list[bytes] = []
    for i in order:
        row, a, lineage, once = items[i]
        once_id, once_expires = once if once is not None else (None, None)
        values.append((*token_values(row), len(flat), len(lineage), once_id, once_expires, a.at, a.event,
                       a.outcome, a.request_id, a.client, a.token_id, a.parent, a.org, a.user,
                       json.dumps(a.detail) if a.detail else None))
        flat.extend(lineage)
    cols = [list(col) for col in zip(*values)]  # one array per parameter of _INSERT_BATCH
    return order, [*cols, flat]


def _revoke_args(items: list[tuple[str, bytes | None, int, AuditFor[list[str]]]],
                 listed: list[ListedIn | None]) -> tuple:
    """_REVOKE_BATCH's arguments; audit rules given as data (`listed`) are written by it."""
    records = [a.record if a is not None else None for a in listed]
    return ([t for t, _, _, _ in items], [fp for _, fp, _, _ in items], [now for _, _, now, _ in items], _FEED_LOCK,
            *([getattr(r, f) if r is not None else None for r in records]
              for f in ("at", "event", "outcome", "request_id", "client", "token_id", "parent", "org", "user")),
            [json.dumps(r.detail) if r is not None and r.detail else None for r in records],
            [a.key if a is not None else None for a in listed], [bool(a and a.when_none) for a in listed])


class PostgresStore(PgDatabase):
    SCHEMA = "authority"
    MIGRATIONS = (COMMON_V1 + V1, V2, V3, V4, V5, V6, V7, V8)

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        # Strips and mints are grouped, and so are revocations: see GroupCall.
        self._inserts = GroupCall(self._insert_batch, limit=64, fail_all=(StoreError,))
        self._revocations = GroupCall(self._revoke_batch, limit=64, fail_all=(StoreError,), parallel=2)

    async def record_discharger_event(self, event_id: str, user: str, session_orgs: list[str] | None, now: int,
                                      audit: AuditRecord) -> bool:
        async with self._tx() as c:
            await c.execute("DELETE FROM authority.received_events WHERE received_at < $1", now - RECEIVED_FOR)
            if await c.fetchval("INSERT INTO authority.received_events (id, received_at) VALUES ($1, $2)"
                                " ON CONFLICT DO NOTHING RETURNING 1", event_id, now) is None:
                return False
            ended = 0
            if session_orgs is None:
                ended = len(await c.fetch("DELETE FROM authority.console_sessions WHERE username = $1 RETURNING 1",
                                          user))
            elif session_orgs:
                ended = len(await c.fetch("DELETE FROM authority.console_sessions WHERE username = $1"
                                          " AND org = ANY($2::text[]) RETURNING 1", user, session_orgs))
            await self._audit(c, [audit.add(sessions_ended=ended)])
        return True

    # --- org policies (SPEC §18) -----------------------------------------------------------

    async def max_token_lifetime(self, org: str) -> int | None:
        row = await self._one("SELECT max_token_lifetime FROM authority.org_policies WHERE org = $1", org)
        return None if row is None else row[0]

    async def set_max_token_lifetime(self, org: str, seconds: int | None, audit: AuditRecord) -> None:
        async with self._tx() as c:
            await c.execute("INSERT INTO authority.org_policies (org, max_token_lifetime) VALUES ($1, $2)"
                            " ON CONFLICT (org) DO UPDATE SET max_token_lifetime = excluded.max_token_lifetime",
                            org, seconds)
            await self._audit(c, [audit])

    # --- webhooks (SPEC §18) ---------------------------------------------------------------

    async def create_webhook(self, row: WebhookRow, audit: AuditRecord) -> None:
        async with self._tx() as c:
            await c.execute("INSERT INTO authority.webhooks (id, org, url, events, sealed_secret, state, created_at)"
                            " VALUES ($1, $2, $3, $4, $5, $6, $7)", row.id, row.org, row.url,
                            json.dumps(list(row.events)), row.sealed_secret, row.state, row.created_at)
            await self._audit(c, [audit])

    async def webhooks(self, org: str | None = None) -> list[WebhookRow]:
        rows = await self._all(
            f"SELECT {_WEBHOOK_COLS}, (SELECT count(*) FROM authority.webhook_outbox o WHERE o.endpoint_id = w.id)"
            " FROM authority.webhooks w WHERE $1::text IS NULL OR w.org = $1 ORDER BY w.created_at, w.id", org)
        return [webhook_row(tuple(r)[:8], r[8]) for r in rows]

    async def webhook(self, webhook_id: str) -> WebhookRow | None:
        r = await self._one(f"SELECT {_WEBHOOK_COLS} FROM authority.webhooks w WHERE w.id = $1", webhook_id)
        return None if r is None else webhook_row(tuple(r))

    async def remove_webhook(self, webhook_id: str, audit: AuditRecord) -> bool:
        async with self._tx() as c:
            if await c.fetchval("DELETE FROM authority.webhooks WHERE id = $1 RETURNING 1", webhook_id) is None:
                return False
            await c.execute("DELETE FROM authority.webhook_outbox WHERE endpoint_id = $1", webhook_id)
            await self._audit(c, [audit])
        return True

    async def claim_deliveries(self, now: int, lease: int, limit: int) -> list[DeliveryRow]:
        async with self._tx() as c:
            rows = await c.fetch(_DELIVERIES + " LIMIT $3 FOR UPDATE OF o SKIP LOCKED", now, now, limit)
            await c.execute("UPDATE authority.webhook_outbox SET claimed_until = $1 WHERE seq = ANY($2::bigint[])",
                            now + lease, [r[0] for r in rows])
        return [delivery_row(tuple(r)) for r in rows]

    async def delivered(self, seq: int) -> None:
        async with self._tx() as c:
            await c.execute("DELETE FROM authority.webhook_outbox WHERE seq = $1", seq)

    async def delivery_failed(self, seq: int, now: int, due_at: int | None, audit: AuditRecord) -> None:
        async with self._tx() as c:
            if due_at is not None:
                await c.execute("UPDATE authority.webhook_outbox SET attempts = attempts + 1,"
                                " first_at = COALESCE(first_at, $1), due_at = $2, claimed_until = 0 WHERE seq = $3",
                                now, due_at, seq)
                return
            await c.execute("UPDATE authority.webhook_outbox SET attempts = attempts + 1, claimed_until = 0"
                            " WHERE seq = $1", seq)
            disabled = await c.fetchval(
                "UPDATE authority.webhooks SET state = 'disabled', disabled_at = $1 WHERE state = 'active' AND id ="
                " (SELECT endpoint_id FROM authority.webhook_outbox WHERE seq = $2) RETURNING 1", now, seq)
            if disabled is not None:
                await self._audit(c, [audit])

    async def outbox_depth(self) -> int:
        row = await self._one("SELECT count(*) FROM authority.webhook_outbox")
        return int(row[0]) if row else 0

    # --- leaks (SPEC §18) ------------------------------------------------------------------

    async def revoke_credential(self, key: str, expires_at: int, now: int, audit: AuditRecord) -> bool:
        async with self._tx() as c:
            await c.execute("DELETE FROM authority.revoked_credentials WHERE expires_at < $1", now)
            new = await c.fetchval("INSERT INTO authority.revoked_credentials (credential, expires_at) VALUES ($1, $2)"
                                   " ON CONFLICT DO NOTHING RETURNING 1", key, expires_at) is not None
            if new:
                await self._audit(c, [audit])
        return new

    async def credential_revoked(self, key: str) -> bool:
        return await self._one("SELECT 1 FROM authority.revoked_credentials WHERE credential = $1", key) is not None

    async def count_public_revocation(self, client: str, hour: int, limit: int) -> bool:
        async with self._tx() as c:
            await c.execute("DELETE FROM authority.public_revocation_counts WHERE hour < $1", hour)
            # One statement: concurrent requests on several replicas each see the others' counts.
            n = await c.fetchval(
                "INSERT INTO authority.public_revocation_counts AS p (client, hour, n) VALUES ($1, $2, 1)"
                " ON CONFLICT (client, hour) DO UPDATE SET n = p.n + 1 WHERE p.n < $3 RETURNING n",
                client, hour, limit)
        return n is not None

    async def queue_leak_report(self, credentials: bytes, client: str | None, now: int) -> None:
        async with self._tx() as c:
            await c.execute("INSERT INTO authority.leak_queue (credentials, client, received_at) VALUES ($1, $2, $3)",
                            credentials, client, now)

    async def claim_leak_reports(self, now: int, lease: int, limit: int) -> list[tuple[int, bytes, str | None]]:
        async with self._tx() as c:
            rows = await c.fetch(
                "UPDATE authority.leak_queue SET claimed_until = $2 WHERE seq IN (SELECT seq FROM authority.leak_queue"
                " WHERE claimed_until <= $1 ORDER BY seq LIMIT $3 FOR UPDATE SKIP LOCKED)"
                " RETURNING seq, credentials, client", now, now + lease, limit)
        return sorted((r[0], bytes(r[1]), r[2]) for r in rows)

    async def finish_leak_report(self, report_id: int) -> None:
        async with self._tx() as c:
            await c.execute("DELETE FROM authority.leak_queue WHERE seq = $1", report_id)

    async def leak_queue_depth(self) -> int:
        row = await self._one("SELECT count(*) FROM authority.leak_queue")
        return int(row[0]) if row else 0

    # --- introspect-only credentials -------------------------------------------------------

    async def add_introspector(self, digest: bytes, orgs: Sequence[str], now: int) -> None:
        async with self._tx() as c:
            await c.execute("INSERT INTO authority.introspectors (hash, orgs, created_at) VALUES ($1, $2, $3)"
                            " ON CONFLICT DO NOTHING", digest, json.dumps(sorted(orgs)), now)

    async def introspector(self, digest: bytes) -> tuple[str, ...] | None:
        row = await self._one("SELECT orgs FROM authority.introspectors WHERE hash = $1", digest)
        return None if row is None else tuple(json.loads(row[0]))

    async def list_introspectors(self) -> list[tuple[bytes, tuple[str, ...], int]]:
        rows = await self._all("SELECT hash, orgs, created_at FROM authority.introspectors ORDER BY created_at")
        return [(bytes(r[0]), tuple(json.loads(r[1])), r[2]) for r in rows]

    async def remove_introspector(self, digest: bytes) -> bool:
        async with self._tx() as c:
            return await c.fetchval("DELETE FROM authority.introspectors WHERE hash = $1 RETURNING 1",
                                    digest) is not None

    # --- orgs ----------------------------------------------------------------------------

    async def create_org(self, name: str, now: int, audit: AuditRecord) -> bool:
        async with self._tx() as c:
            done = await c.fetchval("INSERT INTO authority.orgs (name, created_at) VALUES ($1, $2)"
                                    " ON CONFLICT DO NOTHING RETURNING 1", name, now)
            if done:
                await self._audit(c, [audit])
            return bool(done)

    async def list_orgs(self) -> list[OrgRow]:
        return [OrgRow(r[0], r[1]) for r in await self._all("SELECT name, created_at FROM authority.orgs ORDER BY name")]

    async def org_exists(self, name: str) -> bool:
        return await self._one("SELECT 1 FROM authority.orgs WHERE name = $1", name) is not None

    # --- tokens ----------------------------------------------------------------------------

    async def insert_token(self, row: TokenRow, audit: AuditRecord, lineage: Iterable[bytes] = (),
                           once: tuple[str, int] | None = None) -> bool:
        outcome = await self._inserts((row, audit, list(lineage), once))
        if outcome == "used":
            raise DischargeUsed()
        return outcome == "ok"

    async def _insert_batch(self, items: list[tuple[TokenRow, AuditRecord, list[bytes], tuple[str, int] | None]],
                            ) -> list[str]:
        """insert_token() once per item, in one statement: one transaction, one commit."""
        order, args = _insert_args(items)
        started = time.perf_counter()
        rows = await self._write_all(_INSERT_BATCH, *args)  # one statement, committed as it ends
        if self.commit_observer is not None:
            self.commit_observer(time.perf_counter() - started)
        done = ["revoked"] * len(items)
        for i, r in zip(order, rows):
            done[i] = r[0]
        return done

    async def replace_token(self, row: TokenRow, audit: AuditRecord, old_id: str, now: int,
                            revoked: ListedIn) -> list[str] | None:
        async with self._tx() as c:  # revoke_batch takes the feed's lock first, as every revocation does
            got = await c.fetch(_REVOKE_BATCH, *_revoke_args([(old_id, None, now, revoked)], [revoked]))
            ids = list(got[0][1]) if got and got[0][1] is not None else None
            if not ids:
                return None  # revoked meanwhile: the transaction writes nothing
            _, args = _insert_args([(row, audit, [], None)])
            await c.fetch(_INSERT_BATCH, *args)
        revoked(ids)
        return ids

    async def insert_tokens(self, rows: Iterable[TokenRow]) -> None:
        rows = list(rows)
        async with self._tx() as c:
            await c.executemany("INSERT INTO authority.orgs (name, created_at) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                                sorted({(r.org, r.created_at) for r in rows}))
            await c.copy_records_to_table("tokens", schema_name="authority", records=[token_values(r) for r in rows],
                                          columns=list(TOKEN_COLUMNS))
            await _feed(c, [(r.id, "token", r.revoked_at, None) for r in rows if r.revoked_at is not None])

    async def load_token(self, token_id: str, max_fingerprints: int | None = None,
                         ) -> tuple[TokenRow, frozenset[bytes] | None] | None:
        async with self._conn() as c:
            row = await c.fetchrow(f"SELECT {_TOKEN_COLS} FROM authority.tokens WHERE id = $1", token_id)
            if row is None:
                return None
            limit = None if max_fingerprints is None else max_fingerprints + 1
            fps = await c.fetch("SELECT fingerprint FROM authority.revoked_attenuations WHERE token_id = $1 LIMIT $2",
                                token_id, limit)
        if max_fingerprints is not None and len(fps) > max_fingerprints:
            return token_row(row), None
        return token_row(row), frozenset(bytes(r[0]) for r in fps)

    async def attenuation_revoked(self, token_id: str, fingerprints: Iterable[bytes]) -> bool:
        async with self._conn() as c:
            return await c.fetchval("SELECT EXISTS (SELECT 1 FROM authority.revoked_attenuations"
                                    " WHERE token_id = $1 AND fingerprint = ANY($2::bytea[]))",
                                    token_id, list(fingerprints))

    async def user_token_ids(self, username: str) -> list[str]:
        rows = await self._all('SELECT id FROM authority.tokens WHERE ("user" = $1 OR created_by = $1) AND revoked_at IS NULL'
                               " ORDER BY created_at, id", username)
        return [r[0] for r in rows]

    async def list_tokens(self, org: str) -> list[TokenRow]:
        rows = await self._all(f"SELECT {_TOKEN_COLS} FROM authority.tokens WHERE org = $1 ORDER BY created_at, id", org)
        return [token_row(r) for r in rows]

    async def touch(self, used: dict[str, int]) -> None:
        if used:
            ids, times = zip(*sorted(used.items()), strict=True)
            async with self._tx() as c:
                # One statement that never waits for a row lock: a row a revocation, a strip or
                # another replica holds is skipped (last-used is approximate, and the next flush
                # takes it). Waiting here, in any order, could close a lock cycle with a
                # revocation's cascade: a deadlock that would fail the revocation.
                await c.execute(
                    "UPDATE authority.tokens t SET last_used_at = GREATEST(COALESCE(t.last_used_at, 0), u.at)"
                    " FROM unnest($1::text[], $2::bigint[]) AS u(id, at)"
                    " WHERE t.id = u.id AND t.id IN (SELECT id FROM authority.tokens WHERE id = ANY($1::text[])"
                    " FOR NO KEY UPDATE SKIP LOCKED)", list(ids), list(times))

    # --- revocation ------------------------------------------------------------------------

    async def revoke_token(self, token_id: str, now: int, audit: AuditFor[list[str]]) -> list[str] | None:
        return await self._revocations((token_id, None, now, audit))

    async def revoke_attenuation(self, token_id: str, fingerprint: bytes, now: int,
                                 audit: AuditFor[list[str]]) -> list[str] | None:
        return await self._revocations((token_id, fingerprint, now, audit))

    async def _revoke_batch(self, items: list[tuple[str, bytes | None, int, AuditFor[list[str]]]],
                            ) -> list[list[str] | None]:
        """Revocations that arrived together: one call of revoke_batch() (v4) for all of them,
        committed as it ends. Revocations wait for one lock, the feed's, held to commit (so
        feed order is commit order); grouping them, in one round trip, shares that wait and
        the commit among a batch (SPEC §9: revoke p99 under load). Each item's feed entries are
        as on SQLite: an attenuation's entry first, then its cascade. Audit rules given as data
        (`ListedIn`) are written by the statement; any other `AuditFor` after it, in the same
        transaction."""
        audits = [item[3] for item in items]
        listed = [a if isinstance(a, ListedIn) else None for a in audits]
        args = _revoke_args(items, listed)
        started = time.perf_counter()
        if all(a is not None for a in listed):
            rows = await self._write_all(_REVOKE_BATCH, *args)  # one statement: one round trip, one commit
        else:
            async with self._tx() as c:
                rows = list(await c.fetch(_REVOKE_BATCH, *args))
                done = {r[0] - 1: r[1] for r in rows}
                others = [audit(list(done[i])) for i, audit in enumerate(audits)
                          if listed[i] is None and done.get(i) is not None]
                await self._audit(c, [r for r in others if r is not None])
        if self.commit_observer is not None:
            self.commit_observer(time.perf_counter() - started)
        results: list[list[str] | None] = [None] * len(items)
        for r in rows:
            results[r[0] - 1] = list(r[1]) if r[1] is not None else None
        for a, ids in zip(listed, results, strict=True):
            if a is not None and ids is not None:
                a(ids)  # the record the domain emits (its log line) says what the row says
        return results

    async def revocations_after(self, after: int, limit: int) -> list[RevocationRow]:
        rows = await self._all(
            "SELECT seq, token_id, scope, at, fingerprint FROM authority.revocations WHERE seq > $1 ORDER BY seq LIMIT $2",
            after, limit,
        )
        return [RevocationRow(r[0], r[1], r[2], r[3], bytes(r[4]) if r[4] is not None else None) for r in rows]

    async def revocation_head(self) -> int:
        row = await self._one("SELECT COALESCE(MAX(seq), 0) FROM authority.revocations")
        return int(row[0])

    async def watch_feed(self, wake) -> None:
        await self.watch(FEED_CHANNEL, wake)

    # --- the console's browser state -----------------------------------------------------------

    async def create_console_session(self, digest: bytes, row: ConsoleSessionRow, now: int,
                                     audit: AuditRecord) -> None:
        async with self._tx() as c:
            await c.execute("DELETE FROM authority.console_sessions WHERE expires_at <= $1", now)
            await c.execute("INSERT INTO authority.console_sessions (hash, username, org, role, expires_at)"
                            " VALUES ($1, $2, $3, $4, $5)", digest, row.username, row.org, row.role, row.expires_at)
            await self._audit(c, [audit])

    async def console_session(self, digest: bytes, now: int) -> ConsoleSessionRow | None:
        row = await self._one("SELECT username, org, role, expires_at FROM authority.console_sessions"
                              " WHERE hash = $1 AND expires_at > $2", digest, now)
        return ConsoleSessionRow(row[0], row[1], row[2], row[3]) if row else None

    async def delete_console_session(self, digest: bytes) -> None:
        async with self._tx() as c:
            await c.execute("DELETE FROM authority.console_sessions WHERE hash = $1", digest)

    async def end_console_sessions(self, username: str, audit: AuditFor[int]) -> int:
        async with self._tx() as c:
            ended = int((await c.execute("DELETE FROM authority.console_sessions WHERE username = $1", username)).split()[-1])
            await self._audit_for(c, audit, ended)
        return ended

    async def add_signin(self, digest: bytes, sealed: bytes, expires_at: int, now: int) -> None:
        async with self._tx() as c:
            await c.execute("DELETE FROM authority.console_signins WHERE expires_at <= $1", now)
            await c.execute("INSERT INTO authority.console_signins (hash, sealed, expires_at) VALUES ($1, $2, $3)",
                            digest, sealed, expires_at)

    async def take_signin(self, digest: bytes, now: int) -> bytes | None:
        async with self._tx() as c:
            row = await c.fetchrow("DELETE FROM authority.console_signins WHERE hash = $1 RETURNING sealed, expires_at", digest)
        return bytes(row[0]) if row and row[1] > now else None
