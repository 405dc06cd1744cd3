"""The discharger's storage seam: users, memberships, sessions, browser sessions, pending
grants (device logins, interactive discharges), sealed keys and the login throttle behind one
Protocol. SQLite (`discharger.store.sqlite`) is the embedded default."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from server.audit import AuditRecord, AuditRow
from server.store import COMMON_SEALED, COMMON_TABLES, SealedColumn, ServiceStore, StoreError, open_backend

__all__ = ["AuditRow", "DischargerStore", "GrantRow", "Link", "OrgPolicy", "PasskeyRow", "PrincipalRow", "SessionRow",
           "StoreError", "TotpRow", "TrustPolicy", "UserRow", "open_store"]


@dataclass(frozen=True, slots=True)
class UserRow:
    username: str
    password_hash: bytes
    disabled: bool
    roles: dict[str, str]  # org -> "member" or "admin"
    idp: str | None = None  # the provider a user without a password was created for (SPEC §15)

    @property
    def orgs(self) -> frozenset[str]:
        return frozenset(self.roles)


@dataclass(frozen=True, slots=True)
class SessionRow:
    username: str
    expires_at: int
    auth_method: str  # how it was made: password, idp:NAME, ... (SPEC §15)


@dataclass(frozen=True, slots=True)
class Link:
    """An identity at a provider, `(issuer, sub)`, and the user it signs in as."""
    issuer: str
    sub: str
    provider: str  # the configured name it was made through


@dataclass(frozen=True, slots=True)
class TotpRow:
    sealed_seed: bytes  # sealed with the master key
    confirmed: bool
    last_step: int  # the newest time step used: it and older ones are refused


@dataclass(frozen=True, slots=True)
class PasskeyRow:
    credential_id: bytes
    username: str
    public_key: bytes  # COSE
    sign_count: int


@dataclass(frozen=True, slots=True)
class OrgPolicy:
    """What a discharge of an org's ticket needs of the session behind it (SPEC §15)."""
    org: str
    require_idp: str | None = None
    require_mfa: bool = False


@dataclass(frozen=True, slots=True)
class TrustPolicy:
    """Which ID tokens speak for a service principal (SPEC §16): the issuer, the audience
    (None: the discharger's public URL), the claims that must match, and how old a token may be."""
    id: str
    issuer: str
    audience: str | None
    claims: dict[str, str]
    max_age: int  # seconds since the token's iat


@dataclass(frozen=True, slots=True)
class PrincipalRow:
    """A service principal (`ci:NAME`): a non-human member of one org, with no password and no
    session; ID tokens matching one of its trust policies discharge tickets sealed for it."""
    name: str
    org: str
    role: str
    disabled: bool
    created_at: int
    policies: tuple[TrustPolicy, ...] = ()


@dataclass(slots=True)
class GrantRow:
    """Something a browser must approve: a device login (`kind` "device", `lookup` the user
    code) or an interactive discharge ("flow", `lookup` the poll secret's digest). `hash` is
    the digest of the secret that names it; secrets themselves are never stored."""
    hash: bytes
    kind: str
    lookup: str
    data: dict  # what the approval page shows and the grant needs (JSON in the database)
    status: str  # pending, approved, denied, used
    created_at: int
    expires_at: int
    username: str | None = None
    interval: int = 0
    polled_at: float | None = None
    code_hash: bytes | None = None  # a flow's one-time release code, hashed
    code_expires_at: int | None = None


# Every table and column, parents before children: what `sable db copy` moves.
TABLES: tuple[tuple[str, tuple[str, ...]], ...] = (
    *COMMON_TABLES,
    ("users", ("username", "password_hash", "disabled", "created_at", "idp")),
    ("memberships", ("username", "org", "role")),
    ("sessions", ("hash", "username", "expires_at", "auth_method")),
    ("keys", ("kid", "sealed", "position", "created_at")),  # copied sealed: no master key needed
    ("login_failures", ("subject", "at")),
    ("browser_sessions", ("hash", "username", "expires_at", "auth_method")),
    ("identity_links", ("issuer", "sub", "username", "provider", "created_at")),
    ("used_states", ("hash", "expires_at")),
    ("totp", ("username", "sealed_seed", "confirmed", "last_step", "created_at")),
    ("recovery_codes", ("username", "hash", "used_at")),
    ("org_policies", ("org", "require_idp", "require_mfa")),
    ("passkeys", ("credential_id", "username", "public_key", "sign_count", "created_at")),
    ("principals", ("name", "org", "role", "disabled", "created_at")),
    ("trust_policies", ("id", "principal", "issuer", "audience", "claims", "max_age", "created_at")),
    ("used_id_tokens", ("issuer", "jti", "expires_at")),
    ("leaked_secrets", ("hash", "kind", "reported_at")),
    ("event_outbox", ("seq", "id", "type", "subject", "orgs", "at", "due_at", "attempts", "claimed_until")),
    ("grants", ("hash", "kind", "lookup", "data", "status", "username", "created_at", "expires_at", "interval",
                "polled_at", "code_hash", "code_expires_at")),
)

# What the master key seals (`sable admin rotate-master-key` re-seals these).
SEALED: tuple[SealedColumn, ...] = (*COMMON_SEALED, SealedColumn("keys", "kid", "sealed"),
                                    SealedColumn("totp", "username", "sealed_seed"))


class DischargerStore(ServiceStore, Protocol):
    """What every backend keeps true, whatever its SQL (each held by a contract test that runs
    on SQLite and on PostgreSQL, in `tests/discharger/test_store.py` unless named):

    1. Atomic with its audit row: a write given an `AuditRecord` stores it in its own
       transaction, and only if it changed something (`test_duplicate_user_is_refused_*`,
       `test_set_orgs_of_unknown_user_is_false`, `test_disable_user`).
    2. A password change ends every session of the user, API and browser, in the same
       transaction (`test_a_password_change_ends_every_session_of_the_user`).
    3. Once: `update_grant` changes a grant only from the status the caller read, so of
       concurrent approvals or releases one wins (`test_a_grant_changes_state_once`); a
       lookup (a user code) names one grant (`test_a_lookup_names_one_grant`).
    4. Keys: replicas starting together make one first key set; the last key is never
       retired; `list_keys` is newest first
       (`test_the_first_keys_are_made_once_and_the_last_is_never_retired`).
    5. The login throttle checks and counts in one step, so parallel attempts through any
       number of replicas never pass the limit (`test_the_throttle_counts_no_attempt_past_its_limit`,
       `tests/discharger/test_throttle.py`).
    6. Sessions are found only before their expiry; making one drops the expired
       (`test_session_lookup_until_expiry`, `test_new_session_purges_expired_ones`).
    7. An identity `(issuer, sub)` is linked to one user at most, a user to one identity per
       issuer, and a sign-in's `state`
       is claimed once, across replicas (`test_an_identity_links_one_user_once`,
       `test_a_state_is_claimed_once`); a user made at first sign-in is made with its link.
    8. A TOTP time step and a recovery code are each used once, across replicas
       (`test_a_totp_step_and_a_recovery_code_are_used_once`); a passkey's signature counter
       only grows (`test_a_passkeys_counter_must_grow_unless_it_keeps_none`).
    """

    # `roles` maps each org of the user to "member" or "admin". A user made for a provider has
    # no password (`password_hash` empty) and `idp`; one made at first sign-in (`auto`) comes
    # with its `link`, in the same transaction.
    async def create_user(self, username: str, password_hash: bytes, roles: dict[str, str], now: int,
                          audit: AuditRecord, idp: str | None = None, link: Link | None = None) -> bool: ...
    async def get_user(self, username: str) -> UserRow | None: ...
    async def set_orgs(self, username: str, roles: dict[str, str], audit: AuditRecord) -> bool: ...
    async def change_orgs(self, username: str, changes: dict[str, str | None], audit: AuditRecord) -> bool:
        """Set the role in each named org (None: leave it) and nothing else, in one transaction:
        a provider's group rules touch only their orgs, and a concurrent admin change of another
        org stays. False if the user is unknown or nothing changed (then no audit row)."""
        ...
    async def disable_user(self, username: str, audit: AuditRecord, disabled: bool = True) -> bool: ...
    async def list_users(self) -> list[UserRow]: ...
    async def set_password(self, username: str, password_hash: bytes, audit: AuditRecord) -> bool:
        """Replace the password and end the user's sessions (API and browser)."""
        ...

    async def create_session(self, digest: bytes, username: str, expires_at: int, now: int,
                             audit: AuditRecord, auth_method: str = "password") -> None: ...
    async def session_user(self, digest: bytes, now: int) -> str | None: ...
    async def session(self, digest: bytes, now: int) -> SessionRow | None: ...
    async def delete_session(self, digest: bytes) -> bool: ...

    # Secrets reported leaked (SPEC §18), by digest: sessions ended and admin credentials
    # disabled that way, so a repeated report gets the same label and a leaked
    # SABLE_ADMIN_TOKEN is never added again.
    # Events for the authorities (SPEC §18): user.disabled, user.removed_from_org and
    # principal.disabled, queued by triggers in the transaction of the change.
    async def claim_events(self, now: int, lease: int, limit: int) -> list[tuple[int, str, str, str, str, int, int]]:
        """Due events nobody holds, held for `lease` s: (seq, id, type, subject, orgs as JSON,
        at, attempts so far). The id is random, so it never repeats after a copy or restore."""
        ...
    async def event_sent(self, seq: int) -> None: ...
    async def event_failed(self, seq: int, due_at: int) -> None: ...
    async def events_pending(self) -> int: ...

    async def record_leaked(self, digest: bytes, kind: str, now: int, audit: AuditRecord) -> bool:
        """Whether it was new (the audit row is stored only then)."""
        ...
    async def leaked(self, digest: bytes) -> bool: ...

    # Browser sessions (the `sable_browser` cookie), stored as digests like API sessions.
    async def create_browser_session(self, digest: bytes, username: str, expires_at: int, now: int,
                                     audit: AuditRecord, auth_method: str = "password") -> None: ...
    async def browser_session(self, digest: bytes, now: int) -> SessionRow | None: ...
    async def delete_browser_session(self, digest: bytes) -> bool: ...

    # Identities at OpenID providers (SPEC §15): a user is found only through its link.
    async def link_identity(self, username: str, link: Link, now: int, audit: AuditRecord) -> bool:
        """False if the user is unknown, that identity is linked already (to anyone), or the
        user has an identity at that issuer already."""
        ...
    async def linked_user(self, issuer: str, sub: str) -> str | None: ...
    async def links(self, username: str) -> list[Link]: ...
    async def claim_state(self, digest: bytes, expires_at: int, now: int) -> bool:
        """Record a sign-in's `state` as used: False if it was already (each is taken once)."""
        ...

    # Second factors (SPEC §15). An enrolment is unconfirmed until one code confirms it, which
    # also stores the recovery codes' digests; a time step or a recovery code is used once.
    async def begin_totp(self, username: str, sealed_seed: bytes, now: int) -> bool:
        """Start (or restart) an unconfirmed enrolment; False if one is confirmed already."""
        ...
    async def totp(self, username: str) -> TotpRow | None: ...
    async def confirm_totp(self, username: str, step: int, recovery: list[bytes], audit: AuditRecord,
                           sealed_seed: bytes) -> bool:
        """Confirm the enrolment whose seed is `sealed_seed` (the one the code was checked
        against: a set-up restarted meanwhile is not confirmed by an older seed's code)."""
        ...
    async def use_totp_step(self, username: str, step: int) -> bool:
        """Mark a confirmed enrolment's time step used: False if it (or a later one) was."""
        ...
    async def use_recovery_code(self, username: str, digest: bytes, now: int) -> bool: ...
    async def recovery_left(self, username: str) -> int: ...
    async def remove_factors(self, username: str, audit: AuditRecord) -> bool:
        """Remove every second factor of the user (app, recovery codes, passkeys); False if none."""
        ...
    async def add_passkey(self, row: PasskeyRow, now: int, audit: AuditRecord) -> bool: ...
    async def passkey(self, credential_id: bytes) -> PasskeyRow | None: ...
    async def passkeys_of(self, username: str) -> list[PasskeyRow]: ...
    async def use_passkey(self, credential_id: bytes, sign_count: int) -> bool:
        """Record an assertion's counter: False if it did not grow (a cloned authenticator),
        unless the authenticator keeps none (both 0)."""
        ...

    # Org policies (SPEC §15): what the sessions behind an org's discharges must be.
    async def org_policy(self, org: str) -> OrgPolicy: ...
    async def set_org_policy(self, policy: OrgPolicy, audit: AuditRecord) -> None: ...

    # Service principals and their trust policies (SPEC §16).
    async def create_principal(self, row: PrincipalRow, audit: AuditRecord) -> bool: ...  # False: name taken
    async def principal(self, name: str) -> PrincipalRow | None: ...
    async def list_principals(self, org: str | None = None) -> list[PrincipalRow]: ...
    async def set_principal_disabled(self, name: str, disabled: bool, audit: AuditRecord) -> bool: ...
    async def remove_principal(self, name: str, audit: AuditRecord) -> bool: ...
    async def add_trust_policy(self, name: str, policy: TrustPolicy, now: int, audit: AuditRecord) -> bool:
        """False if there is no such principal."""
        ...
    async def remove_trust_policy(self, name: str, policy_id: str, audit: AuditRecord) -> bool: ...
    async def claim_id_token(self, issuer: str, jti: str, expires_at: int, now: int) -> bool:
        """Record an ID token as used: False if it was already (each is used once)."""
        ...

    # Pending grants. `update_grant` writes the row's mutable fields (all but its hash, kind,
    # lookup and times) only if its status is
    # still `expected` (so a grant is approved, or released, once); `add_grant` also drops
    # grants that expired over an hour ago.
    async def add_grant(self, row: GrantRow, now: int) -> bool: ...  # False: lookup taken
    async def get_grant(self, kind: str, *, digest: bytes | None = None, lookup: str | None = None) -> GrantRow | None: ...
    async def update_grant(self, row: GrantRow, expected: str, audit: AuditRecord | None = None) -> bool: ...

    # X25519 keys, sealed with the master key; newest (the one tickets are sealed to) first.
    async def list_keys(self) -> list[tuple[str, bytes]]: ...
    async def add_keys_if_none(self, rows: list[tuple[str, bytes]], now: int, audit: AuditRecord) -> bool: ...
    async def add_key(self, kid: str, sealed: bytes, now: int, audit: AuditRecord) -> None: ...
    async def retire_key(self, kid: str, audit: AuditRecord) -> str: ...  # "ok", "unknown" or "last"

    # The login throttle, shared by replicas: count an attempt against each (subject, limit)
    # unless one is already at its limit, in which case return the seconds to wait.
    async def login_attempt(self, limits: list[tuple[str, int]], now: float, window: float) -> float | None: ...
    async def clear_login_failures(self, subject: str) -> None: ...
    async def prune_login_failures(self, before: float) -> None: ...
    # Un-count the attempt `login_attempt` recorded at `at` (it succeeded).
    async def forget_attempt(self, subjects: list[str], at: float) -> None: ...


async def open_store(location: str, migrate: bool = True, role: str = "service", pooler: bool = False,
                     listen_url: str | None = None) -> DischargerStore:
    """The store at `location` (a `postgresql://` URL, else a SQLite file): see `open_backend`."""
    def sqlite() -> Any:
        from discharger.store.sqlite import SqliteStore
        return SqliteStore

    def postgres() -> Any:
        from discharger.store.postgres import PostgresStore
        return PostgresStore

    return await open_backend(location, sqlite, postgres, migrate, role, pooler, listen_url)
