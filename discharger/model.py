"""The discharger's typed requests and results; `discharger.schemas` maps them to JSON."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class NewUser:
    username: str
    password: str
    orgs: list[str]


@dataclass(frozen=True, slots=True)
class Credentials:
    username: str
    password: str


@dataclass(frozen=True, slots=True)
class Membership:
    username: str
    orgs: list[str]


@dataclass(frozen=True, slots=True)
class Session:
    secret: str  # sable_ss_...: returned once, stored only as a digest
    expires_at: int


@dataclass(frozen=True, slots=True)
class Discharge:
    token: str
    expires_at: int
