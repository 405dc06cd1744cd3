"""The browser kit (`server.browser`): where a redirect may go, cookie names and flags, CSRF."""

from __future__ import annotations

import pytest
from aiohttp import web

from clients.errors import Denied
from discharger.pages import FOLDER
from server.browser import Pages, check_csrf, safe_next


@pytest.mark.parametrize("value", ["/", "/device?user_code=BCDF-GHJK", "/flows/abc", "/a/b?next=//x"])
def test_local_paths_are_kept(value):
    assert safe_next(value) == value


@pytest.mark.parametrize("value", [None, "", "//evil.test/", "/\\evil.test", "https://evil.test/", "javascript:alert(1)",
                                   "/a\\b", "/a\nb", "/a\tb", "evil", "/x:y/z", "/" + "a" * 3000])
def test_anything_else_goes_home(value):
    assert safe_next(value) == "/"


@pytest.mark.parametrize("secure, name, flags", [(False, "sable_browser", ""), (True, "__Host-sable_browser", "Secure")])
def test_cookies_are_host_only_httponly_lax_and_secure_under_https(secure, name, flags):
    pages = Pages(FOLDER, secure)
    resp = web.Response()
    pages.set_cookie(resp, "sable_browser", "v")
    morsel = resp.cookies[name]
    header = morsel.OutputString()
    assert "HttpOnly" in header and "SameSite=Lax" in header and "Path=/" in header
    assert "Domain" not in header  # host-only
    assert ("Secure" in header) == bool(flags)


def test_csrf_must_match():
    check_csrf("abc", {"csrf": "abc"})
    for form in ({}, {"csrf": "abd"}, {"csrf": ""}, None):
        with pytest.raises(Denied):
            check_csrf("abc", form)
