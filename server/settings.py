"""Service settings: what every service has (`ServiceSettings`, read by `common`), and
reading them: flags win over the environment, which wins over the TOML file, which wins over
defaults."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from clients.errors import ConfigError
from clients.urls import service_url
from server.store import POSTGRES_SCHEMES

# The keys every service's TOML table may hold; each service adds its own.
COMMON_KEYS = frozenset({"host", "port", "public_url", "data_dir", "database", "db", "master_key_file", "tls_cert",
                         "tls_key", "trusted_proxy", "metrics_host", "metrics_port", "pooler", "listen_database"})


@dataclass(frozen=True)
class ServiceSettings:
    """What every service is configured with; each service's config adds its own fields.
    Frozen: a running service's settings never change (a test makes another with
    `dataclasses.replace`)."""

    db_path: str
    master_key: bytes
    public_url: str
    host: str = "127.0.0.1"
    port: int = 0
    admin_token: str | None = None  # SABLE_ADMIN_TOKEN: accepted, stored hashed
    trusted_proxies: tuple[str, ...] = ()  # peers whose X-Forwarded-For/-Proto are believed
    metrics_host: str | None = None  # /metrics on its own address (then not on the main port)
    metrics_port: int | None = None
    pooler: bool = False  # the database URL leads to a transaction pooler (SPEC §19)
    listen_database: str | None = None  # a direct PostgreSQL URL for LISTEN, past the pooler

    @property
    def secure(self) -> bool:
        return self.public_url.startswith("https://")


def as_list(value: Any) -> list[str]:
    """A setting that may be one value or several."""
    if not value:
        return []
    return [value] if isinstance(value, str) else list(value)


def common(name: str, default_port: int, config_path: str | None, flags: dict,
           known: frozenset[str]) -> tuple[dict[str, Any], Callable[..., Any], dict, str]:
    """Read the settings every service has, for service `name` (its TOML table `[name]`, whose
    keys must be in `known`; its environment prefix `SABLE_<NAME>_`): (ServiceSettings'
    fields, `pick` for the service's own settings, the TOML table, the data dir)."""
    from server.masterkey import load_master_key

    section = read_toml(config_path, name, known)
    pick = picker(flags, section, f"SABLE_{name.upper()}_")
    data_dir = pick("data_dir", "./var")
    host, port = pick("host", "127.0.0.1"), int(pick("port", default_port))
    scheme = "https" if pick("tls_cert") else "http"
    if pick("metrics_host") and not pick("metrics_port"):
        raise ConfigError("metrics_host needs metrics_port (the port /metrics moves to)")
    db_path = database(flags, section, data_dir, name)
    pooler = flag(pick("pooler", False), "pooler")
    listen_database = pick("listen_database")
    if (pooler or listen_database) and not db_path.startswith(POSTGRES_SCHEMES):
        raise ConfigError("pooler and listen_database apply to a postgresql:// database only")
    if listen_database and not listen_database.startswith(POSTGRES_SCHEMES):
        raise ConfigError("listen_database must be a postgresql:// URL (a direct connection, not the pooler's)")
    fields = {
        "db_path": db_path,
        "pooler": pooler,
        "listen_database": listen_database,
        "master_key": flags.get("master_key") or load_master_key(pick("master_key_file")),
        "public_url": service_url(pick("public_url") or f"{scheme}://{host}:{port}", "public_url"),
        "host": host,
        "port": port,
        "admin_token": os.environ.get("SABLE_ADMIN_TOKEN") or None,
        "trusted_proxies": tuple(as_list(pick("trusted_proxy"))),
        "metrics_host": pick("metrics_host"),
        "metrics_port": int(pick("metrics_port")) if pick("metrics_port") else None,
    }
    return fields, pick, section, data_dir

SECTIONS = ("authority", "discharger", "verifier")


def flag(value: Any, name: str) -> bool:
    """A yes/no setting from TOML (a boolean), the environment or a flag (text)."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("", "0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false, not {value!r}")


def read_toml(path: str | None, section: str, known: frozenset[str] | None = None) -> dict:
    """The `[section]` table of a TOML file, or its top level if it has no such table. With
    `known`, an unknown section or key is a ConfigError naming it (and the likely intended
    one): a typo must not start a service with a default in its place."""
    if not path:
        return {}
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as e:
        raise ConfigError(f"cannot read config {path}: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config {path} is not valid TOML: {e}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config {path} is not UTF-8 text") from None
    if known is None:
        return data.get(section, data)
    has_sections = any(isinstance(v, dict) for v in data.values())
    if has_sections:
        for name, value in data.items():
            if name not in SECTIONS:
                raise ConfigError(f"config {path}: unknown {'section' if isinstance(value, dict) else 'key'} "
                                  f"{name!r}{_hint(name, SECTIONS)}; sections are [authority], [discharger] and [verifier]")
    table = data.get(section, {}) if has_sections else data
    for key in table:
        if key not in known:
            raise ConfigError(f"config {path}: unknown key {key!r} in [{section}]{_hint(key, known)}")
    return table


def _hint(name: str, choices) -> str:
    import difflib

    close = difflib.get_close_matches(name, sorted(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def database(flags: dict, section: dict, data_dir: str, name: str) -> str:
    """Where a service keeps its data: `--db`, else SABLE_DATABASE_URL, else the TOML
    `database` key (`db` as in 0.1.0), else `<data-dir>/<name>.db`. A SQLite file path or a
    `postgresql://` URL."""
    import os
    from pathlib import Path

    return (flags.get("db") or os.environ.get("SABLE_DATABASE_URL") or section.get("database")
            or section.get("db") or str(Path(data_dir) / f"{name}.db"))


def picker(flags: dict, section: dict, env_prefix: str | None = None) -> Callable[..., Any]:
    """`pick(name, default)`: the flag, else the environment variable `<env_prefix><NAME>`
    (e.g. SABLE_AUTHORITY_PUBLIC_URL; a list as comma-separated values), else the TOML key,
    else the default. Every setting thus has all three (SPEC §12)."""
    import os

    def pick(name: str, default: Any = None) -> Any:
        value = flags.get(name)
        if value is not None:
            return value
        if env_prefix is not None:
            env = os.environ.get(f"{env_prefix}{name.upper()}")
            if env:
                return [v.strip() for v in env.split(",") if v.strip()] if name in LIST_SETTINGS else env
        return section.get(name, default)
    return pick


LIST_SETTINGS = frozenset({"authority_url", "trusted_proxy"})
