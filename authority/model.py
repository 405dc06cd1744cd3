"""The authority's typed requests and results. Domain modules take and return these;
`authority.schemas` alone maps them to and from JSON bodies."""

from __future__ import annotations

from dataclasses import dataclass

from clients.caveats import Access
from clients.proof_check import ProofRequest


@dataclass(frozen=True, slots=True)
class MintRequest:
    org: str
    caveats: tuple[str, ...] = ()
    name: str | None = None
    expires_in: int | None = None  # None: the authority's default
    principal: str | None = None  # `ci:NAME`: sealed for that service principal (SPEC §16)
    strip_once: bool = False  # each discharge strips it once


@dataclass(frozen=True, slots=True)
class Minted:
    token: str
    id: str
    caveats: list[str]
    principal: str | None = None
    strip_once: bool = False


@dataclass(frozen=True, slots=True)
class StripRequest:
    tokens: list[str]  # [permission token, bound discharge], in any order
    name: str | None = None
    expires_in: int | None = None  # None: the service token does not expire


@dataclass(frozen=True, slots=True)
class Stripped:
    token: str
    id: str
    parent: str
    user: str | None
    caveats: list[str]


@dataclass(frozen=True, slots=True)
class VerifyRequest:
    tokens: list[str]
    access: Access
    proof: ProofRequest | None = None  # a DPoP proof (SPEC §14)


@dataclass(frozen=True, slots=True)
class Revoked:
    id: str
    scope: str  # "token" or "attenuation"


@dataclass(frozen=True, slots=True)
class FeedEntry:
    id: str
    at: int


@dataclass(frozen=True, slots=True)
class FeedPage:
    cursor: int
    revoked: list[FeedEntry]
