"""Routes (SPEC §17): which access a gateway's request asks for. Pure functions and data.

A request path is normalised the way an upstream will read it before any route matches, so
that no spelling of a path reaches a route other than the one the upstream serves: the query
goes, percent-escapes of unreserved characters are decoded, repeated slashes merge and dot
segments are resolved. A path that still holds an encoded slash or backslash, a backslash, a
NUL or `..` is ambiguous (upstreams disagree about it) and is refused before matching.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from clients.caveats import ACTION_LETTERS, NAME_RE
from clients.errors import ConfigError
from clients.urls import service_url

DEFAULT_ACTIONS = {"GET": "r", "HEAD": "r", "OPTIONS": "r", "POST": "w", "PUT": "w", "PATCH": "w", "DELETE": "d"}
_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_HOST = re.compile(r"(\*\.)?[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*")
_METHOD = re.compile(r"[A-Z]{1,16}")


class AmbiguousPath(ValueError):
    """A path upstreams may read in more than one way."""


def normalise_path(uri: str) -> str:
    """The path of an origin-form request target as the upstream will route it; AmbiguousPath
    if it cannot be known."""
    path = uri.split("?", 1)[0].split("#", 1)[0]
    if not path.startswith("/") or len(path) > 8192:
        raise AmbiguousPath("not an origin-form path")
    if "%" not in path and "//" not in path and "/." not in path and "\\" not in path and "\x00" not in path \
            and ".." not in path:
        return path  # already in normal form: the common case, on every request

    def unescape(m: re.Match) -> str:
        ch = chr(int(m.group(1), 16))
        return ch if ch in _UNRESERVED else "%" + m.group(1).upper()

    path = _ESCAPE.sub(unescape, path)
    upper = path.upper()
    if "%2F" in upper or "%5C" in upper or "%00" in upper or "\\" in path or "\x00" in path:
        raise AmbiguousPath("an encoded slash, a backslash or a NUL")
    path = re.sub(r"/{2,}", "/", path)
    out: list[str] = []
    segments = path.split("/")[1:]
    for i, seg in enumerate(segments):
        last = i == len(segments) - 1
        if seg == ".":
            if last:
                out.append("")
        elif seg == "..":
            if out:
                out.pop()
            if last:
                out.append("")
        else:
            out.append(seg)
    resolved = "/" + "/".join(out)
    if ".." in resolved:
        raise AmbiguousPath("'..' in a segment")
    return resolved


def host_without_port(host: str) -> str:
    host = host.strip().lower()
    if host.startswith("["):  # an IPv6 literal
        return host.split("]", 1)[0] + "]"
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


@dataclass(frozen=True)
class Route:
    host: str  # exact, or `*.suffix`
    path: str  # exact, or a prefix ending in `*`
    org: str
    app: str | None = None
    actions: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_ACTIONS))
    public_url: str | None = None  # what DPoP proofs name (htu = public_url + path)
    access_host: str | None = None  # overrides the process's `host` for this route
    access_instance: str | None = None

    def matches(self, host: str, path: str) -> bool:
        if self.host.startswith("*."):
            if not host.endswith(self.host[1:]) or len(host) <= len(self.host) - 1:
                return False
        elif host != self.host:
            return False
        return path.startswith(self.path[:-1]) if self.path.endswith("*") else path == self.path


def parse_route(raw: object, n: int) -> Route:
    """One `[[route]]` table; ConfigError naming the route and the key."""
    where = f"route {n}"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be a table")
    known = {"host", "path", "org", "app", "actions", "public_url", "access_host", "access_instance"}
    for key in raw:
        if key not in known:
            raise ConfigError(f"{where}: unknown key {key!r} (known: {', '.join(sorted(known))})")
    host, path, org = raw.get("host"), raw.get("path", "/*"), raw.get("org")
    if not isinstance(host, str) or not _HOST.fullmatch(host.lower()):
        raise ConfigError(f"{where}: host must be a host name, or *.suffix")
    if not isinstance(path, str) or not path.startswith("/") or "*" in path[:-1]:
        raise ConfigError(f"{where}: path must start with / and may end in * (a prefix)")
    try:
        if path != normalise_path(path.rstrip("*") or "/") + ("*" if path.endswith("*") else ""):
            raise ConfigError(f"{where}: path {path!r} is not in normal form (no //, dot segments or escapes)")
    except AmbiguousPath:
        raise ConfigError(f"{where}: path {path!r} is ambiguous") from None
    if not isinstance(org, str) or not NAME_RE.fullmatch(org):
        raise ConfigError(f"{where}: org is required (a name)")
    app = raw.get("app")
    if app is not None and (not isinstance(app, str) or not NAME_RE.fullmatch(app)):
        raise ConfigError(f"{where}: app must be a name")
    actions = raw.get("actions", DEFAULT_ACTIONS)
    if not isinstance(actions, dict) or not all(
            isinstance(m, str) and _METHOD.fullmatch(m) and isinstance(a, str) and len(a) == 1 and a in ACTION_LETTERS
            for m, a in actions.items()):
        raise ConfigError(f"{where}: actions maps METHOD = one of {ACTION_LETTERS}, e.g. {{ GET = \"r\" }}")
    public_url = raw.get("public_url")
    if public_url is not None:
        public_url = service_url(public_url, f"{where} public_url").rstrip("/")
    for key in ("access_host", "access_instance"):
        value = raw.get(key)
        if value is not None and (not isinstance(value, str) or not NAME_RE.fullmatch(value)):
            raise ConfigError(f"{where}: {key} must be a name")
    return Route(host.lower(), path, org, app, dict(actions), public_url, raw.get("access_host"),
                 raw.get("access_instance"))


def first_match(routes: tuple[Route, ...], host: str, path: str) -> Route | None:
    """The first route for this host (without its port) and normalised path."""
    host = host_without_port(host)
    return next((r for r in routes if r.matches(host, path)), None)
