"""The discharger's pages clicked through in real Chromium: sign-in (wrong password,
throttled, right password), device approval and denial, an interactive discharge returning
to a console URL, CSRF and open-redirect attempts."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest

from clients.tickets import b64e
from discharger.app import create_app
from discharger.config import DischargerConfig
from tests.support import sealed_ticket

PASSWORD = "correct horse"


class Env:
    def __init__(self, server, config, admin):
        self.server = server
        self.config = config
        self.url = str(server.make_url("")).rstrip("/")
        self.admin = {"Authorization": f"Bearer {admin}"}

    @property
    def service(self):
        from discharger.pages import DISCHARGER
        return self.server.app[DISCHARGER]

    async def api(self, method: str, path: str, body: dict | None = None, headers: dict | None = None):
        async with aiohttp.ClientSession() as http:
            async with http.request(method, self.url + path, json=body, headers=headers or {}) as r:
                return r.status, await r.json()


@pytest.fixture
async def env(aiohttp_server, db_location, admin_token, unused_tcp_port_factory):
    port = unused_tcp_port_factory()
    config = DischargerConfig(db_path=db_location("discharger"), master_key=bytes.fromhex("55" * 32),
                              public_url=f"http://127.0.0.1:{port}", admin_token=admin_token,
                              authority_urls=("http://127.0.0.1:1",))
    server = await aiohttp_server(create_app(config), port=port)
    e = Env(server, config, admin_token)
    status, body = await e.api("POST", "/v1/users", {"username": "alice", "password": PASSWORD, "orgs": ["acme"]},
                               e.admin)
    assert status == 201, body
    return e


async def sign_in(page, username="alice", password=PASSWORD):
    await page.get_by_label("Username").fill(username)
    await page.get_by_label("Password").fill(password)
    await page.get_by_role("button", name="Sign in", exact=True).click()


async def test_sign_in_wrong_password_throttle_and_right_password(env, browser, shot):
    page = await browser.new_page()
    resp = await page.goto(env.url + "/login")
    assert resp.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in resp.headers["content-security-policy"]
    assert resp.headers["referrer-policy"] == "no-referrer"
    await shot(page, "1-form")
    await sign_in(page, password="wrong password")
    await page.get_by_text("invalid username or password").wait_for()
    await shot(page, "2-wrong-password")
    for _ in range(4):
        await sign_in(page, password="wrong password")
    await sign_in(page)  # the right password, but the username is throttled now
    await page.get_by_text("too many failed logins").wait_for()
    await shot(page, "3-throttled")
    status, _ = await env.api("POST", "/v1/users", {"username": "bob", "password": PASSWORD, "orgs": ["acme"]},
                              env.admin)
    assert status == 201
    before = {c["name"]: c["value"] for c in await page.context.cookies()}
    await sign_in(page, "bob")
    await page.get_by_text("Signed in as bob").first.wait_for()
    await shot(page, "4-signed-in")
    cookies = {c["name"]: c for c in await page.context.cookies()}
    cookie = cookies["sable_browser"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"
    assert cookie["value"] != before["sable_browser"]  # a new value at sign-in: no fixation
    # Sign out ends the session: the old cookie value no longer signs anyone in.
    await page.get_by_role("button", name="Sign out").click()
    await page.get_by_label("Username").wait_for()
    assert await env.service.browser.user(cookie["value"]) is None


async def test_device_approval_and_denial(env, browser, shot):
    page = await browser.new_page()
    for action, heading in (("Approve", "Device approved"), ("Deny", "Device denied")):
        status, grant = await env.api("POST", "/v1/device/authorize", {"client_name": "alice's laptop"})
        assert status == 200
        await page.goto(grant["verification_uri_complete"])
        if await page.get_by_label("Username").count():
            await shot(page, "1-sign-in-first")
            await sign_in(page)
        await page.get_by_text("Only approve a code you started yourself").wait_for()
        assert await page.get_by_label("Code").input_value() == grant["user_code"]
        await page.get_by_text("“alice's laptop”").wait_for()
        await shot(page, f"2-{action.lower()}-page")
        await page.get_by_role("button", name=action).click()
        await page.get_by_role("heading", name=heading).wait_for()
        await shot(page, f"3-{action.lower()}d")
        status, body = await env.api("POST", "/v1/device/token", {"device_code": grant["device_code"]})
        if action == "Approve":
            assert status == 200 and body["username"] == "alice"
        else:
            assert (status, body["error"]) == (400, "access_denied")


async def test_a_console_sign_in_returns_to_the_console_with_a_code_without_a_prompt(env, browser, shot):
    """SPEC §19: a console sign-in flow for a member, once signed in, is approved on opening."""
    return_to = "http://127.0.0.1:1/console/callback?state=s1"
    status, flow = await env.api("POST", "/v1/discharges", {"ticket": b64e(sealed_ticket(env, purpose="user")),
                                                            "interactive": True, "return_to": return_to})
    assert status == 202
    page = await browser.new_page()
    await page.goto(flow["user_url"])
    await shot(page, "1-sign-in-first")
    async with page.expect_request(lambda r: r.url.startswith(return_to)) as req:
        await sign_in(page)
    code = parse_qs(urlsplit((await req.value).url).query)["code"][0]
    status, _ = await env.api("GET", urlsplit(flow["poll_url"]).path)
    assert status == 403  # approved, but released only with the code
    status, body = await env.api("GET", urlsplit(flow["poll_url"]).path, headers={"Sable-Flow-Code": code})
    assert status == 200 and body["discharge"].startswith("sable_dt_")


async def test_open_redirects_are_refused(env, browser):
    page = await browser.new_page()
    for evil in ("//evil.test/", "/\\evil.test", "https://evil.test/", "/%5Cevil", "javascript:alert(1)"):
        await page.goto(env.url + "/login?next=" + evil)
        await sign_in(page)
        await page.wait_for_load_state()
        assert urlsplit(page.url).netloc == urlsplit(env.url).netloc, evil
        await page.context.clear_cookies()


async def test_a_form_without_its_csrf_token_is_403(env, browser, shot):
    page = await browser.new_page()
    await page.goto(env.url + "/login")
    await page.locator("input[name=csrf]").evaluate("e => e.value = 'forged'")
    await sign_in(page)
    await page.get_by_role("heading", name="Not allowed").wait_for()
    await shot(page, "forged-csrf")
    # A cross-site form post carries no cookie (SameSite=Lax) and is refused the same way.
    status = await page.evaluate("""async (url) => (await fetch(url + '/login', {method: 'POST',
        body: new URLSearchParams({username: 'alice', password: 'x'}), credentials: 'omit'})).status""", env.url)
    assert status == 403


async def test_set_up_an_authenticator_app_then_sign_in_with_it(env, browser, shot):
    import re
    import time

    import pyotp

    page = await browser.new_page()
    await page.goto(env.url + "/account/security")
    await sign_in(page)  # the page sends a signed-out browser to sign in first
    await page.get_by_label("Password", exact=True).fill(PASSWORD)
    await page.get_by_role("button", name="Set up authenticator app").click()
    await page.get_by_label("Code").wait_for()
    assert await page.locator(".qr svg").count() == 1
    await shot(page, "1-enrol")
    secret = re.search(r"type the key ([A-Z2-7]+)", await page.locator("main").inner_text()).group(1)
    totp = pyotp.TOTP(secret)
    await page.get_by_label("Code").fill(totp.at(time.time() - 30))  # leave the current step for sign-in
    await page.get_by_role("button", name="Confirm").click()
    await page.get_by_role("heading", name="Recovery codes").wait_for()
    assert await page.locator("ul.codes li").count() == 10
    await shot(page, "2-recovery-codes")
    await page.goto(env.url + "/")
    await page.get_by_role("button", name="Sign out").click()
    await sign_in(page)
    await page.get_by_label("Code").fill("000000" if totp.now() != "000000" else "111111")
    await page.get_by_role("button", name="Verify").click()
    await page.get_by_text("that code is wrong").wait_for()
    await page.get_by_label("Code").fill(totp.now())
    await shot(page, "3-code")
    await page.get_by_role("button", name="Verify").click()
    await page.get_by_text("Signed in as alice").first.wait_for()
    assert "password+totp" in await page.locator("header, .bar").first.inner_text()
    await shot(page, "4-signed-in")
