"""The guard on requests to configured URLs (SPEC §18's SSRF rules), on its own: which
addresses are inside, which URLs may be configured, and names resolving inside refused at
connection time. Deliveries through it: tests/authority/test_webhooks.py."""

from __future__ import annotations

import pytest

from clients.errors import BadRequest
from server.egress import GuardedResolver, Refused, check_url, private


@pytest.mark.parametrize("address", ["127.0.0.1", "127.1.2.3", "10.0.0.1", "172.16.5.4", "192.168.1.1", "100.64.0.1",
                                     "169.254.169.254", "0.0.0.0", "224.0.0.1", "::1", "::", "fe80::1", "fd00::1",
                                     "ff02::1", "::ffff:10.0.0.1", "::ffff:127.0.0.1", "::127.0.0.1", "garbage",
                                     "2002:a00:1::", "2002:7f00:1::1", "2001:0:4136:e378:8000:63bf:f5ff:fffe",
                                     "fe80::1%eth0", "fd00::1%2"])
def test_inside_addresses(address):
    assert private(address)


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700::1111", "::ffff:8.8.8.8"])
def test_outside_addresses(address):
    assert not private(address)


def test_urls_that_may_be_configured():
    assert check_url("https://hooks.example.com/sable", allow_private=False)
    assert check_url("http://127.0.0.1:9000/hook", allow_private=True)  # loopback http, when allowed
    for url, allowed in (("http://hooks.example.com/", True), ("http://10.0.0.1/", True),
                         ("https://10.0.0.1/", False), ("https://localhost/", False), ("https://[::1]/", False),
                         ("https://a:b@hooks.example.com/", True), ("https:///nohost", True),
                         ("https://hooks.example.com:99999/", True),
                         # yarl folds these into 127.0.0.1 and 10.0.0.1: refused as not ASCII
                         ("https://127\u30020\u30020\u30021:1/", False), ("https://\uff11\uff10.0.0.1/", False),
                         ("https://a..example.com/", False), ("https://" + "a" * 64 + ".example.com/", False),
                         ("https://hooks.example.com/a b", False), ("https://hooks.example.com/\x00", False)):
        with pytest.raises(BadRequest):
            check_url(url, allow_private=allowed)


async def test_a_name_resolving_inside_is_refused_when_connecting():
    with pytest.raises(Refused):
        await GuardedResolver(allow_private=False).resolve("localhost", 443)
    found = await GuardedResolver(allow_private=True).resolve("localhost", 443)
    assert found and all(private(r["host"]) for r in found)


@pytest.mark.parametrize("url,message", [
    ("https://user@hooks.example.com/", "user name or password"),
    ("https://u:p@hooks.example.com/", "user name or password"),
    ("http://hooks.example.com/", "must be https"),
    ("https://10.0.0.1/", "address is private"),
    ("https://localhost/", "host is loopback"),
    ("https://hooks.example.com/\u00e9", "must be ASCII"),
    ("https:///x", "needs a host"),
    ("https://hooks.example.com/" + "a" * 2048, "at most 2,048"),
    ("https://a..example.com/", "not a valid URL"),
])
def test_a_refused_url_says_which_rule(url, message):
    with pytest.raises(BadRequest, match=message):
        check_url(url, allow_private=False)


def test_a_url_of_exactly_the_longest_length_is_allowed():
    url = "https://hooks.example.com/" + "a" * (2048 - len("https://hooks.example.com/"))
    assert check_url(url, allow_private=False) == url
