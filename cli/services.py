"""The services the CLI runs and changes, by name (their descriptors, `server.service`)."""

from __future__ import annotations

from server.service import Service

NAMES = ("authority", "discharger")


def services() -> dict[str, Service]:
    from authority.descriptor import SERVICE as AUTHORITY
    from discharger.descriptor import SERVICE as DISCHARGER

    return {s.name: s for s in (AUTHORITY, DISCHARGER)}
