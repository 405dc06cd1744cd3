"""Requests to URLs that users configure (webhooks, SPEC §18), guarded against reaching
inside: the host is resolved at every connection and only checked addresses are dialled.

Refused unless private targets are allowed: loopback, RFC 1918, CGNAT, link-local, ULA,
unspecified, multicast, reserved, and IPv4-mapped or -compatible forms of these. `https`
only; with private targets allowed, `http` too for a loopback host. Redirects are never
followed (the caller passes `allow_redirects=False`; a 3xx is a failed delivery).
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from clients.errors import BadRequest

CGNAT = ipaddress.ip_network("100.64.0.0/10")
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})


class Refused(Exception):
    """The target is not one this service may reach. Its message names the rule, not the URL."""


def private(address: str) -> bool:
    """Whether an address is inside (any of the ranges above)."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return True  # not an address we understand: treat it as inside
    if isinstance(ip, ipaddress.IPv6Address):
        # IPv4 inside IPv6: mapped, compatible (::a.b.c.d), 6to4 (2002::/16) and Teredo
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None) or \
            (ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF) if int(ip) >> 32 == 0 else None)
        if embedded is not None:
            if private(str(embedded)):
                return True
            ip = embedded
    return (ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_multicast or ip.is_unspecified
            or ip.is_reserved or (isinstance(ip, ipaddress.IPv4Address) and ip in CGNAT))


def check_url(url: str, allow_private: bool) -> str:
    """The URL if it may be configured as a target; BadRequest naming the rule otherwise."""
    if not url.isascii() or any(ord(ch) < 33 or ord(ch) == 127 for ch in url):
        # aiohttp (yarl) folds full-width digits and ideographic dots into ASCII ones: a
        # non-ASCII host could be read here as a name and dialled there as an address.
        raise BadRequest("the URL must be ASCII, without spaces or control characters (punycode for names)")
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        parts.port  # noqa: B018  # a bad port raises here
        if host and not _literal(host):
            host.encode("idna")  # a label too long or empty fails here, not at every delivery
    except (ValueError, UnicodeError):
        raise BadRequest("the URL is not a valid URL") from None
    if parts.username is not None or parts.password is not None:
        raise BadRequest("the URL holds a user name or password: put no credentials in it")
    if not host or len(url) > 2048:
        raise BadRequest("the URL needs a host (and at most 2,048 characters)")
    loopback = host in LOOPBACK_NAMES
    if parts.scheme != "https" and not (parts.scheme == "http" and allow_private and loopback):
        raise BadRequest("the URL must be https (http only for a loopback host, with webhook_allow_private)")
    if not allow_private and _literal(host) and private(host):
        raise BadRequest("the URL's address is private, loopback or link-local (webhook_allow_private is off)")
    if not allow_private and loopback:
        raise BadRequest("the URL's host is loopback (webhook_allow_private is off)")
    return url


def _literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
        return True
    except ValueError:
        return False


class GuardedResolver(AbstractResolver):
    """Resolves with the system resolver and refuses a name with any inside address, so the
    address dialled is always one that was checked (no second lookup to rebind)."""

    def __init__(self, allow_private: bool):
        self.allow_private = allow_private
        self._inner = aiohttp.ThreadedResolver()

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        if not self.allow_private and any(private(r["host"]) for r in found):
            raise Refused("the target resolves to a private, loopback or link-local address")
        return found

    async def close(self) -> None:
        await self._inner.close()


def guarded_session(allow_private: bool, **kwargs: Any) -> aiohttp.ClientSession:
    """A client whose every connection goes to a checked address; no cookies carried over."""
    connector = aiohttp.TCPConnector(resolver=GuardedResolver(allow_private), use_dns_cache=False)
    return aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar(), **kwargs)


def check_target(url: str, allow_private: bool) -> None:
    """At every delivery: the URL's rules again, and a literal address checked (aiohttp does
    not resolve those, so the resolver never sees them). Refused if not allowed."""
    try:
        check_url(url, allow_private)
    except BadRequest as e:
        raise Refused(e.message) from None
