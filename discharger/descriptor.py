"""The discharger as the operator CLI sees it (`server.service.Service`)."""

from __future__ import annotations

from typing import Any

from discharger.config import load
from discharger.store import SEALED, TABLES, open_store
from server.service import Service


def _create_app(config: Any) -> Any:
    from discharger.app import create_app  # aiohttp and the domain: only to serve

    return create_app(config)


SERVICE = Service("discharger", 8701, load, _create_app, open_store, TABLES, SEALED, marker_table="users")
