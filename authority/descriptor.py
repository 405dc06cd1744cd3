"""The authority as the operator CLI sees it (`server.service.Service`)."""

from __future__ import annotations

from typing import Any

from authority.config import load
from authority.store import SEALED, TABLES, open_store
from server.service import Service


def _create_app(config: Any) -> Any:
    from authority.app import create_app  # aiohttp and the domain: only to serve

    return create_app(config)


SERVICE = Service("authority", 8700, load, _create_app, open_store, TABLES, SEALED, marker_table="tokens")
