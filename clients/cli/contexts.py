"""Named deployments for the CLI (SPEC §19): `sable context add|use|list|remove`. A context is
an authority URL and a discharger URL with a session of its own, so switching between
staging and production never sends one deployment's session or tickets to the other.

Stored in `<config>/sable/contexts.json` (mode 0600); each context's session and cached user
tokens live in `<config>/sable/contexts/NAME/`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass

import click

from clients.cli.common import EXIT_USAGE, FLAGS, config_dir, emit, fail, handle_errors, write_private
from clients.errors import ConfigError
from clients.urls import service_url

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


@dataclass(frozen=True)
class Context:
    name: str
    urls: dict[str, str]  # "authority", "discharger" -> URL
    source: str  # how it was chosen: "--context", "SABLE_CONTEXT" or "current"


def _path():
    return config_dir() / "contexts.json"


def _load() -> dict:
    try:
        data = json.loads(_path().read_text())
    except FileNotFoundError:
        return {"current": None, "contexts": {}}
    except (OSError, ValueError):
        raise ConfigError(f"{_path()} is not readable JSON: fix or remove it") from None
    if not isinstance(data, dict) or not isinstance(data.get("contexts"), dict):
        raise ConfigError(f"{_path()} is not a Sable contexts file: fix or remove it")
    return data


def active() -> Context | None:
    """The context in effect: --context, else SABLE_CONTEXT, else the current one (or none)."""
    chosen, source = FLAGS["context"], "--context"
    if not chosen:
        chosen, source = os.environ.get("SABLE_CONTEXT") or None, "SABLE_CONTEXT"
    if not chosen and not _path().exists():
        return None  # no contexts: the plain settings (the common case, without reading a file)
    data = _load()
    if not chosen:
        chosen, source = data.get("current"), "current"
        if not chosen:
            return None
    found = data["contexts"].get(chosen)
    if found is None:
        raise ConfigError(f"no context {chosen!r} (from {source}); `sable context list` shows them")
    return Context(chosen, found, source)


@click.group()
def context():
    """Named deployments, each with its own URLs and session."""


@context.command("add")
@click.argument("name")
@click.option("--authority", "authority_url", required=True, metavar="URL", help="The authority's URL.")
@click.option("--discharger", "discharger_url", required=True, metavar="URL", help="The discharger's URL.")
@handle_errors
def add(name, authority_url, discharger_url):
    """Add context NAME (the first one added becomes the current one)."""
    if not NAME.fullmatch(name):
        fail("a context name is letters, digits, '.', '_' or '-' (up to 64)", EXIT_USAGE)
    urls = {"authority": service_url(authority_url, "--authority"),
            "discharger": service_url(discharger_url, "--discharger")}
    data = _load()
    if name in data["contexts"] and data["contexts"][name] != urls:
        fail(f"context {name} exists with other URLs: `sable context remove {name}` first", EXIT_USAGE)
    data["contexts"][name] = urls
    made_current = not data.get("current")
    if made_current:
        data["current"] = name
    write_private(_path(), data)
    click.echo(f"added context {name}" + (" (now the current one)" if made_current else
                                          f"; `sable context use {name}` to switch to it"), err=True)


@context.command("use")
@click.argument("name")
@handle_errors
def use(name):
    """Make NAME the current context."""
    data = _load()
    if name not in data["contexts"]:
        fail(f"no context {name!r}; `sable context list` shows them", EXIT_USAGE)
    data["current"] = name
    write_private(_path(), data)
    click.echo(f"switched to context {name}", err=True)


@context.command("list")
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def list_(as_json):
    """List the contexts; * marks the current one."""
    data = _load()
    rows = [{"name": n, "current": n == data.get("current"), **urls} for n, urls in sorted(data["contexts"].items())]
    text = "\n".join(f"{'*' if r['current'] else ' '} {r['name']}  authority {r['authority']}  "
                     f"discharger {r['discharger']}" for r in rows) or "no contexts (`sable context add NAME ...`)"
    emit(rows, as_json, text)


@context.command("remove")
@click.argument("name")
@handle_errors
def remove(name):
    """Remove context NAME and forget its stored session (log out first to end it)."""
    data = _load()
    if data["contexts"].pop(name, None) is None:
        fail(f"no context {name!r}", EXIT_USAGE)
    if data.get("current") == name:
        data["current"] = None
    write_private(_path(), data)
    shutil.rmtree(config_dir() / "contexts" / name, ignore_errors=True)
    click.echo(f"removed context {name}", err=True)
