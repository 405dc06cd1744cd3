"""What every `sable` command shares: settings, token arguments, durations, the session
file, and turning errors into a message on stderr and an exit code (SPEC §6)."""

from __future__ import annotations

import functools
import json
import os
import sys
from typing import TYPE_CHECKING, NoReturn

import click

from clients import caveats
from clients.errors import BadRequest, ConfigError, MalformedToken, SableAPIError, SableError

if TYPE_CHECKING:  # clients.sdk imports aiohttp (~0.25 s): only commands that call a service load it
    from pathlib import Path  # and pathlib, tempfile (~15 ms): only commands that touch files

    from clients.sdk import AuthorityClient, DischargerClient

EXIT_OK, EXIT_DENIED, EXIT_USAGE, EXIT_UNAVAILABLE = 0, 1, 2, 3  # 3: retryable (SPEC §12)


class CommandError(SableError):
    """A command's own failure, with the exit code to leave with."""

    def __init__(self, message: str, code: int = EXIT_DENIED):
        super().__init__(message)
        self.exit_code = code


def fail(message: str, code: int = EXIT_DENIED) -> NoReturn:
    raise CommandError(message, code)


def handle_errors(fn):
    """Run a command, turning every expected failure into `sable: message` and an exit code."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except CommandError as e:
            click.echo(f"sable: {e}", err=True)
            sys.exit(e.exit_code)
        except SableAPIError as e:
            if e.code == "unavailable" or e.status in (502, 503, 504):
                click.echo(f"sable: {e.message} (unavailable; try again)", err=True)
                sys.exit(EXIT_UNAVAILABLE)
            if e.code == "wrong_url":  # a setting to fix, not a denial
                click.echo(f"sable: {e.message}", err=True)
                sys.exit(EXIT_USAGE)
            if e.reason == "mfa_required":
                click.echo(f"sable: {e.message}: give it with --totp CODE", err=True)
                sys.exit(EXIT_DENIED)
            if e.code == "unauthorized" and "session" in e.message:
                click.echo(f"sable: {e.message}; run `sable login`", err=True)
                sys.exit(EXIT_DENIED)
            if e.status in (401, 403) and e.service:  # with two services and two credentials: which one
                click.echo(f"sable: the {e.service} refused: {e.message} ({e.code})", err=True)
                sys.exit(EXIT_DENIED)
            click.echo(f"sable: {e.message} ({e.code})", err=True)
            sys.exit(EXIT_USAGE if e.status in (400, 413) else EXIT_DENIED)
        except (MalformedToken, BadRequest, ConfigError) as e:  # bad input: tokens, caveats, settings
            click.echo(f"sable: {e}", err=True)
            sys.exit(EXIT_USAGE)
        except SableError as e:
            click.echo(f"sable: {e}", err=True)
            sys.exit(EXIT_DENIED)
    return wrapper


def run(coro):
    import asyncio  # here, not at the top: offline commands start without it

    from clients import tracing

    tracing.configure_from_env("sable-cli")  # with OTEL_EXPORTER_OTLP_ENDPOINT set only
    return asyncio.run(coro)


class Duration(click.ParamType):
    """`90s`, `15m`, `12h`, `30d` (or plain seconds) as an int number of seconds."""

    name = "duration"

    def convert(self, value, param, ctx):
        if isinstance(value, int):
            return value
        seconds = caveats.parse_duration(str(value))
        if seconds is None:
            self.fail(f"{value!r} is not a duration like 90s, 15m, 12h or 30d", param, ctx)
        if seconds > 365 * 86400:
            self.fail(f"{value!r} is longer than a year (365d), the longest a token may live", param, ctx)
        return seconds


DURATION = Duration()


def read_token(arg: str) -> str:
    """A token argument: the token itself, `-` for stdin, or `@FILE`. A pasted `Bearer ` is
    dropped; quotes around the token are pointed out."""
    if arg == "-":
        text = sys.stdin.read().strip()
    elif arg.startswith("@"):
        try:
            with open(arg[1:]) as f:
                text = f.read().strip()
        except OSError as e:
            fail(f"cannot read {arg[1:]}: {e.strerror}", EXIT_USAGE)
    else:
        text = arg.strip()
    if text[:7].lower() == "bearer ":
        text = text[7:].strip()
    if text[:1] in "\"'`" and text:
        fail("the token is wrapped in quotes: remove them", EXIT_USAGE)
    return text


# What the root command's flags said (`sable --context NAME --authority-url URL ...`).
FLAGS: dict[str, str | None] = {"context": None, "authority": None, "discharger": None}
DEFAULT_URLS = {"authority": "http://127.0.0.1:8700", "discharger": "http://127.0.0.1:8701"}


def service_url_for(service: str) -> str:
    """A service's URL: the flag, else SABLE_<SERVICE>_URL, else the context's (--context,
    SABLE_CONTEXT, or the current one), else the local default (SPEC §19)."""
    from clients.cli.contexts import active

    context = active()
    return (FLAGS[service] or os.environ.get(f"SABLE_{service.upper()}_URL")
            or (context.urls[service] if context else None) or DEFAULT_URLS[service])


def authority_url() -> str:
    return service_url_for("authority")


def discharger_url() -> str:
    return service_url_for("discharger")


def admin_token(service: str = "authority") -> str | None:
    """The admin credential for `service`: SABLE_AUTHORITY_ADMIN_TOKEN or
    SABLE_DISCHARGER_ADMIN_TOKEN, else SABLE_ADMIN_TOKEN (one for both) (SPEC §19)."""
    return os.environ.get(f"SABLE_{service.upper()}_ADMIN_TOKEN") or os.environ.get("SABLE_ADMIN_TOKEN") or None


def authority() -> AuthorityClient:
    from clients.sdk import AuthorityClient
    return AuthorityClient(authority_url(), admin_token=admin_token("authority"))


def discharger(url: str | None = None) -> DischargerClient:
    from clients.sdk import DischargerClient
    return DischargerClient(url or discharger_url(), admin_token=admin_token("discharger"))


def emit(data, as_json: bool, text: str | None = None) -> None:
    if as_json:
        click.echo(json.dumps(data, indent=2))
    elif text is not None:
        click.echo(text)


# --- the session file -------------------------------------------------------------------------


def config_dir() -> Path:
    from pathlib import Path

    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "sable"


def session_path() -> Path:
    """The stored session: one per context (`contexts/NAME/session.json`), else `session.json`.
    Beside it, the user tokens cached for it."""
    from clients.cli.contexts import active

    context = active()
    if context is not None:
        return config_dir() / "contexts" / context.name / "session.json"
    return config_dir() / "session.json"


def write_private(path: Path, data: dict) -> None:
    """Write JSON atomically with mode 0600 (and its folder 0700)."""
    import tempfile

    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def load_session() -> dict:
    path = session_path()
    try:
        data = json.loads(path.read_text())
        data["session"]
    except (OSError, ValueError, KeyError, TypeError):
        fail("not logged in: run `sable login` first")
    return data
