"""Path normalisation and route matching (SPEC §17): every spelling of a path that an upstream
reads as /admin must match /admin's route, and a spelling upstreams disagree about is refused."""

from __future__ import annotations

import pytest

from clients.errors import ConfigError
from verifier.routes import AmbiguousPath, first_match, host_without_port, normalise_path, parse_route


@pytest.mark.parametrize("uri, path", [
    ("/orders", "/orders"),
    ("/orders?id=1", "/orders"),
    ("/orders#x", "/orders"),
    ("/a/./b", "/a/b"),
    ("/a/b/../c", "/a/c"),
    ("/public/../admin", "/admin"),
    ("/public/%2e%2e/admin", "/admin"),
    ("/public/%2E%2e/admin", "/admin"),
    ("/public/.%2e/admin", "/admin"),
    ("//admin", "/admin"),
    ("/public//../admin", "/admin"),
    ("/%61dmin", "/admin"),
    ("/a/%7Euser", "/a/~user"),
    ("/a/%20b", "/a/%20b"),  # reserved or other escapes stay escaped (upper case)
    ("/a/%3a", "/a/%3A"),
    ("/..", "/"),
    ("/a/..", "/"),
    ("/a/.", "/a/"),
])
def test_normal_form(uri, path):
    assert normalise_path(uri) == path


@pytest.mark.parametrize("uri", ["/a%2fb", "/a%2Fb", "/a%5cb", "/a\\b", "/a%00b", "/a\x00b", "/a..b", "admin",
                                 "http://evil/admin", "", "/" + "a" * 9000])
def test_ambiguous_paths_are_refused(uri):
    with pytest.raises(AmbiguousPath):
        normalise_path(uri)


def routes(*tables):
    return tuple(parse_route(t, n) for n, t in enumerate(tables, 1))


def test_first_match_by_host_and_path():
    table = routes({"host": "api.example.com", "path": "/admin*", "org": "acme", "app": "admin"},
                   {"host": "*.example.com", "path": "/*", "org": "acme", "app": "web"},
                   {"host": "exact.test", "path": "/health", "org": "acme"})
    assert first_match(table, "API.example.com:443", "/admin/users").app == "admin"
    assert first_match(table, "api.example.com", "/other").app == "web"
    assert first_match(table, "a.b.example.com", "/x").app == "web"
    assert first_match(table, "example.com", "/x") is None  # *.suffix is not the apex
    assert first_match(table, "evil-example.com", "/x") is None
    assert first_match(table, "exact.test", "/health").org == "acme"
    assert first_match(table, "exact.test", "/health/x") is None  # exact path
    assert first_match(table, "[::1]:8080", "/") is None
    assert host_without_port("[::1]:8080") == "[::1]" and host_without_port("h:80") == "h"


@pytest.mark.parametrize("table, why", [
    ({"path": "/*", "org": "acme"}, "host"),
    ({"host": "a b", "org": "acme"}, "host"),
    ({"host": "h", "path": "/*", "org": "acme", "colour": "red"}, "unknown key"),
    ({"host": "h", "path": "admin", "org": "acme"}, "path"),
    ({"host": "h", "path": "/a*b", "org": "acme"}, "path"),
    ({"host": "h", "path": "/a/../b", "org": "acme"}, "normal form"),
    ({"host": "h", "path": "//a", "org": "acme"}, "normal form"),
    ({"host": "h", "path": "/*"}, "org"),
    ({"host": "h", "path": "/*", "org": "acme", "actions": {"GET": "x"}}, "actions"),
    ({"host": "h", "path": "/*", "org": "acme", "actions": {"get": "r"}}, "actions"),
    ({"host": "h", "path": "/*", "org": "acme", "public_url": "https://u:p@h"}, "public_url"),
])
def test_bad_routes_are_named(table, why):
    with pytest.raises(ConfigError) as e:
        parse_route(table, 3)
    assert "route 3" in str(e.value) and why in str(e.value)
