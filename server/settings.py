"""Reading service settings: flags win over the TOML file, which wins over defaults."""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from typing import Any

from clients.errors import ConfigError


def read_toml(path: str | None, section: str) -> dict:
    """The `[section]` table of a TOML file, or its top level if it has no such table."""
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
    return data.get(section, data)


def database(flags: dict, section: dict, data_dir: str, name: str) -> str:
    """Where a service keeps its data: `--db`, else SABLE_DATABASE_URL, else the TOML
    `database` key (`db` as in 0.1.0), else `<data-dir>/<name>.db`. A SQLite file path or a
    `postgresql://` URL."""
    import os
    from pathlib import Path

    return (flags.get("db") or os.environ.get("SABLE_DATABASE_URL") or section.get("database")
            or section.get("db") or str(Path(data_dir) / f"{name}.db"))


def picker(flags: dict, section: dict) -> Callable[..., Any]:
    def pick(name: str, default: Any = None) -> Any:
        value = flags.get(name)
        return value if value is not None else section.get(name, default)
    return pick
