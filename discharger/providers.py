"""The OpenID providers a discharger is configured with (SPEC §15): their settings, read from
`[[discharger.identity_provider]]` tables and checked before anything starts."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from clients.caveats import NAME_RE
from clients.errors import ConfigError
from discharger.model import ROLES

SLUG_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,31}")
KEYS = frozenset({"name", "display", "issuer", "client_id", "client_secret_file", "scopes", "username_claim",
                  "groups_claim", "memberships", "provisioning"})
PROVISIONING = ("existing", "auto")


@dataclass(frozen=True)
class MembershipRule:
    group: str
    org: str
    role: str


@dataclass(frozen=True)
class ProviderSettings:
    name: str
    display: str
    issuer: str
    client_id: str
    client_secret: str = ""
    scopes: tuple[str, ...] = ("openid", "email", "profile")
    username_claim: str = "preferred_username"
    groups_claim: str = "groups"
    memberships: tuple[MembershipRule, ...] = ()
    provisioning: str = "existing"

    def __repr__(self) -> str:  # never the client secret, in a log or a traceback
        return f"ProviderSettings(name={self.name!r}, issuer={self.issuer!r}, client_id={self.client_id!r})"


def issuer_url(value: object, where: str) -> str:
    """An issuer: https, or http for a loopback host only; no user info, query or fragment."""
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where}: issuer is required")
    parts = urlsplit(value)
    loopback = parts.hostname in ("127.0.0.1", "::1", "localhost")
    if parts.scheme != "https" and not (parts.scheme == "http" and loopback):
        raise ConfigError(f"{where}: issuer must be an https URL (http only for a loopback host)")
    if parts.username or parts.password or parts.query or parts.fragment or not parts.hostname:
        raise ConfigError(f"{where}: issuer must be a plain URL without user info, query or fragment")
    return value


def _secret(table: dict, name: str, where: str) -> str:
    env = f"SABLE_DISCHARGER_IDP_{name.upper().replace('-', '_')}_CLIENT_SECRET"
    if os.environ.get(env):
        return os.environ[env].strip()
    path = table.get("client_secret_file")
    if not path:
        raise ConfigError(f"{where}: client_secret_file (or {env}) is required")
    try:
        secret = Path(str(path)).read_text().strip()
    except OSError as e:
        raise ConfigError(f"{where}: cannot read client_secret_file {path}: {e.strerror}") from None
    if not secret:
        raise ConfigError(f"{where}: client_secret_file {path} is empty")
    return secret


def _strings(value: object, what: str, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{where}: {what} must be a list of strings")
    return tuple(value)


def _rule(value: object, where: str) -> MembershipRule:
    if not isinstance(value, dict) or set(value) != {"group", "org", "role"}:
        raise ConfigError(f"{where}: each of memberships is {{group, org, role}}")
    group, org, role = value["group"], value["org"], value["role"]
    if not isinstance(group, str) or not group:
        raise ConfigError(f"{where}: a membership's group must be a non-empty string")
    if not isinstance(org, str) or not NAME_RE.fullmatch(org):
        raise ConfigError(f"{where}: a membership's org {org!r} is not an org name")
    if role not in ROLES:
        raise ConfigError(f"{where}: a membership's role must be one of {', '.join(ROLES)}")
    return MembershipRule(group, org, role)


def parse(tables: object) -> tuple[ProviderSettings, ...]:
    """The `identity_provider` tables, each checked; ConfigError naming the first fault."""
    if tables is None:
        return ()
    if not isinstance(tables, list):
        raise ConfigError("identity_provider must be an array of tables ([[discharger.identity_provider]])")
    found: list[ProviderSettings] = []
    for i, table in enumerate(tables):
        where = f"identity_provider #{i + 1}"
        if not isinstance(table, dict):
            raise ConfigError(f"{where} must be a table")
        unknown = sorted(set(table) - KEYS)
        if unknown:
            raise ConfigError(f"{where}: unknown key {unknown[0]!r}")
        name = table.get("name")
        if not isinstance(name, str) or not SLUG_RE.fullmatch(name):
            raise ConfigError(f"{where}: name must be a slug ([a-z0-9][a-z0-9-]{{0,31}})")
        where = f"identity_provider {name!r}"
        if any(p.name == name for p in found):
            raise ConfigError(f"{where} is configured twice")
        issuer = issuer_url(table.get("issuer"), where)
        if any(p.issuer == issuer for p in found):
            raise ConfigError(f"{where}: issuer {issuer} is another provider's")
        client_id = table.get("client_id")
        if not isinstance(client_id, str) or not client_id:
            raise ConfigError(f"{where}: client_id is required")
        scopes = _strings(table.get("scopes", ["openid", "email", "profile"]), "scopes", where)
        if "openid" not in scopes:
            raise ConfigError(f"{where}: scopes must include openid")
        provisioning = table.get("provisioning", "existing")
        if provisioning not in PROVISIONING:
            raise ConfigError(f"{where}: provisioning must be existing or auto")
        claims = {}
        for key, default in (("username_claim", "preferred_username"), ("groups_claim", "groups")):
            claims[key] = table.get(key, default)
            if not isinstance(claims[key], str) or not claims[key]:
                raise ConfigError(f"{where}: {key} must be a claim name")
        display = table.get("display", f"Sign in with {name}")
        if not isinstance(display, str) or not display or len(display) > 80:
            raise ConfigError(f"{where}: display must be a button label of at most 80 characters")
        memberships = table.get("memberships", [])
        if not isinstance(memberships, list):
            raise ConfigError(f"{where}: memberships must be a list of {{group, org, role}}")
        found.append(ProviderSettings(
            name=name, display=display, issuer=issuer, client_id=client_id,
            client_secret=_secret(table, name, where), scopes=scopes, memberships=tuple(_rule(m, where) for m in memberships),
            provisioning=provisioning, **claims))
    return tuple(found)
