"""What every service's store has, whatever the backend: the schema and health calls, admin
credentials, the audit trail, and the tables behind them (for `sable db copy`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from clients.errors import Unavailable
from server.audit import AuditRecord, AuditRow

RESEAL_PAGE = 2000  # rows per read and update in a master-key rotation
POSTGRES_SCHEMES = ("postgresql://", "postgres://")  # a location that starts so is PostgreSQL's


class StoreError(Unavailable):
    """The database is unusable (unreadable file, wrong schema version, wrong master key).
    `message` is what a client is told; `detail` (which database, what the driver said, its
    password redacted) is for operators: logs and the operator CLI, which prints `str()`."""

    def __init__(self, message: str, *, retry_after: int | None = None, detail: str | None = None):
        super().__init__(message, retry_after=retry_after)
        self.detail = detail

    def __str__(self) -> str:
        return f"{self.message} ({self.detail})" if self.detail else self.message


async def open_backend(location: str, sqlite: Callable[[], Any], postgres: Callable[[], Any], migrate: bool = True,
                       role: str = "service", pooler: bool = False, listen_url: str | None = None) -> Any:
    """A service's store at `location`: a `postgresql://` URL opens `postgres()`'s class, else a
    SQLite file path `sqlite()`'s (each imported only when chosen). The schema is brought to
    this build's version unless `migrate` is False (then only checked). `role` is "tool" for
    `sable db` commands, so they can tell themselves from running services. `pooler` and
    `listen_url` are PostgreSQL's (see `server.postgres.PgDatabase.open`)."""
    if location.startswith(POSTGRES_SCHEMES):
        return await postgres().open(location, migrate=migrate, role=role, pooler=pooler, listen_url=listen_url)
    return await sqlite().open(location, migrate=migrate)

# The tables every service has, with their columns, before the service's own.
COMMON_TABLES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("meta", ("k", "v")),
    ("admins", ("hash", "created_at")),
    ("audit", ("seq", "at", "event", "outcome", "request_id", "client", "token_id", "parent", "org", "user", "detail")),
)


@dataclass(frozen=True)
class SealedColumn:
    """Values sealed with the service's master key, which a master-key rotation re-seals.
    `key` is the table's primary key (rows are read in pages by it); `where`, a fixed SQL
    condition picking the rows (meta holds sealed values among plain ones); `required`, whether
    a value that will not open stops the rotation (else it is left as it is and reported)."""

    table: str
    key: str
    column: str
    where: str = ""
    required: bool = True


# The master key's check value is sealed like any other value, so rotating re-seals it too.
COMMON_SEALED: tuple[SealedColumn, ...] = (SealedColumn("meta", "k", "v", "k = 'master_key_check'"),)

@dataclass(frozen=True)
class Resealed:
    counts: dict[str, int]  # table -> values sealed anew
    left: dict[str, list[str]]  # table -> keys of the values left as they were


# (column, sealed value) -> the value sealed anew, or None to leave it as it is
Reseal = Callable[[SealedColumn, bytes], "bytes | None"]
Progress = Callable[[str, int, int], None]  # (table, values done, values in all)


class Resealing:
    """The bookkeeping both backends share in `reseal`, around their own SQL: for each page of
    (handle, key, value) rows, which values `fn` seals anew, which it leaves (named by key),
    the counts, the progress calls and the audit detail."""

    def __init__(self, fn: Reseal, progress: Progress | None):
        self._fn = fn
        self._progress = progress
        self.counts: dict[str, int] = {}
        self.left: dict[str, list[str]] = {}

    def column(self, col: SealedColumn, total: int) -> None:
        self._col, self._total, self._done = col, total, 0

    def page(self, rows: list) -> list[tuple[bytes, object]]:
        """(new value, handle) for each row `fn` sealed anew; the handle says which row to update."""
        col, updates = self._col, []
        for handle, key, value in rows:
            new = self._fn(col, bytes(value))
            if new is None:
                self.left.setdefault(col.table, []).append(
                    bytes(key).hex() if isinstance(key, bytes | memoryview) else str(key))
            else:
                updates.append((new, handle))
        self.counts[col.table] = self.counts.get(col.table, 0) + len(updates)
        self._done += len(rows)
        if self._progress:
            self._progress(col.table, self._done, self._total)
        return updates

    def finish(self, audit: AuditRecord) -> Resealed:
        audit.detail = {**(audit.detail or {}), "resealed": self.counts,
                        "left": {t: len(k) for t, k in self.left.items()}}
        return Resealed(self.counts, self.left)


class ServiceStore(Protocol):
    path: str

    async def close(self) -> None: ...

    # schema and health
    @classmethod
    def schema_version(cls) -> int: ...
    async def stored_version(self) -> int: ...
    async def migrate(self) -> tuple[int, int]: ...
    async def ping(self) -> bool: ...

    # admins, audit
    async def add_admin(self, digest: bytes, now: int) -> None: ...
    async def is_admin(self, credential: str | None) -> bool: ...
    async def list_admins(self) -> list[tuple[bytes, int]]: ...  # (digest, created_at)
    async def remove_admin(self, digest: bytes) -> bool: ...
    async def write_audit(self, records: list[AuditRecord]) -> None: ...
    async def audit_rows(self, event: str | None = None) -> list[AuditRow]: ...

    # operations
    async def in_use(self) -> bool:
        """Whether a service process (another than us) has the database open."""
        ...

    async def reseal(self, columns: tuple[SealedColumn, ...], fn: Reseal, audit: AuditRecord,
                     progress: Progress | None = None) -> Resealed:
        """Replace every value in `columns` by `fn(column, value)` in one transaction, with
        `audit` (its detail gets the counts). If `fn` raises, nothing is changed."""
        ...
