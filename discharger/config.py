"""Discharger settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from clients.errors import ConfigError
from clients.urls import service_url
from discharger import providers
from discharger.providers import ProviderSettings
from server.secret_scanning import GITHUB_KEYS_URL
from server.settings import COMMON_KEYS, ServiceSettings, as_list, common


@dataclass(frozen=True)
class DischargerConfig(ServiceSettings):
    # master_key seals the X25519 keys in the database
    keys_path: str | None = None  # a 0.1.0 key file, moved into the database on first start
    port: int = 8701
    session_ttl: int = 12 * 3600
    discharge_ttl: int = 300
    user_failures: int = 5  # failed logins per username ...
    address_failures: int = 20  # ... or per client address ...
    failure_window: float = 300.0  # ... within this many seconds give 429
    password_limits: str = "interactive"  # argon2id cost: "interactive" or "moderate"
    hash_threads: int = 2
    hash_queue: int = 64  # logins waiting for a hashing thread before 429
    # Authorities whose /console/ an approved interactive discharge may return to.
    authority_urls: tuple[str, ...] = ()
    identity_providers: tuple[ProviderSettings, ...] = ()  # OpenID providers (SPEC §15)
    passwords: bool = True  # False: people sign in only through a provider
    secret_scanning_keys_url: str | None = GITHUB_KEYS_URL  # GitHub's keys for leak reports (SPEC §18)
    # An authority admin credential: user.* and principal.* events go to each authority_url's
    # POST /v1/events with it (SPEC §18). Give it in SABLE_DISCHARGER_AUTHORITY_ADMIN_TOKEN.
    authority_admin_token: str | None = field(default=None, repr=False)


KEYS = COMMON_KEYS | frozenset({"keys", "session_ttl", "discharge_ttl", "password_limits", "authority_url",
                                "identity_provider", "passwords", "secret_scanning_keys_url",
                                "authority_admin_token"})


def load(config_path: str | None = None, **flags) -> DischargerConfig:
    """Settings from flags, the environment (SABLE_DISCHARGER_*), the TOML file (a
    [discharger] table or top level), then defaults."""
    fields, pick, _, data_dir = common("discharger", 8701, config_path, flags, KEYS)
    config = DischargerConfig(
        **fields,
        keys_path=pick("keys") or str(Path(data_dir) / "discharger.keys"),
        session_ttl=int(pick("session_ttl", 12 * 3600)),
        discharge_ttl=int(pick("discharge_ttl", 300)),
        password_limits=pick("password_limits", "interactive"),
        authority_urls=tuple(as_list(pick("authority_url"))),
        identity_providers=providers.parse(pick("identity_provider")),
        passwords=_boolean(pick("passwords", True), "passwords"),
        authority_admin_token=pick("authority_admin_token") or None,
        secret_scanning_keys_url=service_url(pick("secret_scanning_keys_url", GITHUB_KEYS_URL) or "",
                                             "secret_scanning_keys_url") or None,
    )
    for url in config.authority_urls:
        service_url(url, "authority_url")
    return config


def _boolean(value: object, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false", "1", "0"):
        return value.lower() in ("true", "1")
    raise ConfigError(f"{name} must be true or false")
