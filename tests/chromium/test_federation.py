"""Signing in through a real OpenID provider (panva's oidc-provider, run by node) in real
Chromium (SPEC §15): the discharger's button, the provider's own login and consent pages, and
back, signed in, at the page the sign-in started from."""

from __future__ import annotations

import dataclasses

import pytest

from discharger import providers
from discharger.app import create_app
from tests.support import free_port
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
async def discharger_url(aiohttp_server, discharger_config, port, op):
    dead = free_port()  # a second provider that cannot be reached
    tables = [settings(op.issuer, provisioning="auto",
                       memberships=[{"group": "acme-admins", "org": "acme", "role": "admin"}]),
              settings(f"http://127.0.0.1:{dead}", name="gone")]
    config = dataclasses.replace(discharger_config, public_url=f"http://127.0.0.1:{port}",
                                 identity_providers=providers.parse(tables))
    await aiohttp_server(create_app(config), port=port)
    return f"http://127.0.0.1:{port}"


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
