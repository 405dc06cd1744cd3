"""Audit records shared by both services: a database row and a structlog JSON line.

A record holds ids, lineage, user, client address and request id, never a token or secret.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import structlog

log = structlog.get_logger("sable.audit")

T = TypeVar("T")


@dataclass(slots=True)
class AuditRecord:
    event: str
    outcome: str = "ok"
    request_id: str | None = None
    client: str | None = None
    token_id: str | None = None
    parent: str | None = None
    org: str | None = None
    user: str | None = None
    detail: dict | None = None
    at: float = field(default_factory=time.time)
    # told of the record when it is emitted (the service's metrics count events this way)
    observer: Callable[[AuditRecord], None] | None = field(default=None, repr=False, compare=False)

    def add(self, **detail) -> AuditRecord:
        """This record with more detail (what a write changed): for an `AuditFor`."""
        self.detail = {**(self.detail or {}), **detail}
        return self

    def emit(self) -> None:
        fields = {k: getattr(self, k) for k in ("outcome", "client", "token_id", "parent", "org", "user")}
        log.info(self.event, **{k: v for k, v in fields.items() if v is not None}, **(self.detail or {}))
        if self.observer is not None:
            self.observer(self)


# How the domain audits a write whose record depends on what it changed: the store calls it
# with the change inside the write's transaction and stores the record it returns (None:
# nothing to record). The domain says what happened; the store keeps it atomic.
AuditFor = Callable[[T], "AuditRecord | None"]


@dataclass(frozen=True, slots=True)
class ListedIn:
    """The `AuditFor` of a write that changes a list of ids (a revocation's cascade): `record`
    with the ids under `key`; when none changed, `record` as it is if `when_none`, else
    nothing. Being data rather than code, a store may also write it in the same statement as
    the change (PostgreSQL's revocations: one round trip, SPEC §9)."""

    record: AuditRecord
    key: str = "revoked"
    when_none: bool = False

    def __call__(self, ids: list[str]) -> AuditRecord | None:
        if ids:
            return self.record.add(**{self.key: ids})
        return self.record if self.when_none else None


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is asking: the client address and request id every audit record carries."""

    client: str | None = None
    request_id: str | None = None
    observer: Callable[[AuditRecord], None] | None = field(default=None, repr=False, compare=False)

    def record(self, event: str, **fields) -> AuditRecord:
        return AuditRecord(event, client=self.client, request_id=self.request_id, observer=self.observer, **fields)


@dataclass(frozen=True, slots=True)
class AuditRow:
    seq: int
    at: float
    event: str
    outcome: str
    request_id: str | None
    client: str | None
    token_id: str | None
    parent: str | None
    org: str | None
    user: str | None
    detail: dict | None
