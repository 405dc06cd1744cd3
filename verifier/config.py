"""The verifier process's settings (SPEC §17): flags over SABLE_VERIFIER_<KEY> over the TOML
file (its top level or a `[verifier]` table, with `[[route]]` tables) over defaults."""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass

from clients.caveats import NAME_RE, parse_duration
from clients.errors import ConfigError
from clients.urls import service_url
from server.settings import as_list, picker, read_toml
from verifier.gateways import GATEWAYS
from verifier.routes import Route, parse_route

KEYS = frozenset({"authority", "listen", "gateway", "trusted_proxy", "host", "instance", "ttl", "stale_after",
                  "max_entries", "metrics_port", "metrics_host", "route"})
DEFAULT_LISTEN = "127.0.0.1:8702"
LOOPBACK = ("127.0.0.0/8", "::1/128")


@dataclass(frozen=True)
class VerifierConfig:
    authority: str
    routes: tuple[Route, ...] = ()
    listen_host: str = "127.0.0.1"
    listen_port: int = 8702
    gateway: str | None = None  # required for /v1/forward-auth
    trusted_proxies: tuple[str, ...] = LOOPBACK
    host: str | None = None  # fills access.host
    instance: str | None = None  # fills access.instance
    ttl: float = 60.0
    stale_after: float = 30.0
    max_entries: int = 100_000
    metrics_host: str | None = None
    metrics_port: int | None = None

    @property
    def url(self) -> str:
        host = f"[{self.listen_host}]" if ":" in self.listen_host else self.listen_host
        return f"http://{host}:{self.listen_port}"


def seconds(value: object, name: str) -> float:
    """A duration: a number of seconds, or a string with a unit (`3s`, `5m`)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return float(value)
    parsed = parse_duration(value) if isinstance(value, str) else None
    if parsed is None:
        raise ConfigError(f"{name} must be a duration: seconds, or a number with s, m, h or d (3s, 5m)")
    return float(parsed)


def _listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    try:
        number = int(port)
    except ValueError:
        number = -1
    if not sep or not host or not 1 <= number <= 65535:
        raise ConfigError("listen must be HOST:PORT, e.g. 127.0.0.1:8702")
    return host.strip("[]"), number


def load(config_path: str | None = None, **flags) -> VerifierConfig:
    section = read_toml(config_path, "verifier", KEYS)
    pick = picker({k: v for k, v in flags.items() if v is not None}, section, "SABLE_VERIFIER_")
    authority = pick("authority")
    if not authority:
        raise ConfigError("authority is required: the authority's URL (--authority, SABLE_VERIFIER_AUTHORITY, "
                          "or `authority` in the file)")
    gateway = pick("gateway")
    if gateway is not None and gateway not in GATEWAYS:
        raise ConfigError(f"gateway must be one of {', '.join(GATEWAYS)}")
    proxies = tuple(as_list(pick("trusted_proxy"))) or LOOPBACK
    for cidr in proxies:
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            raise ConfigError(f"trusted_proxy {cidr!r} is not an address or network") from None
    host, instance = pick("host") or socket.gethostname().split(".")[0], pick("instance")
    for name, value in (("host", host), ("instance", instance)):
        if value is not None and not NAME_RE.fullmatch(value):
            raise ConfigError(f"{name} must be a name ([A-Za-z0-9][A-Za-z0-9._:-]*)")
    raw_routes = section.get("route", [])
    if not isinstance(raw_routes, list):
        raise ConfigError("route must be [[route]] tables")
    listen_host, listen_port = _listen(str(pick("listen", DEFAULT_LISTEN)))
    max_entries = int(pick("max_entries", 100_000))
    if not 1 <= max_entries <= 10_000_000:
        raise ConfigError("max_entries must be from 1 to 10,000,000")
    metrics_port = pick("metrics_port")
    return VerifierConfig(
        authority=service_url(authority, "authority"),
        routes=tuple(parse_route(r, n) for n, r in enumerate(raw_routes, 1)),
        listen_host=listen_host, listen_port=listen_port, gateway=gateway, trusted_proxies=proxies,
        host=host, instance=instance,
        ttl=seconds(pick("ttl", 60), "ttl"), stale_after=seconds(pick("stale_after", 30), "stale_after"),
        max_entries=max_entries, metrics_host=pick("metrics_host"),
        metrics_port=int(metrics_port) if metrics_port else None,
    )
