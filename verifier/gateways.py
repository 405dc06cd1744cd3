"""What a gateway says about the request it is asking about (SPEC §17). Each gateway speaks
one header family; the verifier reads only the family of the gateway it is configured for,
each header exactly once, and only from a peer it trusts: anything else could be a client
writing its own answer to "which request is this?"."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

GATEWAYS = ("nginx", "caddy", "traefik", "envoy")
# (method, proto or None, host, uri): the headers each gateway sets on its auth request.
FAMILIES: dict[str, tuple[str, str | None, str, str]] = {
    "nginx": ("X-Original-Method", None, "X-Original-Host", "X-Original-URI"),
    "caddy": ("X-Forwarded-Method", "X-Forwarded-Proto", "X-Forwarded-Host", "X-Forwarded-Uri"),
    "traefik": ("X-Forwarded-Method", "X-Forwarded-Proto", "X-Forwarded-Host", "X-Forwarded-Uri"),
}
FORWARD_AUTH = "/v1/forward-auth"


class NotFromGateway(ValueError):
    """The request does not come from the configured gateway as it should."""


@dataclass(frozen=True, slots=True)
class Original:
    method: str
    host: str
    uri: str  # as the client sent it: path and query, not normalised


def _one(request: web.Request, name: str) -> str:
    values = request.headers.getall(name, [])
    if len(values) != 1 or not values[0] or len(values[0]) > 8192:
        raise NotFromGateway(f"{name} must be given once")
    return values[0]


def original_request(request: web.Request, gateway: str) -> Original:
    """The gateway's account of the original request; NotFromGateway if it is incomplete."""
    if gateway == "envoy":
        # ext_authz's HTTP service: the original method, the original path after our prefix
        # (`path_prefix: /v1/forward-auth`), and the original Host.
        uri = request.raw_path[len(FORWARD_AUTH):] or "/"
        return Original(request.method, _one(request, "Host"), uri)
    method, _, host, uri = FAMILIES[gateway]
    return Original(_one(request, method).upper(), _one(request, host), _one(request, uri))
