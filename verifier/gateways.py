"""What a gateway says about the request it is asking about (SPEC §17). Each gateway speaks
one header family; the verifier reads only the family of the gateway it is configured for,
each header exactly once, and only from a peer it trusts: anything else could be a client
writing its own answer to "which request is this?"."""

from __future__ import annotations

from aiohttp import web

GATEWAYS = ("nginx", "caddy", "traefik", "envoy")
# (method, proto or None, host, uri): the headers each gateway sets on its auth request.
FAMILIES: dict[str, tuple[str, str | None, str, str]] = {
    "nginx": ("X-Original-Method", None, "X-Original-Host", "X-Original-URI"),
    "caddy": ("X-Forwarded-Method", "X-Forwarded-Proto", "X-Forwarded-Host", "X-Forwarded-Uri"),
    "traefik": ("X-Forwarded-Method", "X-Forwarded-Proto", "X-Forwarded-Host", "X-Forwarded-Uri"),
}
FORWARD_AUTH = "/v1/forward-auth"


# The headers each family must carry exactly once, method, host and URI first.
_REQUIRED = {gateway: (m, h, u, *((p,) if p else ())) for gateway, (m, p, h, u) in FAMILIES.items()}


def original_request(request: web.BaseRequest, gateway: str) -> tuple[str, str, str] | None:
    """(method, host, uri) of the original request as the gateway gives them; None if a header
    of its family is missing, repeated, empty or longer than 8 KiB."""
    headers = request.headers
    if gateway == "envoy":
        # ext_authz's HTTP service: the original method, the original path after our prefix
        # (`path_prefix: /v1/forward-auth`), and the original Host.
        hosts = headers.getall("Host", ())
        if len(hosts) != 1 or not hosts[0] or len(hosts[0]) > 8192:
            return None
        return request.method, hosts[0], request.raw_path[len(FORWARD_AUTH):] or "/"
    given = []
    for name in _REQUIRED[gateway]:
        values = headers.getall(name, ())
        if len(values) != 1 or not values[0] or len(values[0]) > 8192:
            return None
        given.append(values[0])
    return given[0].upper(), given[1], given[2]
