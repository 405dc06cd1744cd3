"""What the operator CLI knows of a service, said once per service: its name and port, how to
load its settings and build its app, and its database (how to open it, its tables and
sealed columns, the table that tells its data apart). The CLI loops over these; only it knows
that there are several services."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from server.store import SealedColumn


@dataclass(frozen=True, slots=True)
class Service:
    name: str
    default_port: int
    load_config: Callable[..., Any]  # (config_path, **flags) -> the service's config
    create_app: Callable[[Any], Any]  # config -> aiohttp Application
    open_store: Callable[..., Awaitable[Any]]  # (location, migrate=..., role=...) -> store
    tables: tuple[tuple[str, tuple[str, ...]], ...]  # every table and column, parents first
    sealed: tuple[SealedColumn, ...]  # what its master key seals
    marker_table: str  # a table that only this service's database has
