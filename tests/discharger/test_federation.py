"""Signing in through a real OpenID provider (SPEC §15): panva's oidc-provider, run by node on
loopback, in front of the real discharger on both backends. The provider's login and consent
forms are answered over HTTP here; tests/chromium/test_federation.py clicks through them."""

from __future__ import annotations

import dataclasses

import aiohttp
import pytest

from discharger import providers
from discharger.app import create_app
from tests.support import free_port
from tests.support.oidc import provider_or_skip, query_of, settings, sign_in_at_provider

RULES = [{"group": "acme-admins", "org": "acme", "role": "admin"},
         {"group": "acme-devs", "org": "acme", "role": "member"},
         {"group": "dev", "org": "dev", "role": "member"}]


@pytest.fixture(scope="module")
def port():
    return free_port()


@pytest.fixture(scope="module")
def op(port):
    provider = provider_or_skip([f"http://127.0.0.1:{port}/login/idp/{name}/callback" for name in ("acme", "other")])
    yield provider
    provider.stop()


class Federated:
    """The discharger (on `port`, the provider's registered redirect) and a browser-like client."""

    def __init__(self, server, config, op, admin):
        self.server = server
        self.config = config
        self.op = op
        self.base = f"http://127.0.0.1:{server.port}"
        self.admin = admin
        self.http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))

    @property
    def service(self):
        from discharger.app import DISCHARGER
        return self.server.app[DISCHARGER]

    async def api(self, method, path, body=None):
        async with self.http.request(method, self.base + path, json=body, headers=self.admin) as r:
            return r.status, await r.json()

    async def start(self, name="acme", next_path="/"):
        r = await self.http.get(f"{self.base}/login/idp/{name}", params={"next": next_path}, allow_redirects=False)
        assert r.status == 302, await r.text()
        return r.headers["Location"]

    async def callback_url(self, account, name="acme", next_path="/"):
        self.http.cookie_jar.clear()  # a fresh browser: the provider remembers who signed in last
        location = await self.start(name, next_path)
        return await sign_in_at_provider(self.http, location, account, f"{self.base}/login/idp/")

    async def sign_in(self, account, name="acme", next_path="/"):
        """(status, body text, Location) of the callback, after signing in at the provider."""
        url = await self.callback_url(account, name, next_path)
        async with self.http.get(url, allow_redirects=False) as r:
            return r.status, await r.text(), r.headers.get("Location")

    async def home(self):
        async with self.http.get(self.base + "/") as r:
            return await r.text()

    def browser_cookie(self):
        return next((c.value for c in self.http.cookie_jar if c.key == "sable_browser"), None)

    async def signed_in(self):
        """Who this browser is signed in as, if anyone."""
        found = await self.service.browser.signed_in(self.browser_cookie())
        return found.username if found else None

    async def audit(self, event):
        return await self.service.store.audit_rows(event)


@pytest.fixture(scope="module")
def op2(port):
    """A second provider (its own issuer, the same account names)."""
    provider = provider_or_skip([f"http://127.0.0.1:{port}/login/idp/other/callback"])
    yield provider
    provider.stop()


@pytest.fixture
async def federated(aiohttp_server, discharger_config, admin_token, port, op):
    made = []

    async def make(also=None, **extra):
        tables = [settings(op.issuer, memberships=RULES, **extra)] + ([also] if also else [])
        config = dataclasses.replace(discharger_config, public_url=f"http://127.0.0.1:{port}",
                                     identity_providers=providers.parse(tables))
        server = await aiohttp_server(create_app(config), port=port)
        env = Federated(server, config, op, {"Authorization": f"Bearer {admin_token}"})
        made.append(env)
        return env
    yield make
    for env in made:
        await env.http.close()


async def test_a_linked_user_signs_in_and_the_session_says_how(federated):
    env = await federated()
    status, body = await env.api("POST", "/v1/users", {"username": "alice", "password": "correct horse"})
    assert status == 201
    status, body = await env.api("POST", "/v1/users/alice/links", {"idp": "acme", "sub": "alice"})
    assert status == 201 and body == {"links": [{"idp": "acme", "issuer": env.op.issuer, "sub": "alice"}]}
    status, _, location = await env.sign_in("alice", next_path="/device")
    assert (status, location) == (303, "/device")
    assert "alice" in await env.home() and "idp:acme" in await env.home()
    found = await env.service.browser.signed_in(env.browser_cookie())
    assert (found.username, found.auth_method) == ("alice", "idp:acme")
    (row,) = await env.audit("idp_login")
    assert row.outcome == "ok" and row.user == "alice" and row.detail["sub"] == "alice"
    # Its groups were applied to the orgs the rules name.
    status, body = await env.api("GET", "/v1/users/alice")
    assert body["roles"] == {"acme": "admin", "dev": "member"}


async def test_an_unlinked_identity_is_refused_and_no_claim_matches_a_user(federated):
    env = await federated()
    await env.api("POST", "/v1/users", {"username": "alice", "password": "correct horse"})  # same name, no link
    status, body, _ = await env.sign_in("alice")
    assert status == 403 and "ask an administrator to link this account" in body
    assert await env.signed_in() is None
    (row,) = await env.audit("idp_login")
    assert row.outcome == "failed" and row.detail["reason"] == "not_linked" and row.user is None


async def test_a_user_made_for_the_provider_is_linked_at_first_sign_in_and_only_once(federated):
    env = await federated()
    status, body = await env.api("POST", "/v1/users", {"username": "alice", "idp": "acme"})
    assert status == 201
    status, _, _ = await env.sign_in("alice")
    assert status == 303
    status, body = await env.api("GET", "/v1/users/alice/links")
    assert body["links"] == [{"idp": "acme", "issuer": env.op.issuer, "sub": "alice"}]
    # Another identity claiming the same name does not get in: alice is found only by her link.
    status, body, _ = await env.sign_in("mallory")
    assert status == 403 and "link" in body
    # A provider's user has no password that works.
    async with env.http.post(env.base + "/v1/sessions", json={"username": "alice", "password": ""}) as r:
        assert r.status in (400, 401)


async def test_auto_provisioning_makes_users_by_their_claim_and_refuses_bad_or_taken_names(federated):
    env = await federated(provisioning="auto")
    status, _, _ = await env.sign_in("bob")
    assert status == 303
    status, body = await env.api("GET", "/v1/users/bob")
    assert status == 200 and body["roles"] == {"acme": "member"}
    status, body, _ = await env.sign_in("eve")  # preferred_username "ci:eve"
    assert status == 403 and "no &#39;:&#39;" in body
    await env.api("POST", "/v1/users", {"username": "alice", "password": "correct horse"})
    status, body, _ = await env.sign_in("alice")  # names an existing password user
    assert status == 403 and "exists already" in body
    reasons = [r.detail["reason"] for r in await env.audit("idp_login") if r.outcome == "failed"]
    assert reasons == ["bad_username", "name_taken"]


async def test_memberships_follow_the_groups_at_every_sign_in_for_the_mapped_orgs_only(federated):
    env = await federated(provisioning="auto")
    await env.sign_in("carol")  # groups: []
    await env.api("POST", "/v1/users/carol/orgs", {"orgs": [{"org": "acme", "role": "admin"}, "beta"]})
    await env.sign_in("carol")
    status, body = await env.api("GET", "/v1/users/carol")
    assert body["roles"] == {"beta": "member"}  # acme removed (mapped, no group); beta is not the rules'
    await env.sign_in("dave")  # no groups claim: nothing changes, and the audit says so
    await env.api("POST", "/v1/users/dave/orgs", {"orgs": ["acme"]})
    await env.sign_in("dave")
    assert (await env.api("GET", "/v1/users/dave"))[1]["roles"] == {"acme": "member"}
    assert any(r.user == "dave" and r.outcome == "unchanged" for r in await env.audit("user_orgs"))


async def test_a_callback_is_taken_once_even_with_its_cookie_put_back(federated):
    env = await federated(provisioning="auto")
    url = await env.callback_url("bob")
    held = next(c.value for c in env.http.cookie_jar if c.key == "sable_idp")
    async with env.http.get(url, allow_redirects=False) as r:
        assert r.status == 303
    env.http.cookie_jar.update_cookies({"sable_idp": held}, aiohttp.client.URL(env.base))
    async with env.http.get(url, allow_redirects=False) as r:
        assert r.status == 403 and "already completed" in await r.text()


@pytest.mark.parametrize("change, reason", [("state", "state_mismatch"), ("iss", "iss_mismatch"),
                                            ("cookie", "no_state_cookie"), ("provider", "provider_mismatch"),
                                            ("error", "provider:access_denied")])
async def test_a_callback_that_does_not_match_its_sign_in_is_refused(federated, change, reason):
    env = await federated(provisioning="auto")
    url = await env.callback_url("bob")
    base, _, _ = url.partition("?")
    query = query_of(url)
    if change == "state":
        query["state"] = "x" * 43
    elif change == "iss":
        query["iss"] = "http://127.0.0.1:1"
    elif change == "cookie":
        env.http.cookie_jar.clear(lambda c: c.key == "sable_idp")
    elif change == "provider":
        base = f"{env.base}/login/idp/other/callback"
    elif change == "error":
        query = {"error": "access_denied", "state": query["state"]}
    async with env.http.get(base, params=query, allow_redirects=False) as r:
        status, text = r.status, await r.text()
    assert status in (403, 404) and "Sign-in failed" in text or status == 404
    assert await env.signed_in() is None
    assert (await env.api("GET", "/v1/users/bob"))[0] == 404  # nobody was made


async def test_every_algorithm_the_provider_signs_with(federated):
    for client_id in ("sable-es", "sable-ed"):
        env = await federated(provisioning="auto", client_id=client_id)
        status, _, _ = await env.sign_in("bob")
        assert status == 303, client_id
        await env.server.close()


async def test_a_disabled_user_is_refused(federated):
    env = await federated(provisioning="auto")
    await env.sign_in("bob")
    await env.api("POST", "/v1/users/bob/disable", {})
    status, body, _ = await env.sign_in("bob")
    assert status == 403 and "disabled" in body


async def test_a_device_approved_from_a_federated_browser_gets_a_session_that_says_so(federated):
    env = await federated(provisioning="auto")
    async with env.http.post(env.base + "/v1/device/authorize", json={"client_name": "cli"}) as r:
        grant = await r.json()
    await env.sign_in("bob")
    async with env.http.get(env.base + "/device", params={"user_code": grant["user_code"]}) as r:
        page = await r.text()
    import re
    csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
    shown = re.search(r'name="shown" value="([^"]*)"', page).group(1)  # the client this page showed
    async with env.http.post(env.base + "/device", data={"csrf": csrf, "user_code": grant["user_code"],
                                                         "action": "approve", "shown": shown}) as r:
        assert r.status == 200, await r.text()
    async with env.http.post(env.base + "/v1/device/token", json={"device_code": grant["device_code"]}) as r:
        body = await r.json()
    assert body["username"] == "bob" and body["auth_method"] == "idp:acme"


async def test_an_unknown_or_unreachable_provider_is_a_page_and_the_discharger_still_starts(
        aiohttp_server, discharger_config, port, op):
    dead = free_port()
    tables = [settings(f"http://127.0.0.1:{dead}", name="gone")]
    config = dataclasses.replace(discharger_config, public_url=f"http://127.0.0.1:{port}",
                                 identity_providers=providers.parse(tables))
    server = await aiohttp_server(create_app(config), port=port)
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{port}/login") as r:
            page = await r.text()
        assert r.status == 200 and "Sign in with Gone SSO" in page and "unavailable" in page
        async with http.get(f"http://127.0.0.1:{port}/login/idp/gone", allow_redirects=False) as r:
            assert r.status == 503 and "unavailable" in await r.text()
        async with http.get(f"http://127.0.0.1:{port}/login/idp/nope", allow_redirects=False) as r:
            assert r.status == 404
    await server.close()


async def test_a_signed_in_user_links_an_identity_after_re_entering_the_password(federated):
    import re

    env = await federated()
    await env.api("POST", "/v1/users", {"username": "alice", "password": "correct horse"})
    env.http.cookie_jar.clear()

    async def csrf(path):
        async with env.http.get(env.base + path) as r:
            return re.search(r'name="csrf" value="([^"]+)"', await r.text()).group(1)

    await env.http.post(env.base + "/login", data={"csrf": await csrf("/login"), "username": "alice",
                                                   "password": "correct horse", "next": "/"})
    assert await env.signed_in() == "alice"
    token = await csrf("/account/security")
    async with env.http.post(env.base + "/account/security/link/acme", data={"csrf": token, "password": "wrong"},
                             allow_redirects=False) as r:
        assert r.status == 401  # the password again, or nothing
    async with env.http.post(env.base + "/account/security/link/acme",
                             data={"csrf": token, "password": "correct horse"}, allow_redirects=False) as r:
        assert r.status == 302
        location = r.headers["Location"]
    callback = await sign_in_at_provider(env.http, location, "alice", f"{env.base}/login/idp/")
    async with env.http.get(callback, allow_redirects=False) as r:
        assert (r.status, r.headers["Location"]) == (303, "/account/security?linked=1")
    assert (await env.api("GET", "/v1/users/alice/links"))[1]["links"][0]["sub"] == "alice"
    # Now the provider signs her in.
    status, _, _ = await env.sign_in("alice")
    assert status == 303 and await env.signed_in() == "alice"


async def test_the_same_name_at_another_provider_is_another_identity(federated, op2):
    env = await federated(also=settings(op2.issuer, name="other", provisioning="existing"))
    await env.api("POST", "/v1/users", {"username": "alice", "password": "correct horse"})
    await env.api("POST", "/v1/users/alice/links", {"idp": "acme", "sub": "alice"})
    status, _, _ = await env.sign_in("alice")
    assert status == 303 and await env.signed_in() == "alice"
    status, body, _ = await env.sign_in("alice", name="other")  # sub "alice" too, but another issuer
    assert status == 403 and "ask an administrator to link this account" in body
    assert await env.signed_in() is None


async def test_a_provider_users_empty_password_matches_nothing_not_even_the_dummy(federated):
    """A user made for a provider has no password: the hash checked in its place (so timing
    says nothing) must not let its own password in."""
    env = await federated()
    await env.api("POST", "/v1/users", {"username": "carol", "idp": "acme"})
    for password in ("sable-dummy-password", "", "x"):
        async with env.http.post(env.base + "/v1/sessions", json={"username": "carol", "password": password}) as r:
            assert r.status == 401, password


async def test_answers_without_a_sign_in_are_limited_per_address(federated):
    env = await federated()
    statuses = []
    for _ in range(61):
        async with env.http.get(env.base + "/login/idp/acme/callback?state=x&code=y", allow_redirects=False) as r:
            statuses.append(r.status)
    assert statuses[:60] == [403] * 60 and statuses[60] == 429
    assert len(await env.audit("idp_login")) == 60  # the flood writes no more rows
