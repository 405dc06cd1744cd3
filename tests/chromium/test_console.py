"""The console clicked through in real Chromium against `sable dev` (both real services):
sign-in through the discharger, create a token (it verifies), revoke it (it is denied),
CSRF, a sign-in finished in another browser, sign-out."""

from __future__ import annotations

import aiohttp
import pytest

from clients import offline, tokens
from clients.tickets import b64e

pytestmark = pytest.mark.slow


async def sign_in_to_console(page, dev, org="acme", user="alice", password=None):
    """Signed out everywhere: the console sends the browser to the discharger's sign-in; once
    signed in there, the console sign-in is approved without a prompt (SPEC §19)."""
    await page.goto(f"{dev['a']}/console/orgs/{org}")
    await page.get_by_label("Username").fill(user)
    await page.get_by_label("Password").fill(password or dev["password"])
    await page.get_by_role("button", name="Sign in", exact=True).click()
    await page.get_by_role("heading", name=f"Tokens of org {org}").wait_for()


async def verify(dev, token: str) -> int:
    """Verify a console-made permission token as a holder would: alice's discharge, bound."""
    async with aiohttp.ClientSession() as http:
        async with http.post(dev["d"] + "/v1/sessions", json={"username": "alice", "password": dev["password"]}) as r:
            session = (await r.json())["session"]
        ticket = [c for c in tokens.parse(token).caveats if c.third_party][0].cid
        async with http.post(dev["d"] + "/v1/discharges", json={"ticket": b64e(ticket)},
                             headers={"Authorization": f"Bearer {session}"}) as r:
            dt = offline.bind(token, (await r.json())["discharge"])
        async with http.post(dev["a"] + "/v1/verify", json={"tokens": [token, dt], "access": {
                "org": "acme", "action": "r", "app": "orders"}}) as r:
            return r.status


async def test_console_sign_in_create_verify_revoke_sign_out(dev, browser, shot):
    context = await browser.new_context()
    page = await context.new_page()
    await sign_in_to_console(page, dev)
    assert page.url == f"{dev['a']}/console/orgs/acme"  # no secret left in the address bar
    await shot(page, "2-empty-console")
    cookie = {c["name"]: c for c in await context.cookies()}["sable_console"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"

    await page.get_by_label("Name").fill("ci-deploy")
    await page.get_by_label("Apps", exact=True).fill("orders, billing")
    await page.get_by_label("Actions", exact=True).fill("r")
    await page.get_by_label("Expires in").fill("2h")
    async with page.expect_response(lambda r: r.url.endswith("/console/orgs/acme/tokens")) as created:
        await page.get_by_role("button", name="Create").click()
    assert (await created.value).headers["cache-control"] == "no-store"
    token = (await page.locator("code#new-token").inner_text()).strip()
    assert token.startswith(tokens.PERMISSION)
    await shot(page, "3-created")
    row = page.get_by_role("row").filter(has_text="ci-deploy")
    for text in ("permission", "alice", "never", "active"):
        await row.get_by_text(text, exact=True).first.wait_for()
    assert await verify(dev, token) == 200

    await row.get_by_text("apps=orders,billing actions=r", exact=True).wait_for()  # the Scope column
    await row.get_by_role("link", name="Revoke").click()  # asks first, naming the token and what else stops
    await page.get_by_role("heading", name="Revoke “ci-deploy”?").wait_for()
    await page.get_by_text("Every token made from it stops too", exact=False).wait_for()
    await shot(page, "4-confirm-revoke")
    assert await verify(dev, token) == 200  # nothing revoked by asking
    await page.get_by_role("button", name="Revoke it").click()
    await page.get_by_role("row").filter(has_text="ci-deploy").get_by_text("revoked", exact=True).wait_for()
    assert await page.locator("code#new-token").count() == 0  # shown once only
    await shot(page, "5-revoked")
    assert await verify(dev, token) == 403

    await page.get_by_role("button", name="Sign out").click()
    await page.get_by_role("heading", name="Signed out").wait_for()
    async with aiohttp.ClientSession(cookies={"sable_console": cookie["value"]}) as http:
        async with http.get(dev["a"] + "/console/orgs/acme", allow_redirects=False) as r:
            assert r.status == 303 and r.headers["Location"].startswith(dev["d"])  # signed out: sign in again


async def test_a_console_form_without_csrf_is_403(dev, browser, shot):
    page = await browser.new_page()
    await sign_in_to_console(page, dev)
    await page.locator("form[action$='/tokens'] input[name=csrf]").evaluate("e => e.value = 'forged'")
    await page.get_by_label("Name").fill("sneaky")
    await page.get_by_role("button", name="Create").click()
    await page.get_by_role("heading", name="Not allowed").wait_for()
    await shot(page, "forged-csrf")


async def test_an_approval_in_one_browser_never_signs_in_another(dev, browser):
    victim = await (await browser.new_context()).new_page()
    attacker = await (await browser.new_context()).new_page()
    # The attacker lures the victim into signing in: the redirect carries state and code, but
    # the attacker's browser lacks the sign-in cookie that state belongs to.
    async with victim.expect_request(lambda r: "/console/callback" in r.url) as req:
        await sign_in_to_console(victim, dev)
    callback = (await req.value).url
    resp = await attacker.goto(callback)
    assert resp.status == 403
    await victim.get_by_role("heading", name="Tokens of org acme").wait_for()  # the victim is signed in
    resp = await victim.goto(callback)  # and the link is spent
    assert resp.status in (403, 410)


async def test_console_headers(dev, browser):
    page = await browser.new_page()
    await sign_in_to_console(page, dev)
    resp = await page.goto(f"{dev['a']}/console/orgs/acme")
    assert resp.headers["x-frame-options"] == "DENY"
    assert resp.headers["content-security-policy"] == "default-src 'self'; frame-ancestors 'none'; base-uri 'none'"
    assert resp.headers["referrer-policy"] == "no-referrer"


async def test_a_form_sent_after_the_session_ended_signs_in_again_and_says_so(dev, browser, shot):
    """SPEC §19: the session ended (made so in the database, as five minutes would); pressing
    Create signs in again through the discharger without a prompt, creates nothing, and the
    page says what happened."""
    import sqlite3
    from contextlib import closing
    from pathlib import Path

    page = await browser.new_page()
    await sign_in_to_console(page, dev)
    with closing(sqlite3.connect(Path(dev["log"]).parent / "var" / "authority.db")) as db, db:
        db.execute("UPDATE console_sessions SET expires_at = 1")
    await page.get_by_label("Name").fill("late")
    await page.get_by_role("button", name="Create").click()
    await page.get_by_text("Your console session had ended, so you were signed in again.").wait_for()
    await page.get_by_role("heading", name="Tokens of org acme").wait_for()
    assert await page.locator("code#new-token").count() == 0
    assert await page.get_by_role("row").filter(has_text="late").count() == 0
    await shot(page, "signed-in-again")


async def test_the_create_form_asks_for_a_scope_and_keeps_what_was_typed(dev, browser, shot):
    """SPEC §19: Name, Apps and Actions are required (All apps / All actions are explicit
    choices), Expires in starts at 30d, and a form with an error keeps its values."""
    page = await browser.new_page()
    await sign_in_to_console(page, dev)
    assert await page.get_by_label("Expires in").input_value() == "30d"
    await page.get_by_label("Name").fill("half-filled")
    await page.get_by_label("Actions", exact=True).fill("r")
    await page.get_by_role("button", name="Create").click()
    await page.get_by_role("alert").filter(has_text="Apps: name them, or choose All apps").wait_for()
    await shot(page, "form-error-keeps-values")
    assert await page.get_by_label("Name").input_value() == "half-filled"
    assert await page.get_by_label("Actions", exact=True).input_value() == "r"
    assert await page.get_by_label("Expires in").input_value() == "30d"
    assert await page.locator("code#new-token").count() == 0
    await page.get_by_label("All apps").check()
    await page.get_by_role("button", name="Create").click()
    token = (await page.locator("code#new-token").inner_text()).strip()
    assert token.startswith(tokens.PERMISSION)
    row = page.get_by_role("row").filter(has_text="half-filled")
    await row.get_by_text("apps=* actions=r", exact=True).wait_for()


async def test_the_authority_root_leads_to_the_users_orgs(dev, browser):
    """`/` → `/console/` → the discharger's page listing the user's orgs, each a link to its
    console here."""
    page = await browser.new_page()
    await sign_in_to_console(page, dev)  # signed in at the discharger too
    await page.goto(dev["a"] + "/")
    await page.get_by_role("heading", name="Your orgs").wait_for()
    assert page.url.startswith(dev["d"])
    await page.get_by_role("link", name="acme").click()
    await page.get_by_role("heading", name="Tokens of org acme").wait_for()
    assert page.url == f"{dev['a']}/console/orgs/acme"


async def test_regenerate_from_the_console_and_the_webhooks_an_admin_sees(dev, browser, shot):
    admin = {"Authorization": f"Bearer {dev['admin']}"}
    async with aiohttp.ClientSession() as http:  # an admin of acme, and a webhook for the org
        async with http.post(dev["d"] + "/v1/users", headers=admin, json={
                "username": "carol", "password": "carol's long passphrase", "orgs": [{"org": "acme", "role": "admin"}]}) as r:
            assert r.status == 201
        async with http.post(dev["a"] + "/v1/webhooks", headers=admin, json={
                "org": "acme", "url": "https://hooks.example.com/sable", "events": ["token.leaked"]}) as r:
            assert r.status == 201
    member = await browser.new_page()
    await sign_in_to_console(member, dev)  # alice is a member: no webhooks shown
    assert await member.get_by_role("heading", name="Webhooks").count() == 0
    page = await (await browser.new_context()).new_page()
    await sign_in_to_console(page, dev, user="carol", password="carol's long passphrase")
    await page.get_by_label("Name").fill("nightly")
    await page.get_by_label("Apps", exact=True).fill("orders")
    await page.get_by_label("Actions", exact=True).fill("r")
    await page.get_by_role("button", name="Create").click()
    old = (await page.locator("code#new-token").inner_text()).strip()
    await page.get_by_role("heading", name="Webhooks").wait_for()  # alice is an admin of acme
    await page.get_by_role("row").filter(has_text="https://hooks.example.com/sable").get_by_text(
        "active", exact=True).wait_for()

    await page.get_by_role("row").filter(has_text="nightly").get_by_role("link", name="Regenerate").click()
    await page.get_by_role("heading", name="Regenerate “nightly”?").wait_for()
    await shot(page, "6-confirm-regenerate")
    assert await verify(dev, old) == 200  # nothing changes by asking
    async with page.expect_response(lambda r: r.url.endswith("/regenerate") and r.request.method == "POST") as done:
        await page.get_by_role("button", name="Regenerate it").click()
    assert (await done.value).headers["cache-control"] == "no-store"
    new = (await page.locator("code#new-token").inner_text()).strip()
    assert new.startswith(tokens.PERMISSION) and new != old
    await page.get_by_text("Regenerated: the old token", exact=False).wait_for()
    await shot(page, "7-regenerated")
    assert await verify(dev, old) == 403 and await verify(dev, new) == 200
    states = await page.get_by_role("row").filter(has_text="nightly").locator("td[class^=status-]").all_inner_texts()
    assert sorted(states) == ["active", "revoked"]
