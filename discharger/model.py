"""The discharger's typed requests and results; `discharger.schemas` maps them to JSON."""

from __future__ import annotations

import re
from dataclasses import dataclass

from clients.tickets import ROLES  # in rising order

__all__ = ["ROLES", "USERNAME_RE", "USERNAME_RULE", "Credentials", "Discharge", "Membership", "NewUser", "Session",
           "role_at_least"]


# A username: §3's name grammar without `:`, which is kept for principals (`ci:NAME`, SPEC §16).
USERNAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
USERNAME_RULE = "username must match [A-Za-z0-9][A-Za-z0-9._-]{0,127} (no ':', which is kept for principals)"


def role_at_least(role: str | None, required: str) -> bool:
    return role in ROLES and ROLES.index(role) >= ROLES.index(required)


@dataclass(frozen=True, slots=True)
class NewUser:
    username: str
    password: str | None  # None: a user who signs in only through `idp`
    roles: dict[str, str]  # org -> role
    idp: str | None = None


@dataclass(frozen=True, slots=True)
class Credentials:
    username: str
    password: str
    totp: str | None = None  # a code from the authenticator app, or a recovery code


@dataclass(frozen=True, slots=True)
class Membership:
    username: str
    roles: dict[str, str]  # org -> role


@dataclass(frozen=True, slots=True)
class Session:
    secret: str  # sable_ss_...: returned once, stored only as a digest
    expires_at: int
    auth_method: str = "password"  # how it was made (SPEC §15)


@dataclass(frozen=True, slots=True)
class Discharge:
    token: str
    expires_at: int
    auth_method: str = "password"  # how the session or browser behind it signed in
