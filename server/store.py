"""What every service's store has, whatever the backend: the schema and health calls, admin
credentials, the audit trail, and the tables behind them (for `sable db copy`)."""

from __future__ import annotations

from typing import Protocol

from server.audit import AuditRecord
from server.sqlite import AuditRow

# The tables every service has, with their columns, before the service's own.
COMMON_TABLES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("meta", ("k", "v")),
    ("admins", ("hash", "created_at")),
    ("audit", ("seq", "at", "event", "outcome", "request_id", "client", "token_id", "parent", "org", "user", "detail")),
)


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
