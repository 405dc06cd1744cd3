"""Authority settings: one dataclass, filled from a TOML file, the environment and flags."""

from __future__ import annotations

from dataclasses import dataclass

from clients.errors import ConfigError
from clients.tickets import b64d, key_id
from clients.urls import service_url
from server.secret_scanning import GITHUB_KEYS_URL
from server.settings import COMMON_KEYS, ServiceSettings, common, flag


@dataclass(frozen=True)
class TrustedDischarger:
    location: str
    public_keys: tuple[tuple[str, bytes], ...]  # (kid, X25519 public key); the first seals new tickets


@dataclass(frozen=True)
class AuthorityConfig(ServiceSettings):
    dischargers: tuple[TrustedDischarger, ...] = ()  # pinned keys, from the config
    discharger_url: str | None = None  # else its keys are fetched from here and refreshed
    port: int = 8700
    ticket_ttl: int = 300
    default_expires_in: int = 30 * 86400
    key_cache_size: int = 100_000
    revoke_per_minute: int = 100
    feed_poll_interval: float = 0.2
    last_used_interval: float = 60.0
    flush_interval: float = 1.0  # how often last-used times and denial audits are written
    workers: int = 1  # processes sharing the port (SO_REUSEPORT)
    secret_scanning_keys_url: str | None = GITHUB_KEYS_URL  # GitHub's keys for leak reports (SPEC §18)
    public_revocations_per_hour: int = 60  # per client address, across every process
    webhook_allow_private: bool = False  # webhooks may target private addresses (and http on loopback)


def discharger_from_info(info: dict) -> TrustedDischarger:
    """Trust built from a discharger's /v1/info (or the same shape in the config file)."""
    try:
        keys = tuple((k["kid"], b64d(k["key"])) for k in info["public_keys"])
        location = info["location"]
    except (KeyError, TypeError, ValueError):
        raise ConfigError("discharger info needs location and public_keys [{kid, key}]") from None
    if not keys or not isinstance(location, str):
        raise ConfigError("discharger info needs a location and at least one public key")
    for kid, key in keys:
        if len(key) != 32 or key_id(key) != kid:
            raise ConfigError(f"discharger key {kid!r} is not a 32-byte key with a matching kid")
    return TrustedDischarger(location, keys)


KEYS = COMMON_KEYS | frozenset({"ticket_ttl", "revoke_per_minute", "key_cache_size", "discharger", "dischargers", "workers",
                                "secret_scanning_keys_url", "public_revocations_per_hour", "webhook_allow_private"})


def load(config_path: str | None = None, **flags) -> AuthorityConfig:
    """Settings from flags, the environment (SABLE_AUTHORITY_*), the TOML file, then defaults."""
    fields, pick, section, _ = common("authority", 8700, config_path, flags, KEYS)
    dischargers = tuple(discharger_from_info(d) for d in section.get("dischargers", []))
    config = AuthorityConfig(
        **fields,
        dischargers=dischargers,
        discharger_url=pick("discharger"),
        ticket_ttl=int(pick("ticket_ttl", 300)),
        revoke_per_minute=int(pick("revoke_per_minute", 100)),
        key_cache_size=int(pick("key_cache_size", 100_000)),
        workers=int(pick("workers", 1)),
        secret_scanning_keys_url=pick("secret_scanning_keys_url", GITHUB_KEYS_URL) or None,
        public_revocations_per_hour=int(pick("public_revocations_per_hour", 60)),
        webhook_allow_private=flag(pick("webhook_allow_private", False), "webhook_allow_private"),
    )
    if config.secret_scanning_keys_url:
        service_url(config.secret_scanning_keys_url, "secret_scanning_keys_url")
    if config.public_revocations_per_hour < 1:
        raise ConfigError("public_revocations_per_hour must be at least 1")
    if not 1 <= config.workers <= 64:
        raise ConfigError("workers must be from 1 to 64")
    if not 1 <= config.ticket_ttl <= 300:
        raise ConfigError("ticket_ttl must be from 1 to 300 seconds")
    for setting, url in [("discharger", config.discharger_url or "")] + \
            [("a discharger's location", d.location) for d in dischargers]:
        service_url(url, setting)
    if dischargers and config.discharger_url:
        raise ConfigError("give the discharger either as a URL or with its keys in the config, not both")
    return config
