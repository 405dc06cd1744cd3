"""Discharger settings."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from clients.errors import ConfigError
from clients.urls import service_url
from server.masterkey import load_master_key
from server.settings import database, picker, read_toml


@dataclass
class DischargerConfig:
    db_path: str
    master_key: bytes  # seals the X25519 keys in the database
    public_url: str
    keys_path: str | None = None  # a 0.1.0 key file, moved into the database on first start
    host: str = "127.0.0.1"
    port: int = 8701
    session_ttl: int = 12 * 3600
    discharge_ttl: int = 300
    user_failures: int = 5  # failed logins per username ...
    address_failures: int = 20  # ... or per client address ...
    failure_window: float = 300.0  # ... within this many seconds give 429
    password_limits: str = "interactive"  # argon2id cost: "interactive" or "moderate"
    hash_threads: int = 2
    hash_queue: int = 64  # logins waiting for a hashing thread before 429
    admin_token: str | None = None
    # Authorities whose /console/ an approved interactive discharge may return to.
    authority_urls: tuple[str, ...] = ()
    # Peers whose X-Forwarded-For names the client (reverse proxies, the authorities' console).
    trusted_proxies: tuple[str, ...] = ()
    metrics_host: str | None = None  # /metrics on its own address (then not on the main port)
    metrics_port: int | None = None

    @property
    def secure(self) -> bool:
        return self.public_url.startswith("https://")


KEYS = frozenset({"host", "port", "public_url", "data_dir", "database", "db", "master_key_file", "keys",
                  "session_ttl", "discharge_ttl", "password_limits", "authority_url", "trusted_proxy", "tls_cert",
                  "tls_key", "metrics_host", "metrics_port"})


def load(config_path: str | None = None, **flags) -> DischargerConfig:
    """Settings from flags, then the TOML file (a [discharger] table or top level), then defaults."""
    section = read_toml(config_path, "discharger", KEYS)
    pick = picker(flags, section, "SABLE_DISCHARGER_")

    data_dir = pick("data_dir", "./var")
    host, port = pick("host", "127.0.0.1"), int(pick("port", 8701))
    scheme = "https" if pick("tls_cert") else "http"
    if pick("metrics_host") and not pick("metrics_port"):
        raise ConfigError("metrics_host needs metrics_port (the port /metrics moves to)")
    config = DischargerConfig(
        db_path=database(flags, section, data_dir, "discharger"),
        master_key=flags.get("master_key") or load_master_key(pick("master_key_file")),
        keys_path=pick("keys") or str(Path(data_dir) / "discharger.keys"),
        public_url=pick("public_url") or f"{scheme}://{host}:{port}",
        host=host,
        port=port,
        session_ttl=int(pick("session_ttl", 12 * 3600)),
        discharge_ttl=int(pick("discharge_ttl", 300)),
        password_limits=pick("password_limits", "interactive"),
        admin_token=os.environ.get("SABLE_ADMIN_TOKEN") or None,
        authority_urls=tuple(_urls(pick("authority_url") or ())),
        trusted_proxies=tuple(_urls(pick("trusted_proxy") or ())),
        metrics_host=pick("metrics_host"),
        metrics_port=int(pick("metrics_port")) if pick("metrics_port") else None,
    )
    for setting, url in [("public_url", config.public_url)] + [("authority_url", u) for u in config.authority_urls]:
        service_url(url, setting)
    return config


def _urls(value) -> list[str]:
    return [value] if isinstance(value, str) else list(value)
