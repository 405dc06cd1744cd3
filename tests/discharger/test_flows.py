"""Interactive discharges (SPEC §11) on the real discharger: start without a session, approve
in a signed-in browser (the test client's cookie jar), collect once by polling."""

from __future__ import annotations

from dataclasses import replace
from html import unescape
from urllib.parse import parse_qs, urlsplit

import pytest

from clients import tokens
from clients.tickets import b64e
from discharger import flows
from tests.discharger.test_device import csrf_of, sign_in
from tests.support import sealed_ticket


@pytest.fixture
def console_discharger(discharger_config):
    return replace(discharger_config, authority_urls=("http://authority.test:8700",))


async def start(env, ticket: bytes, **extra):
    status, body, resp = await env.post("/v1/discharges", {"ticket": b64e(ticket), "interactive": True, **extra})
    assert status == 202, body
    return body


def path(url: str) -> str:
    parts = urlsplit(url)
    assert parts.scheme == "http" and parts.netloc == "discharger.test"
    return parts.path


async def answer(env, user_url: str, action: str = "approve", follow: bool = True):
    """Open the approval page and press a button; a console sign-in the user may approve is
    approved on opening (no page): then ("", the redirect back)."""
    page = await env.client.get(path(user_url), allow_redirects=False)
    if page.status == 303 and action == "approve" and not follow:
        return "", page
    assert page.status == 200, await page.text()
    html = await page.text()
    return html, await env.client.post(path(user_url), data={"csrf": csrf_of(html), "action": action},
                                       allow_redirects=follow)


async def test_start_approve_collect_once(real_discharger):
    env = real_discharger
    await env.user()
    got = await start(env, sealed_ticket(env, name="ci-deploy"))
    assert set(got) == {"user_url", "poll_url", "expires_in"} and got["expires_in"] == 600
    user_secret, poll_secret = got["user_url"].rsplit("/", 1)[1], got["poll_url"].rsplit("/", 1)[1]
    assert user_secret != poll_secret and min(len(user_secret), len(poll_secret)) >= 22  # >= 128 bits
    resp = await env.client.get(path(got["poll_url"]))
    assert resp.status == 202 and await resp.json() == {"status": "pending"}
    # Signed out, the approval page sends the browser to sign in and back.
    resp = await env.client.get(path(got["user_url"]), allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"].startswith("/login?next=%2Fflows%2F")
    await sign_in(env)
    html, resp = await answer(env, got["user_url"])
    assert 'Authorize permission token "ci-deploy" for org acme' in unescape(html)
    assert resp.status == 200 and "Approved" in await resp.text()
    resp = await env.client.get(path(got["poll_url"]))
    body = await resp.json()
    assert resp.status == 200 and body["discharge"].startswith("sable_dt_") and body["expires_at"]
    resp = await env.client.get(path(got["poll_url"]))
    assert resp.status == 410 and (await resp.json())["error"] == "gone"
    resp = await env.client.get(path(got["user_url"]))  # answered: the link is spent
    assert resp.status == 410


async def test_deny_and_too_low_a_role_are_403(real_discharger):
    env = real_discharger
    await env.user()
    await sign_in(env)
    got = await start(env, sealed_ticket(env))
    _, resp = await answer(env, got["user_url"], "deny")
    assert resp.status == 200 and "Denied" in await resp.text()
    resp = await env.client.get(path(got["poll_url"]))
    assert resp.status == 403 and (await resp.json())["error"] == "denied"
    got = await start(env, sealed_ticket(env, role="admin", purpose="user"))
    html, resp = await answer(env, got["user_url"])
    assert "Let a program act as you in org acme with admin rights" in html
    assert resp.status == 403
    resp = await env.client.get(path(got["poll_url"]))
    assert resp.status == 403


async def test_return_to_a_console_needs_the_flow_code(aiohttp_client, console_discharger, admin_token):
    from discharger.app import create_app
    from tests.conftest import DischargerEnv

    env = DischargerEnv(await aiohttp_client(create_app(console_discharger)), console_discharger, admin_token)
    await env.user()
    await sign_in(env)
    return_to = "http://authority.test:8700/console/callback?state=abc"
    got = await start(env, sealed_ticket(env, purpose="user"), return_to=return_to)
    _, resp = await answer(env, got["user_url"], follow=False)
    assert resp.status == 303
    location = resp.headers["Location"]
    assert location.startswith(return_to + "&code=")
    code = parse_qs(urlsplit(location).query)["code"][0]
    resp = await env.client.get(path(got["poll_url"]))  # approved, but without the code
    assert resp.status == 403
    resp = await env.client.get(path(got["poll_url"]), headers={"Sable-Flow-Code": "wrong"})
    assert resp.status == 403
    resp = await env.client.get(path(got["poll_url"]), headers={"Sable-Flow-Code": code})
    assert resp.status == 200 and (await resp.json())["discharge"]
    resp = await env.client.get(path(got["poll_url"]), headers={"Sable-Flow-Code": code})
    assert resp.status == 410


@pytest.mark.parametrize("return_to", [
    "http://evil.test/console/callback", "http://authority.test:8701/console/x", "https://authority.test:8700/console/x",
    "http://authority.test:8700/admin", "http://authority.test:8700@evil.test/console/x"])
async def test_approve_never_redirects_elsewhere(aiohttp_client, console_discharger, admin_token, return_to):
    from discharger.app import create_app
    from tests.conftest import DischargerEnv

    env = DischargerEnv(await aiohttp_client(create_app(console_discharger)), console_discharger, admin_token)
    await env.user()
    await sign_in(env)
    got = await start(env, sealed_ticket(env, purpose="user"), return_to=return_to)
    _, resp = await answer(env, got["user_url"], follow=False)
    assert resp.status == 200 and "Approved" in await resp.text()


async def test_bad_starts(real_discharger):
    env = real_discharger
    status, body, _ = await env.post("/v1/discharges", {"ticket": b64e(sealed_ticket(env))})
    assert status == 401  # no session and not interactive
    status, body, _ = await env.post("/v1/discharges", {"ticket": "AAAA", "interactive": True})
    assert status == 400
    status, body, _ = await env.post("/v1/discharges", {"ticket": b64e(sealed_ticket(env)), "interactive": True,
                                                         "return_to": "javascript:alert(1)"})
    assert status == 400
    resp = await env.client.get("/v1/flows/unknown")
    assert resp.status == 404
    resp = await env.client.get("/flows/unknown", allow_redirects=False)
    assert resp.status == 303  # signed out: sign in first, whatever the link


async def test_sessionless_starts_are_rate_limited(real_discharger):
    env = real_discharger
    ticket = b64e(sealed_ticket(env))
    for _ in range(30):
        status, _, _ = await env.post("/v1/discharges", {"ticket": ticket, "interactive": True})
        assert status == 202
    status, body, resp = await env.post("/v1/discharges", {"ticket": ticket, "interactive": True})
    assert status == 429 and int(resp.headers["Retry-After"]) > 0


def test_descriptions():
    from clients.tickets import TicketContents

    def said(purpose, name, role, to_console):
        return flows.describe(TicketContents(bytes(32), "acme", 60, purpose, name, role), to_console)

    assert said("permission", "ci", "member", False) == ('Authorize permission token "ci" for org acme', None)
    assert said("permission", None, "member", False) == ("Authorize permission token for org acme", None)
    assert said("user", None, "member", True) == ("Sign in to the console of org acme", None)
    assert said("user", None, "admin", True) == ("Sign in to the console of org acme as admin", None)
    assert said("user", None, "member", False) == (
        "Let a program act as you in org acme",
        "The program that started this request gets your member rights in org acme for a few minutes: it can "
        "list the org's tokens, create tokens and revoke the ones you made. Approve only if you started it yourself.")
    assert said("user", None, "admin", False) == (
        "Let a program act as you in org acme with admin rights",
        "The program that started this request gets your admin rights in org acme for a few minutes: it can "
        "list, create and revoke any of the org's tokens. Approve only if you started it yourself.")


async def test_an_expired_flow_is_410(real_discharger, monkeypatch):
    env = real_discharger
    await env.user()
    got = await start(env, sealed_ticket(env))
    later = flows.time.time() + flows.EXPIRES_IN + 1
    monkeypatch.setattr(flows, "_now", lambda: later)
    resp = await env.client.get(path(got["poll_url"]))
    assert resp.status == 410
    await sign_in(env)
    resp = await env.client.get(path(got["user_url"]))
    assert resp.status == 410


async def test_the_approval_page_says_where_the_discharge_goes(aiohttp_client, console_discharger, admin_token):
    """A user-token flow returning to a configured authority's console is a console sign-in; one
    without (its discharge goes to whoever holds poll_url) says that a program gets the user's
    rights, and an admin-role one says so plainly (found in review: both read "Sign in to the
    console")."""
    from discharger.app import create_app
    from tests.conftest import DischargerEnv

    env = DischargerEnv(await aiohttp_client(create_app(console_discharger)), console_discharger, admin_token)
    await env.user("bob", orgs=["beta"])  # not in acme: console sign-ins to acme are not silent for bob
    await sign_in(env, "bob")
    console = "http://authority.test:8700/console/callback?state=abc"
    for role, heading in (("member", "Sign in to the console of org acme"),
                          ("admin", "Sign in to the console of org acme as admin")):
        got = await start(env, sealed_ticket(env, purpose="user", role=role), return_to=console)
        html = unescape(await (await env.client.get(path(got["user_url"]))).text())
        assert heading in html and "Let a program" not in html, role
    env.client.session.cookie_jar.clear()
    await env.user(orgs=[{"org": "acme", "role": "admin"}])
    await sign_in(env)
    cases = [({}, "member", "Let a program act as you in org acme", "your member rights in org acme"),
             ({"return_to": "https://evil.test/console/x"}, "admin",
              "Let a program act as you in org acme with admin rights", "revoke any of the org"),
             ({}, "admin", "with admin rights", "your admin rights in org acme")]
    for extra, role, heading, warning in cases:
        got = await start(env, sealed_ticket(env, purpose="user", role=role), **extra)
        html = unescape(await (await env.client.get(path(got["user_url"]))).text())
        assert heading in html, (extra, role)
        assert ("Sign in to the console" in html) == (warning is None), (extra, role)
        if warning:
            assert warning in html, (extra, role)
    got = await start(env, sealed_ticket(env, name="ci-deploy"))
    html = unescape(await (await env.client.get(path(got["user_url"]))).text())
    assert 'Authorize permission token "ci-deploy" for org acme' in html and "Let a program" not in html


async def test_a_flow_with_an_untrusted_return_to_is_never_released_to_a_poller(real_discharger):
    """A flow asked to return somewhere that is not a configured authority's console gets no
    one-time code when approved, and its discharge is then released to nobody: a poller with
    the poll URL alone (or any Sable-Flow-Code) is refused, before and after."""
    env = real_discharger
    await env.user()
    await sign_in(env)
    for return_to in ("https://evil.test/console/callback?state=x", "http://authority.test:8700/console/x"):
        got = await start(env, sealed_ticket(env, purpose="user"), return_to=return_to)
        html, resp = await answer(env, got["user_url"])
        assert resp.status == 200 and "Approved" in await resp.text(), html  # shown, not redirected
        for headers in ({}, {"Sable-Flow-Code": "x" * 43}):
            resp = await env.client.get(path(got["poll_url"]), headers=headers)
            assert resp.status == 403 and "one-time code" in (await resp.json())["message"], headers


async def test_every_refusal_says_why(aiohttp_client, console_discharger, admin_token, monkeypatch):
    """Each way a flow is refused, with its status and its exact words (people read them)."""
    from discharger.app import create_app
    from tests.conftest import DischargerEnv

    env = DischargerEnv(await aiohttp_client(create_app(console_discharger)), console_discharger, admin_token)
    await env.user()
    await sign_in(env)

    async def poll_says(url, code=None):
        resp = await env.client.get(path(url), headers={"Sable-Flow-Code": code} if code else {})
        return resp.status, (await resp.json()).get("message")

    assert await poll_says("http://discharger.test/v1/flows/nope") == (404, "unknown poll URL")
    page = await env.client.get("/flows/nope")
    assert page.status == 404 and "this sign-in link is unknown" in await page.text()

    denied = await start(env, sealed_ticket(env))
    await answer(env, denied["user_url"], "deny")
    assert await poll_says(denied["poll_url"]) == (403, "the user denied this request, or may not approve it")
    page = await env.client.get(path(denied["user_url"]))
    assert page.status == 410 and "this request was already answered" in await page.text()

    too_high = await start(env, sealed_ticket(env, role="admin"))
    _, resp = await answer(env, too_high["user_url"])
    assert resp.status == 403 and "you need role admin in org acme to approve this" in await resp.text()

    collected = await start(env, sealed_ticket(env))
    await answer(env, collected["user_url"])
    assert (await poll_says(collected["poll_url"]))[0] == 200
    assert await poll_says(collected["poll_url"]) == (410, "this discharge was already collected")

    console = await start(env, sealed_ticket(env, purpose="user"),
                          return_to="http://authority.test:8700/console/callback?state=s")
    _, resp = await answer(env, console["user_url"], follow=False)
    code = parse_qs(urlsplit(resp.headers["Location"]).query)["code"][0]
    once = "this flow's discharge is released only with its one-time code (Sable-Flow-Code)"
    assert await poll_says(console["poll_url"]) == (403, once)
    assert await poll_says(console["poll_url"], "x" * 43) == (403, once)
    row = await env.service.store.get_grant("flow", lookup=tokens.secret_digest(path(console["poll_url"]).rsplit(
        "/", 1)[1]).hex())
    monkeypatch.setattr(flows, "_now", lambda: float(row.code_expires_at))  # the code's last instant has passed
    assert await poll_says(console["poll_url"], code) == (410, "the one-time code has expired; start again")

    pending = await start(env, sealed_ticket(env))
    row = await env.service.store.get_grant("flow", lookup=tokens.secret_digest(path(pending["poll_url"]).rsplit(
        "/", 1)[1]).hex())
    monkeypatch.setattr(flows, "_now", lambda: float(row.expires_at))  # expired at exactly expires_at
    assert await poll_says(pending["poll_url"]) == (410, "this request has expired; start again")
    page = await env.client.get(path(pending["user_url"]))
    assert page.status == 410 and "this sign-in link has expired; start again" in await page.text()


async def test_flows_are_audited(aiohttp_client, console_discharger, admin_token):
    """Who approved or denied which org's flow, and whether without a prompt."""
    import structlog

    from discharger.app import create_app
    from tests.conftest import DischargerEnv

    env = DischargerEnv(await aiohttp_client(create_app(console_discharger)), console_discharger, admin_token)
    await env.user()
    await sign_in(env)
    with structlog.testing.capture_logs() as logs:
        prompted = await start(env, sealed_ticket(env))
    assert [(e["event"], e.get("org")) for e in logs if e["event"] == "flow_start"] == [("flow_start", "acme")]
    await answer(env, prompted["user_url"])
    denied = await start(env, sealed_ticket(env))
    await answer(env, denied["user_url"], "deny")
    silent = await start(env, sealed_ticket(env, purpose="user"),
                         return_to="http://authority.test:8700/console/callback?state=s")
    resp = await env.client.get(path(silent["user_url"]), allow_redirects=False)
    assert resp.status == 303 and "code=" in resp.headers["Location"]  # approved on opening, no page
    rows = [(r.event, r.user, r.org, r.outcome, r.detail)
            for r in await env.service.store.audit_rows() if r.event.startswith("flow_")]
    assert rows == [("flow_approve", "alice", "acme", "ok", None), ("flow_deny", "alice", "acme", "denied", None),
                    ("flow_approve", "alice", "acme", "ok", {"prompted": False})]


async def test_only_a_console_sign_in_is_approved_without_a_prompt(aiohttp_client, console_discharger, admin_token):
    from discharger.app import create_app
    from tests.conftest import DischargerEnv

    env = DischargerEnv(await aiohttp_client(create_app(console_discharger)), console_discharger, admin_token)
    await env.user()
    await sign_in(env)
    console = "http://authority.test:8700/console/callback?state=s"
    for ticket, extra in ((sealed_ticket(env), {"return_to": console}),  # a permission token's flow
                          (sealed_ticket(env, purpose="user"), {}),  # no return_to
                          (sealed_ticket(env, purpose="user"), {"return_to": "https://evil.test/console/x"}),
                          (sealed_ticket(env, purpose="user", role="admin"), {"return_to": console})):  # role too low
        got = await start(env, ticket, **extra)
        resp = await env.client.get(path(got["user_url"]), allow_redirects=False)
        assert resp.status == 200 and "Approve" in await resp.text(), extra
    got = await start(env, sealed_ticket(env, purpose="user"), return_to=console)
    resp = await env.client.get(path(got["user_url"]), allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"].startswith(console + "&code=")


async def test_urls_under_a_public_url_with_a_trailing_slash(aiohttp_client, discharger_config, admin_token):
    from discharger.app import create_app
    from tests.conftest import DischargerEnv

    discharger_config = replace(discharger_config, public_url="http://discharger.test/")
    env = DischargerEnv(await aiohttp_client(create_app(discharger_config)), discharger_config, admin_token)
    got = await start(env, sealed_ticket(env))
    assert got["user_url"].startswith("http://discharger.test/flows/")
    assert got["poll_url"].startswith("http://discharger.test/v1/flows/")


@pytest.mark.parametrize("return_to, trusted", [
    ("http://authority.test:8700/console/callback?state=s", True),
    ("http://authority.test:8700/console/", True),
    (None, False), ("", False),
    ("https://authority.test:8700/console/callback", False),  # another scheme
    ("http://authority.test:8701/console/callback", False),  # another port
    ("http://evil.test:8700/console/callback", False),
    ("http://authority.test:8700/consoles/x", False), ("http://authority.test:8700/", False),
    ("http://authority.test:8700/console/../v1/tokens", False), ("http://authority.test:8700/console/./x", False),
    ("http://authority.test:8700/console/%2e%2e/x", False),
    ("http://authority.test:8700/console/x\\y", False),
    ("http://u@authority.test:8700/console/x", False),
    ("http://authority.test:99999/console/x", False),  # no such port: unparseable
])
def test_only_a_configured_authority_s_console_is_returned_to(return_to, trusted):
    f = flows.Flows("http://discharger.test", ("http://authority.test:8700",), None, None, None)  # type: ignore[arg-type]
    assert f.returns_to_authority(return_to) is trusted
