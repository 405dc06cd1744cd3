"""Fixtures for the authority's unit tests: a real store with one org, "acme", on each backend."""

from __future__ import annotations

import pytest

from authority.store import open_store
from server.audit import AuditRecord


@pytest.fixture
async def store(db_location, backend):
    s = await open_store(db_location("authority"), pooler=backend == "pgbouncer")
    await s.create_org("acme", 1, AuditRecord("org_create", org="acme"))
    yield s
    await s.close()
