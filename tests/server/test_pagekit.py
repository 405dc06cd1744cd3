"""The browser kit (`server.pagekit`): where a redirect may go, cookie names and flags, CSRF."""

from __future__ import annotations

import pytest
from aiohttp import web

from clients.errors import Forbidden
from discharger.pages import FOLDER
from server.pagekit import Pages, check_csrf, safe_next


@pytest.mark.parametrize("value", ["/", "/device?user_code=BCDF-GHJK", "/flows/abc", "/a/b?next=//x"])
def test_local_paths_are_kept(value):
    assert safe_next(value) == value


@pytest.mark.parametrize("value", [None, "", "//evil.test/", "/\\evil.test", "https://evil.test/", "javascript:alert(1)",
                                   "/a\\b", "/a\nb", "/a\tb", "evil", "/x:y/z", "/" + "a" * 3000])
def test_anything_else_goes_home(value):
    assert safe_next(value) == "/"


@pytest.mark.parametrize("secure, proto, trusted, name", [
    (False, None, (), "sable_browser"), (True, None, (), "__Host-sable_browser"),
    (False, "https", ("127.0.0.1/32",), "__Host-sable_browser"),  # behind a trusted TLS-terminating proxy
    (False, "https", (), "sable_browser"),  # the same header from anyone else is ignored
])
async def test_cookies_are_host_only_httponly_lax_and_secure_under_https(aiohttp_client, secure, proto, trusted, name):
    from server.http import TRUSTED_PROXIES, parse_networks

    pages = Pages(FOLDER, secure)
    app = web.Application()
    app[TRUSTED_PROXIES] = parse_networks(trusted)

    async def set_it(request):
        resp = web.Response()
        pages.set_cookie(request, resp, "sable_browser", "v")
        return resp
    app.router.add_get("/", set_it)
    client = await aiohttp_client(app)
    resp = await client.get("/", headers={"X-Forwarded-Proto": proto} if proto else {})
    header = resp.headers["Set-Cookie"]
    assert header.startswith(f"{name}=v")
    assert "HttpOnly" in header and "SameSite=Lax" in header and "Path=/" in header
    assert "Domain" not in header  # host-only
    assert ("Secure" in header) == name.startswith("__Host-")


def test_csrf_must_match():
    check_csrf("abc", {"csrf": "abc"})
    for form in ({}, {"csrf": "abd"}, {"csrf": ""}, None):
        with pytest.raises(Forbidden):
            check_csrf("abc", form)
