"""The discharger's typed requests and results; `discharger.schemas` maps them to JSON."""

from __future__ import annotations

from dataclasses import dataclass

from clients.tickets import ROLES  # in rising order

__all__ = ["ROLES", "Credentials", "Discharge", "Membership", "NewUser", "Session", "role_at_least"]


def role_at_least(role: str | None, required: str) -> bool:
    return role in ROLES and ROLES.index(role) >= ROLES.index(required)


@dataclass(frozen=True, slots=True)
class NewUser:
    username: str
    password: str
    roles: dict[str, str]  # org -> role


@dataclass(frozen=True, slots=True)
class Credentials:
    username: str
    password: str


@dataclass(frozen=True, slots=True)
class Membership:
    username: str
    roles: dict[str, str]  # org -> role


@dataclass(frozen=True, slots=True)
class Session:
    secret: str  # sable_ss_...: returned once, stored only as a digest
    expires_at: int


@dataclass(frozen=True, slots=True)
class Discharge:
    token: str
    expires_at: int
