"""The authority's storage seam: what it keeps, as typed rows, behind one Protocol.

Domain code depends on `AuthorityStore` only. `open_store` picks the implementation from a
database location; SQLite (`authority.store.sqlite`) is the embedded default.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from server.audit import AuditFor, AuditRecord, AuditRow, ListedIn
from server.store import COMMON_SEALED, COMMON_TABLES, SealedColumn, ServiceStore, StoreError, open_backend

__all__ = ["TOKEN_COLUMNS", "AuditRow", "AuthorityStore", "ConsoleSessionRow", "DischargeUsed", "OrgRow", "RevocationRow",
           "StoreError", "TokenRow", "open_store", "token_row", "token_values"]


class DischargeUsed(Exception):
    """`insert_token` refused a strip whose discharge already stripped this single-use token."""


@dataclass(frozen=True, slots=True)
class OrgRow:
    name: str
    created_at: int


@dataclass(slots=True)
class TokenRow:
    id: str
    kind: str  # "permission" or "service" (user tokens are never stored)
    name: str | None
    org: str
    parent: str | None
    user: str | None
    caveat_count: int
    sealed_key: bytes
    created_at: int
    revoked_at: int | None = None
    last_used_at: int | None = None
    created_by: str | None = None  # a username, or "@admin" for the admin credential (v3)
    caveats: list[str] | None = None  # the first-party caveats as text (v3; None before)
    expires_at: int | None = None  # from its expires caveat (v3)
    principal: str | None = None  # a permission token sealed for a service principal (v5, SPEC §16)
    strip_once: bool = False  # one strip per discharge (v5)


@dataclass(frozen=True, slots=True)
class WebhookRow:
    id: str
    org: str
    url: str
    events: tuple[str, ...]
    sealed_secret: bytes
    state: str  # "active" or "disabled" (after 3 days of failed deliveries)
    created_at: int
    disabled_at: int | None = None
    pending: int = 0  # outbox rows waiting for it


@dataclass(frozen=True, slots=True)
class DeliveryRow:
    """One event for one endpoint, with what its body is made of (the audit row and, for a
    token event, the token's row)."""
    seq: int
    endpoint: WebhookRow
    type: str
    attempts: int
    first_at: int | None
    audit_seq: int
    at: float
    token_id: str | None
    org: str | None
    detail: dict | None
    token: TokenRow | None


@dataclass(frozen=True, slots=True)
class ConsoleSessionRow:
    username: str
    org: str
    role: str
    expires_at: int


@dataclass(frozen=True, slots=True)
class RevocationRow:
    """One feed entry. For scope "attenuation", `fingerprint` names the revoked attenuation."""

    seq: int
    token_id: str
    scope: str  # "token" or "attenuation"
    at: int
    fingerprint: bytes | None = None


# A token row's columns, in `TokenRow`'s field order: the one list both backends read and write.
TOKEN_COLUMNS = ("id", "kind", "name", "org", "parent", "user", "caveat_count", "sealed_key", "created_at",
                 "revoked_at", "last_used_at", "created_by", "caveats", "expires_at", "principal", "strip_once")


def token_values(row: TokenRow) -> tuple:
    """A row's values in `TOKEN_COLUMNS` order, as stored (the caveats as JSON text)."""
    values = [getattr(row, c) for c in TOKEN_COLUMNS]
    values[TOKEN_COLUMNS.index("strip_once")] = int(row.strip_once)  # INTEGER on both backends
    if row.caveats is not None:
        values[TOKEN_COLUMNS.index("caveats")] = json.dumps(row.caveats)
    return tuple(values)


def token_row(values: Sequence[Any]) -> TokenRow:
    """The row read back from values in `TOKEN_COLUMNS` order."""
    row = TokenRow(*values)
    row.sealed_key = bytes(row.sealed_key)
    row.strip_once = bool(row.strip_once)
    if row.caveats is not None:
        row.caveats = json.loads(row.caveats)  # type: ignore[arg-type]  # stored as JSON text
    return row


def webhook_row(r, pending: int = 0) -> WebhookRow:
    """From (id, org, url, events, sealed_secret, state, created_at, disabled_at)."""
    return WebhookRow(r[0], r[1], r[2], tuple(json.loads(r[3])), bytes(r[4]), r[5], r[6], r[7], int(pending))


def delivery_row(r) -> DeliveryRow:
    """From the outbox query's columns: the outbox row's five, the endpoint's eight, the audit
    row's four, then the token's (NULL when the event names no stored token)."""
    token = token_row(list(r[17:])) if r[17] is not None else None
    return DeliveryRow(r[0], webhook_row(r[5:13]), r[1], r[2], r[3], r[4], r[13], r[14], r[15],
                       json.loads(r[16]) if r[16] else None, token)


RECEIVED_FOR = 30 * 86400  # seconds a discharger event's id is remembered (its retries end long before)

# Every table and column, parents before children: what `sable db copy` moves.
TABLES: tuple[tuple[str, tuple[str, ...]], ...] = (
    *COMMON_TABLES,
    ("orgs", ("name", "created_at")),
    ("org_policies", ("org", "max_token_lifetime")),
    ("received_events", ("id", "received_at")),
    ("tokens", TOKEN_COLUMNS),
    ("revoked_attenuations", ("fingerprint", "token_id", "revoked_at")),
    ("strip_lineage", ("fingerprint", "service_id")),
    ("revocations", ("seq", "token_id", "scope", "at", "fingerprint")),
    ("console_sessions", ("hash", "username", "org", "role", "expires_at")),
    ("console_signins", ("hash", "sealed", "expires_at")),
    ("used_discharges", ("token_id", "discharge_id", "expires_at")),
    ("introspectors", ("hash", "orgs", "created_at")),
    ("revoked_credentials", ("credential", "expires_at")),
    ("leak_queue", ("seq", "credentials", "client", "received_at", "claimed_until")),
    ("public_revocation_counts", ("client", "hour", "n")),
    ("webhooks", ("id", "org", "url", "events", "sealed_secret", "state", "created_at", "disabled_at")),
    ("webhook_outbox", ("seq", "endpoint_id", "audit_seq", "type", "due_at", "attempts", "first_at", "claimed_until")),
)

# What the master key seals (`sable admin rotate-master-key` re-seals these). A token's key or
# a sign-in that no longer opens was unusable already, so it is reported and left, not fatal.
SEALED: tuple[SealedColumn, ...] = (
    *COMMON_SEALED,
    SealedColumn("meta", "k", "v", "k = 'user_token_key'"),
    SealedColumn("tokens", "id", "sealed_key", required=False),
    SealedColumn("console_signins", "hash", "sealed", required=False),
    SealedColumn("leak_queue", "seq", "credentials", required=False),
    SealedColumn("webhooks", "id", "sealed_secret", required=False),
)


class AuthorityStore(ServiceStore, Protocol):
    """What every backend keeps true, whatever its SQL (each held by a contract test that runs
    on SQLite and on PostgreSQL, in `tests/authority/test_store.py` unless named):

    1. Lineage on insert: a service token goes in only while its parent is unrevoked and no
       attenuation it was stripped from is revoked, checked at commit; else `insert_token`
       is False (`test_child_of_*`; a strip racing a revocation, both orders:
       `tests/integration/test_strip_race.py`).
    2. Cascade: revoking a token revokes every descendant not yet revoked, in the same
       transaction, and returns only those newly revoked (`test_revoke_token_*`); revoking an
       attenuation revokes the service tokens stripped from it or a further attenuation of it
       (`test_revoke_attenuation_revokes_tokens_stripped_from_it`).
    3. Feed order: every revocation, cascaded ones included, gets a feed entry in the same
       transaction; entries are numbered in commit order (an attenuation's entry before its
       cascade's), `revocations_after` is exclusive and limited, and a reader following the
       cursor never passes an entry that commits later, even with writers on several
       replicas (`test_revocation_feed_is_ordered_exclusive_and_limited`,
       `tests/authority/test_strip_once.py`).
    4. Atomic with its audit row: a mint or strip, a revocation, a console session made or
       ended; nothing is half done after a crash (`tests/integration/test_crash.py`,
       `tests/integration/test_pg_crash.py`). The domain decides what the row says: a write
       given an `AuditRecord` stores it only if it changed something; one given an
       `AuditFor` stores what that function makes of the change (None: no row), so the
       store never composes an audit itself (`test_revoke_token_returns_only_newly_revoked`;
       the domain's rules: `tests/authority/test_revocation.py`).
    5. One use: `take_signin` hands a sign-in out once (`test_a_sign_in_is_taken_once`); a
       single-use token's discharge strips once, across replicas, until the discharge
       expires (`test_a_discharge_strips_a_single_use_token_once`,
       `tests/authority/test_strip_once.py`).
    6. The last-used flush (`touch`) is approximate and never waits for a row another
       transaction holds, so it cannot close a lock cycle with a revocation
       (`tests/authority/test_store_postgres.py`).
    """

    async def ensure_meta(self, key: str, value: bytes) -> bytes: ...

    # orgs
    async def create_org(self, name: str, now: int, audit: AuditRecord) -> bool: ...
    async def list_orgs(self) -> list[OrgRow]: ...
    async def org_exists(self, name: str) -> bool: ...

    # tokens
    async def insert_token(self, row: TokenRow, audit: AuditRecord, lineage: Iterable[bytes] = (),
                           once: tuple[str, int] | None = None) -> bool:
        """Insert a token. A child (service token) goes in only while its parent is unrevoked
        and no attenuation it was stripped from (`lineage`, signature fingerprints) is revoked;
        revoking one of those later revokes the child too. False if refused. `once` =
        (discharge id, its expiry) records that discharge as used for the parent in the same
        transaction; DischargeUsed if it was already (and nothing is written)."""
        ...

    async def replace_token(self, row: TokenRow, audit: AuditRecord, old_id: str, now: int,
                            revoked: ListedIn) -> list[str] | None:
        """Regenerate (SPEC §18): revoke `old_id` with its cascade and insert `row`, in one
        transaction; the ids revoked, or None (and nothing written) if `old_id` was revoked
        already or is unknown."""
        ...
    async def insert_tokens(self, rows: Iterable[TokenRow]) -> None:
        """Bulk load (fixtures, imports): rows as given; revoked ones enter the feed too."""
        ...

    async def load_token(self, token_id: str, max_fingerprints: int | None = None,
                         ) -> tuple[TokenRow, frozenset[bytes] | None] | None:
        """A token row and the fingerprints of its revoked attenuations: None in their place
        when there are more than `max_fingerprints` (ask `attenuation_revoked` instead)."""
        ...

    async def attenuation_revoked(self, token_id: str, fingerprints: Iterable[bytes]) -> bool:
        """Whether any of these signature fingerprints is a revoked attenuation of the token."""
        ...

    async def list_tokens(self, org: str) -> list[TokenRow]: ...
    async def user_token_ids(self, username: str) -> list[str]:
        """Ids of the unrevoked tokens whose `user` or `created_by` is this user (offboarding)."""
        ...
    async def touch(self, used: dict[str, int]) -> None: ...

    # revocation and the feed
    async def revoke_token(self, token_id: str, now: int, audit: AuditFor[list[str]]) -> list[str] | None:
        """Revoke a token and every descendant not yet revoked: their ids (given to `audit`).
        None if unknown."""
        ...

    async def revoke_attenuation(self, token_id: str, fingerprint: bytes, now: int,
                                 audit: AuditFor[list[str]]) -> list[str] | None:
        """Revoke one attenuation and every service token stripped from it or a further
        attenuation of it. None if it was revoked already; else the service tokens' ids
        (given to `audit`)."""
        ...

    async def revocations_after(self, after: int, limit: int) -> list[RevocationRow]: ...
    async def revocation_head(self) -> int: ...

    # introspect-only credentials (SPEC §17), by digest: the orgs each may see (empty: all)
    async def add_introspector(self, digest: bytes, orgs: Sequence[str], now: int) -> None: ...
    async def introspector(self, digest: bytes) -> tuple[str, ...] | None:
        """The orgs an introspect-only credential may see (() for all); None if unknown."""
        ...
    async def list_introspectors(self) -> list[tuple[bytes, tuple[str, ...], int]]: ...
    async def remove_introspector(self, digest: bytes) -> bool: ...

    # leaks (SPEC §18): credentials revoked by key (`ut:` a user token's id, until it expires;
    # `adm:` an admin credential's digest, for good), the public revocation queue and its
    # hourly count per address
    async def revoke_credential(self, key: str, expires_at: int, now: int, audit: AuditRecord) -> bool:
        """List a credential as revoked until `expires_at` (and forget listed ones past
        theirs); whether it was new (the audit row is stored only then)."""
        ...
    async def credential_revoked(self, key: str) -> bool: ...
    async def count_public_revocation(self, client: str, hour: int, limit: int) -> bool:
        """Count one request from `client` in this hour, across every process; whether it is
        within `limit` (a refused one is not counted)."""
        ...
    async def queue_leak_report(self, credentials: bytes, client: str | None, now: int) -> None: ...
    async def claim_leak_reports(self, now: int, lease: int, limit: int) -> list[tuple[int, bytes, str | None]]:
        """Up to `limit` queued reports (id, credentials, client) nobody else holds, held for
        `lease` seconds: a process that dies leaves them to another after that."""
        ...
    async def finish_leak_report(self, report_id: int) -> None: ...
    async def leak_queue_depth(self) -> int: ...

    # the discharger's events (SPEC §18), each taken once by id
    async def record_discharger_event(self, event_id: str, user: str, session_orgs: list[str] | None, now: int,
                                      audit: AuditRecord) -> bool:
        """Record an event not seen before, with `audit` (which the webhook trigger fans out),
        and end the user's console sessions in `session_orgs` (None: all of them), in one
        transaction; False if its id was seen already."""
        ...

    # an org's lifetime policy (SPEC §18): the longest a new token of it may live (None: no limit)
    async def max_token_lifetime(self, org: str) -> int | None: ...
    async def set_max_token_lifetime(self, org: str, seconds: int | None, audit: AuditRecord) -> None: ...

    # webhooks (SPEC §18): endpoints, and the outbox the audit trigger fills (schema v8)
    async def create_webhook(self, row: WebhookRow, audit: AuditRecord) -> None: ...
    async def webhooks(self, org: str | None = None) -> list[WebhookRow]:
        """Endpoints (of one org, or all), with their pending counts."""
        ...
    async def webhook(self, webhook_id: str) -> WebhookRow | None: ...
    async def remove_webhook(self, webhook_id: str, audit: AuditRecord) -> bool:
        """Remove an endpoint and everything still queued for it."""
        ...
    async def claim_deliveries(self, now: int, lease: int, limit: int) -> list[DeliveryRow]:
        """Due outbox rows of active endpoints that no process holds, held for `lease` s."""
        ...
    async def delivered(self, seq: int) -> None: ...
    async def delivery_failed(self, seq: int, now: int, due_at: int | None, audit: AuditRecord) -> None:
        """Try again at `due_at`; None: give up, and disable the endpoint (audited)."""
        ...
    async def outbox_depth(self) -> int: ...

    # the console's browser state: sessions and sign-ins in flight, keyed by secret digests
    async def create_console_session(self, digest: bytes, row: ConsoleSessionRow, now: int,
                                     audit: AuditRecord) -> None: ...
    async def console_session(self, digest: bytes, now: int) -> ConsoleSessionRow | None: ...
    async def delete_console_session(self, digest: bytes) -> None: ...
    async def end_console_sessions(self, username: str, audit: AuditFor[int]) -> int:
        """End every console session of this user (offboarding): how many there were (given
        to `audit`)."""
        ...
    async def add_signin(self, digest: bytes, sealed: bytes, expires_at: int, now: int) -> None: ...
    async def take_signin(self, digest: bytes, now: int) -> bytes | None:
        """The sealed sign-in state, deleted as it is read (each sign-in completes once)."""
        ...

    async def watch_feed(self, wake: Callable[[], None]) -> None:
        """Call `wake()` when another process may have added feed entries (and after every
        reconnect). A no-op where every process polls instead (SQLite)."""
        ...

    def listening(self) -> bool:
        """Whether `watch_feed`'s wake-ups arrive now (a live LISTEN connection): then this
        process's own revocations wake its feed through them too."""
        ...


async def open_store(location: str, migrate: bool = True, role: str = "service", pooler: bool = False,
                     listen_url: str | None = None) -> AuthorityStore:
    """The store at `location` (a `postgresql://` URL, else a SQLite file): see `open_backend`."""
    def sqlite() -> Any:
        from authority.store.sqlite import SqliteStore
        return SqliteStore

    def postgres() -> Any:
        from authority.store.postgres import PostgresStore
        return PostgresStore

    return await open_backend(location, sqlite, postgres, migrate, role, pooler, listen_url)
