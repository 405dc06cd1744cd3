"""Passkeys in real Chromium (SPEC §15) through its DevTools virtual authenticator: added at
/account/security, then signing in alone ("Sign in with a passkey", no username) and as the
second factor after a password; an authenticator that fails user verification is refused.
The relying party id is the public URL's host: `localhost`, since an IP address cannot be one."""

from __future__ import annotations

import pytest

from discharger.app import create_app
from discharger.config import DischargerConfig
from tests.support import free_port

PASSWORD = "correct horse"


@pytest.fixture
async def discharger(aiohttp_server, db_location, admin_token):
    import aiohttp

    port = free_port()
    url = f"http://localhost:{port}"
    config = DischargerConfig(db_path=db_location("discharger"), master_key=bytes.fromhex("66" * 32),
                              public_url=url, admin_token=admin_token)
    server = await aiohttp_server(create_app(config), host="127.0.0.1", port=port)
    async with aiohttp.ClientSession() as http:
        async with http.post(f"http://127.0.0.1:{port}/v1/users", headers={"Authorization": f"Bearer {admin_token}"},
                             json={"username": "alice", "password": PASSWORD, "orgs": ["acme"]}) as r:
            assert r.status == 201
    from discharger.app import DISCHARGER
    return url, server.app[DISCHARGER]


async def authenticator(page, verified: bool = True) -> tuple:
    cdp = await page.context.new_cdp_session(page)
    await cdp.send("WebAuthn.enable", {"enableUI": False})
    made = await cdp.send("WebAuthn.addVirtualAuthenticator", {"options": {
        "protocol": "ctap2", "transport": "internal", "hasResidentKey": True, "hasUserVerification": True,
        "isUserVerified": verified, "automaticPresenceSimulation": True}})
    return cdp, made["authenticatorId"]


async def sign_in_with_password(page, url):
    await page.goto(url + "/login")
    await page.get_by_label("Username").fill("alice")
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in", exact=True).click()


async def test_add_a_passkey_then_sign_in_with_it_alone_and_as_a_second_factor(browser, shot, discharger):
    url, service = discharger
    page = await browser.new_page()
    cdp, auth_id = await authenticator(page)
    await sign_in_with_password(page, url)
    await page.get_by_text("Signed in as alice").first.wait_for()
    await page.goto(url + "/account/security")
    await page.get_by_label("Password, to add a passkey").fill(PASSWORD)
    await page.get_by_role("button", name="Add a passkey").click()
    await page.get_by_text("Passkey added.").wait_for()
    await shot(page, "1-added")
    assert len(await service.store.passkeys_of("alice")) == 1
    held = await cdp.send("WebAuthn.getCredentials", {"authenticatorId": auth_id})
    assert held["credentials"][0]["isResidentCredential"] is True

    # Alone: no username asked.
    await page.context.clear_cookies()
    await page.goto(url + "/login?next=/device")
    await page.get_by_role("button", name="Sign in with a passkey").click()
    await page.wait_for_url(url + "/device")
    assert "(passkey)" in await page.locator(".bar").inner_text()
    await shot(page, "2-passkey-alone")

    # After a password, the passkey is the second factor.
    await page.context.clear_cookies()
    await sign_in_with_password(page, url)
    await page.get_by_label("Code").wait_for()
    await page.get_by_role("button", name="Use a passkey").click()
    await page.get_by_text("Signed in as alice").first.wait_for()
    assert "(password+passkey)" in await page.locator(".bar").inner_text()
    await shot(page, "3-second-factor")

    # An authenticator that cannot verify its user signs nobody in.
    await cdp.send("WebAuthn.setUserVerified", {"authenticatorId": auth_id, "isUserVerified": False})
    await page.context.clear_cookies()
    await page.goto(url + "/login")
    await page.get_by_role("button", name="Sign in with a passkey").click()
    await page.locator("#passkey-error").wait_for(state="visible")
    assert (await page.locator("#passkey-error").inner_text()).startswith("The passkey was not used")
    assert await service.browser.signed_in(next((c["value"] for c in await page.context.cookies()
                                                 if c["name"] == "sable_browser"), None)) is None
    await shot(page, "4-refused")


async def test_an_assertion_signs_in_once(browser, discharger):
    url, service = discharger
    page = await browser.new_page()
    await authenticator(page)
    await sign_in_with_password(page, url)
    await page.goto(url + "/account/security")
    await page.get_by_label("Password, to add a passkey").fill(PASSWORD)
    await page.get_by_role("button", name="Add a passkey").click()
    await page.get_by_text("Passkey added.").wait_for()
    await page.goto(url + "/login")
    made = await page.evaluate("""async () => {
      const csrf = document.getElementById("passkey-sign-in").dataset.csrf;
      const options = await sablePost("/login/passkey/options", {csrf});
      const credential = (await navigator.credentials.get(
        {publicKey: PublicKeyCredential.parseRequestOptionsFromJSON(options)})).toJSON();
      return {csrf, credential};
    }""")
    ceremony = [c for c in await page.context.cookies() if c["name"] == "sable_passkey"]
    send = """async ([csrf, credential]) => {
      const r = await fetch("/login/passkey", {method: "POST", headers: {"Content-Type": "application/json"},
                                               body: JSON.stringify({csrf, credential, next: "/"})});
      return [r.status, (await r.json()).error || "ok"];
    }"""
    assert await page.evaluate(send, [made["csrf"], made["credential"]]) == [200, "ok"]
    # Replayed as a thief holding all of it would: the ceremony's cookie put back, a valid form token.
    await page.context.add_cookies(ceremony)
    await page.goto(url + "/login")
    csrf = await page.locator("#passkey-sign-in").get_attribute("data-csrf")
    assert await page.evaluate(send, [csrf, made["credential"]]) == [401, "unauthorized"]
    failed = [r for r in await service.store.audit_rows("login") if r.outcome == "failed"]
    assert failed and failed[-1].detail == {"factor": "passkey"}


async def test_another_users_passkey_is_not_a_second_factor(browser, shot, discharger):
    import time

    import pyotp

    from discharger.model import NewUser
    from server.audit import Caller

    url, service = discharger
    await service.users.create(NewUser("bob", PASSWORD, {"acme": "member"}), Caller())
    page = await browser.new_page()
    await authenticator(page)  # it will hold bob's passkey only
    await page.goto(url + "/login")
    await page.get_by_label("Username").fill("bob")
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in", exact=True).click()
    await page.goto(url + "/account/security")
    await page.get_by_label("Password, to add a passkey").fill(PASSWORD)
    await page.get_by_role("button", name="Add a passkey").click()
    await page.get_by_text("Passkey added.").wait_for()
    enrolment = await service.sessions.factors.begin("alice")  # alice has an authenticator app
    await service.sessions.factors.confirm("alice", pyotp.TOTP(enrolment.secret).at(time.time() - 30), Caller())

    await page.context.clear_cookies()
    await sign_in_with_password(page, url)  # alice's password: now her second factor
    await page.get_by_role("button", name="Use a passkey").click()  # offers bob's
    await page.locator("#passkey-error").wait_for(state="visible")
    await shot(page, "refused")
    cookie = next((c["value"] for c in await page.context.cookies() if c["name"] == "sable_browser"), None)
    assert await service.browser.signed_in(cookie) is None
