"""Authority settings: one dataclass, filled from a TOML file, the environment and flags."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from clients.errors import ConfigError
from clients.tickets import b64d, key_id
from clients.urls import service_url
from server.masterkey import load_master_key
from server.settings import database, picker, read_toml


@dataclass(frozen=True)
class TrustedDischarger:
    location: str
    public_keys: tuple[tuple[str, bytes], ...]  # (kid, X25519 public key); the first seals new tickets


@dataclass
class AuthorityConfig:
    db_path: str
    master_key: bytes
    public_url: str
    dischargers: list[TrustedDischarger] = field(default_factory=list)
    discharger_url: str | None = None  # when set, the keys are fetched from it and refreshed
    host: str = "127.0.0.1"
    port: int = 8700
    ticket_ttl: int = 300
    default_expires_in: int = 30 * 86400
    key_cache_size: int = 100_000
    revoke_per_minute: int = 100
    feed_poll_interval: float = 0.2
    last_used_interval: float = 60.0
    flush_interval: float = 1.0  # how often last-used times and denial audits are written
    admin_token: str | None = None
    trusted_proxies: tuple[str, ...] = ()  # peers whose X-Forwarded-For/-Proto are believed
    workers: int = 1  # processes sharing the port (SO_REUSEPORT)
    metrics_host: str | None = None  # /metrics on its own address (then not on the main port)
    metrics_port: int | None = None


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


KEYS = frozenset({"host", "port", "public_url", "data_dir", "database", "db", "master_key_file", "ticket_ttl",
                  "revoke_per_minute", "key_cache_size", "discharger", "dischargers", "tls_cert", "tls_key",
                  "trusted_proxy", "workers", "metrics_host", "metrics_port"})


def load(config_path: str | None = None, **flags) -> AuthorityConfig:
    """Settings from flags, then the TOML file, then defaults. When the discharger is given by
    URL, `dischargers` stays empty until its keys are fetched (authority.dischargers)."""
    section = read_toml(config_path, "authority", KEYS)
    pick = picker(flags, section, "SABLE_AUTHORITY_")

    data_dir = pick("data_dir", "./var")
    host, port = pick("host", "127.0.0.1"), int(pick("port", 8700))
    scheme = "https" if pick("tls_cert") else "http"
    dischargers = [discharger_from_info(d) for d in section.get("dischargers", [])]
    config = AuthorityConfig(
        db_path=database(flags, section, data_dir, "authority"),
        master_key=flags.get("master_key") or load_master_key(pick("master_key_file")),
        public_url=pick("public_url") or f"{scheme}://{host}:{port}",
        dischargers=dischargers,
        host=host,
        port=port,
        ticket_ttl=int(pick("ticket_ttl", 300)),
        revoke_per_minute=int(pick("revoke_per_minute", 100)),
        key_cache_size=int(pick("key_cache_size", 100_000)),
        admin_token=os.environ.get("SABLE_ADMIN_TOKEN") or None,
        trusted_proxies=tuple([tp] if isinstance(tp := pick("trusted_proxy") or (), str) else tp),
        workers=int(pick("workers", 1)),
        metrics_host=pick("metrics_host"),
        metrics_port=int(pick("metrics_port")) if pick("metrics_port") else None,
    )
    if config.metrics_host and not config.metrics_port:
        raise ConfigError("metrics_host needs metrics_port (the port /metrics moves to)")
    if not 1 <= config.workers <= 64:
        raise ConfigError("workers must be from 1 to 64")
    if not 1 <= config.ticket_ttl <= 300:
        raise ConfigError("ticket_ttl must be from 1 to 300 seconds")
    config.discharger_url = pick("discharger")
    for setting, url in [("public_url", config.public_url), ("discharger", config.discharger_url or "")] + \
            [("a discharger's location", d.location) for d in dischargers]:
        service_url(url, setting)
    if dischargers and config.discharger_url:
        raise ConfigError("give the discharger either as a URL or with its keys in the config, not both")
    return config
