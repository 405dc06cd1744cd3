"""Signing in through a real OpenID provider (panva's oidc-provider, run by node) in real
Chromium (SPEC §15): the discharger's button, the provider's own login and consent pages, and
back, signed in, at the page the sign-in started from."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import pytest

from clients import tokens
from discharger import providers
from discharger.app import create_app
from discharger.model import NewUser
from discharger.store import OrgPolicy
from server.audit import AuditRecord, Caller
from tests.support import free_port, sealed_ticket
from tests.support.oidc import provider_or_skip, settings


@pytest.fixture(scope="module")
def port():
    return free_port()


@pytest.fixture(scope="module")
def op(port):
    provider = provider_or_skip([f"http://127.0.0.1:{port}/login/idp/acme/callback"])
    yield provider
    provider.stop()


@pytest.fixture
async def discharger(aiohttp_server, discharger_config, port, op):
    dead = free_port()  # a second provider that cannot be reached
    tables = [settings(op.issuer, provisioning="auto",
                       memberships=[{"group": "acme-admins", "org": "acme", "role": "admin"},
                                    {"group": "acme-devs", "org": "acme", "role": "member"}]),
              settings(f"http://127.0.0.1:{dead}", name="gone")]
    config = dataclasses.replace(discharger_config, public_url=f"http://127.0.0.1:{port}",
                                 identity_providers=providers.parse(tables))
    server = await aiohttp_server(create_app(config), port=port)
    from discharger.app import DISCHARGER
    return f"http://127.0.0.1:{port}", server.app[DISCHARGER]


@pytest.fixture
def discharger_url(discharger):
    return discharger[0]


async def test_sign_in_with_the_provider_in_chromium(browser, shot, discharger_url):
    page = await browser.new_page()
    await page.goto(discharger_url + "/login?next=/device")
    assert await page.get_by_role("button", name="Sign in with Gone SSO").is_disabled()
    await shot(page, "login")
    await page.get_by_role("button", name="Sign in with Acme SSO").click()
    # The provider's own pages: its login form (any password, in development mode), then consent.
    await page.locator("input[name=login]").fill("alice")
    await page.locator("input[name=password]").fill("anything")
    await shot(page, "provider-login")
    await page.locator("button[type=submit]").click()
    await page.locator("button[type=submit]").click()  # consent: Continue
    await page.wait_for_url(discharger_url + "/device")
    text = await page.locator("body").inner_text()
    assert "Signed in as alice" in text and "idp:acme" in text
    await shot(page, "signed-in")
    cookies = {c["name"] for c in await page.context.cookies(discharger_url)}
    assert "sable_browser" in cookies and "sable_idp" not in cookies  # the sign-in's own cookie is gone


async def provider_sign_in(page, account):
    await page.locator("input[name=login]").fill(account)
    await page.locator("input[name=password]").fill("anything")
    await page.locator("button[type=submit]").click()
    await page.locator("button[type=submit]").click()  # consent


async def test_groups_make_an_admin_and_take_the_org_away_in_chromium(browser, shot, discharger):
    url, service = discharger
    page = await browser.new_page()
    await page.goto(url + "/login")
    await page.get_by_role("button", name="Sign in with Acme SSO").click()
    await provider_sign_in(page, "alice")  # groups: acme-admins
    await page.get_by_text("Signed in as alice").first.wait_for()
    assert (await service.store.get_user("alice")).roles == {"acme": "admin"}
    # carol is in no mapped group: given acme by hand, she loses it at her next sign-in.
    await page.context.clear_cookies()
    await page.goto(url + "/login")
    await page.get_by_role("button", name="Sign in with Acme SSO").click()
    await provider_sign_in(page, "carol")
    await page.get_by_text("Signed in as carol").first.wait_for()
    await service.store.set_orgs("carol", {"acme": "admin", "beta": "member"}, AuditRecord("user_orgs"))
    await page.context.clear_cookies()
    await page.goto(url + "/login")
    await page.get_by_role("button", name="Sign in with Acme SSO").click()
    await provider_sign_in(page, "carol")
    await page.get_by_text("Signed in as carol").first.wait_for()
    assert (await service.store.get_user("carol")).roles == {"beta": "member"}
    await shot(page, "carol")


async def test_an_org_that_requires_the_provider_refuses_a_password_session_in_chromium(browser, shot, discharger):
    url, service = discharger
    await service.users.create(NewUser("dave", "correct horse", {"acme": "member"}), Caller())
    await service.store.set_org_policy(OrgPolicy("acme", require_idp="acme"), AuditRecord("org_policy"))
    started = await service.flows.start(sealed_ticket(SimpleNamespace(service=service)), None, Caller())
    page = await browser.new_page()
    await page.goto(started.user_url)
    await page.get_by_label("Username").fill("dave")
    await page.get_by_label("Password").fill("correct horse")
    await page.get_by_role("button", name="Sign in", exact=True).click()
    await page.get_by_role("button", name="Approve").click()
    await page.get_by_text("requires signing in with identity provider").wait_for()
    await shot(page, "refused")
    poll_secret = started.poll_url.rsplit("/", 1)[1]
    assert (await service.store.get_grant("flow", lookup=tokens.secret_digest(poll_secret).hex())).status == "denied"
