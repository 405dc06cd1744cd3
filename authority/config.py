"""Authority settings: one dataclass, filled from a TOML file, the environment and flags."""

from __future__ import annotations

import os
import stat
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from clients.tickets import b64d, key_id


class ConfigError(ValueError):
    """A setting is missing or wrong; the message says which."""


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
    host: str = "127.0.0.1"
    port: int = 8700
    ticket_ttl: int = 300
    default_expires_in: int = 30 * 86400
    key_cache_size: int = 100_000
    revoke_per_minute: int = 100
    feed_poll_interval: float = 0.2
    last_used_interval: float = 60.0
    admin_token: str | None = None


def parse_key(text: str, what: str) -> bytes:
    """A 32-byte key written as base64url (43 chars) or hex (64 chars)."""
    text = text.strip()
    try:
        key = bytes.fromhex(text) if len(text) == 64 else b64d(text)
    except ValueError:
        raise ConfigError(f"{what} is not base64url or hex") from None
    if len(key) != 32:
        raise ConfigError(f"{what} must be 32 bytes")
    return key


def load_master_key(key_file: str | None = None) -> bytes:
    """From SABLE_MASTER_KEY, else from a key file that only its owner can read."""
    env = os.environ.get("SABLE_MASTER_KEY")
    if env:
        return parse_key(env, "SABLE_MASTER_KEY")
    key_file = key_file or os.environ.get("SABLE_MASTER_KEY_FILE")
    if not key_file:
        raise ConfigError("no master key: set SABLE_MASTER_KEY or pass --master-key-file")
    path = Path(key_file)
    try:
        mode = path.stat().st_mode
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"cannot read master key file {path}: {e.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"master key file {path} is readable by others; chmod 600 it")
    return parse_key(text, f"master key file {path}")


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


def read_toml(path: str | None) -> dict:
    if not path:
        return {}
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except OSError as e:
        raise ConfigError(f"cannot read config {path}: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config {path} is not valid TOML: {e}") from None
