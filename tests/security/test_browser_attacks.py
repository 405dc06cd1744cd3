"""Attacker's look at the browser surface (SPEC §11): cookie sessions, CSRF, redirects, device
logins, interactive discharges, user tokens, self-service and the console.

Every test asserts the secure behaviour. A test marked `# Found in review: ...` failed when it
was written and was fixed: it keeps the weakness from coming back.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from urllib.parse import parse_qs, quote, urlsplit

import aiohttp
import pytest
import structlog

from clients import offline, tokens
from clients.tickets import b64e
from tests.discharger.test_device import csrf_of, decide, poll, sign_in, unthrottle
from tests.discharger.test_flows import answer, path, start
from tests.support import sealed_ticket

AUTHORITY_AT = "http://authority.test:8700"  # the authority the console-aware discharger trusts


# --- helpers ----------------------------------------------------------------------------------


@pytest.fixture
async def console_env(aiohttp_client, discharger_config, admin_token):
    """The real discharger, configured (as `sable dev` does) with an authority to return to."""
    from discharger.app import create_app
    from tests.conftest import DischargerEnv

    discharger_config = replace(discharger_config, authority_urls=(AUTHORITY_AT,))
    return DischargerEnv(await aiohttp_client(create_app(discharger_config)), discharger_config, admin_token)


def browser_cookie(env) -> str | None:
    for c in env.client.session.cookie_jar:
        if c.key == "sable_browser":
            return c.value
    return None


def set_cookie_of(resp, name: str) -> str | None:
    morsel = resp.cookies.get(name)
    return morsel.value if morsel is not None else None


# --- discharger: CSRF and sessions --------------------------------------------------------------


async def test_login_post_without_a_cookie_is_403(real_discharger):
    """Login CSRF: a cross-site auto-submitted form carries no cookie (SameSite=Lax), so no CSRF
    token can be tied to it; even a well-formed post with the attacker's credentials is refused."""
    env = real_discharger
    await env.user()
    page = await (await env.client.get("/login")).text()
    token = csrf_of(page)
    env.client.session.cookie_jar.clear()
    for data in ({"username": "alice", "password": "correct horse"},
                 {"csrf": token, "username": "alice", "password": "correct horse"}):
        resp = await env.client.post("/login", data=data, allow_redirects=False)
        assert resp.status == 403, data
        assert set_cookie_of(resp, "sable_browser") in (None, "")


async def test_csrf_token_of_another_cookie_is_refused(real_discharger):
    env = real_discharger
    await env.user()
    token_a = csrf_of(await (await env.client.get("/login")).text())
    env.client.session.cookie_jar.clear()
    other = "B" * 43
    resp = await env.client.post("/login", data={"csrf": token_a, "username": "alice", "password": "correct horse"},
                                 headers={"Cookie": f"sable_browser={other}"}, allow_redirects=False)
    assert resp.status == 403
    # The token in another field name, twice, or as the cookie value itself does not help either.
    for data in ({"CSRF": token_a}, {"csrf": ""}, {"csrf": other}):
        resp = await env.client.post("/login", data={**data, "username": "alice", "password": "correct horse"},
                                     headers={"Cookie": f"sable_browser={other}"}, allow_redirects=False)
        assert resp.status == 403, data


async def test_sign_in_never_keeps_a_planted_cookie(real_discharger):
    """Session fixation: an attacker plants a cookie value they know, the victim signs in with it;
    the signed-in cookie is a new value and the planted one stays signed out."""
    env = real_discharger
    await env.user()
    planted = "P" * 43
    env.client.session.cookie_jar.clear()
    headers = {"Cookie": f"sable_browser={planted}"}
    page = await (await env.client.get("/login", headers=headers)).text()
    resp = await env.client.post("/login", data={"csrf": csrf_of(page), "username": "alice",
                                                 "password": "correct horse", "next": "/"},
                                 headers=headers, allow_redirects=False)
    assert resp.status == 303
    fresh = set_cookie_of(resp, "sable_browser")
    assert fresh and fresh != planted
    env.client.session.cookie_jar.clear()
    resp = await env.client.get("/", headers=headers, allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == "/login"
    # The signed-out cookie's CSRF token does not carry over to the signed-in cookie.
    resp = await env.client.post("/logout", data={"csrf": csrf_of(page)},
                                 headers={"Cookie": f"sable_browser={fresh}"}, allow_redirects=False)
    assert resp.status == 403


async def test_state_changes_need_post(real_discharger):
    """No method override: GET (what a cross-site link or <img> can send) never signs out,
    approves or decides."""
    env = real_discharger
    await env.user()
    await sign_in(env)
    for url in ("/logout", "/logout?_method=POST", "/device?user_code=BBBB-BBBB&action=approve"):
        resp = await env.client.get(url, headers={"X-HTTP-Method-Override": "POST"}, allow_redirects=False)
        assert resp.status in (200, 405), url
    resp = await env.client.get("/", allow_redirects=False)
    assert resp.status == 200  # still signed in


@pytest.mark.parametrize("target", [
    "//evil.test/x", "/\\evil.test", "/\t/evil.test", "/\n/evil.test", "\\\\evil.test", "https://evil.test/",
    "javascript:alert(1)", "/javascript:alert(1)", " //evil.test", "/x\\y", "/%0d%0aSet-Cookie:x=1" + "\r\n",
    "http:/evil.test", "///evil.test", "/\x7f/evil.test", "\x00//evil.test", "evil.test"])
async def test_next_never_leaves_the_site(real_discharger, target):
    env = real_discharger
    await env.user()
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in target):  # refused outright (SPEC §4), with a page
        resp = await env.client.get("/login?" + "next=" + quote(target, safe=""), allow_redirects=False)
        assert resp.status == 400 and "next" in await resp.text()
        token = csrf_of(await (await env.client.get("/login")).text())
        resp = await env.client.post("/login", data={"csrf": token, "username": "alice",
                                                     "password": "correct horse", "next": target},
                                     allow_redirects=False)
        assert resp.status == 400 and "Location" not in resp.headers
        return
    page = await (await env.client.get("/login?" + "next=" + quote(target, safe=""))).text()
    assert 'name="next" value="/"' in page
    resp = await env.client.post("/login", data={"csrf": csrf_of(page), "username": "alice",
                                                 "password": "correct horse", "next": target}, allow_redirects=False)
    assert resp.status == 303
    location = resp.headers["Location"]
    parts = urlsplit(location)
    assert not parts.scheme and not parts.netloc and location.startswith("/") and not location.startswith("//")
    assert "\\" not in location and "\n" not in location


async def test_next_keeps_a_local_path(real_discharger):
    env = real_discharger
    await env.user()
    page = await (await env.client.get("/login")).text()
    resp = await env.client.post("/login", data={"csrf": csrf_of(page), "username": "alice",
                                                 "password": "correct horse", "next": "/device?user_code=BBBB-BBBB"},
                                 allow_redirects=False)
    assert resp.headers["Location"] == "/device?user_code=BBBB-BBBB"


# --- discharger: device logins ------------------------------------------------------------------


# Found in review: GET /device?user_code=... looks codes up without the wrong-code throttle
# (device.find(count=False)), so a signed-in attacker can test codes as fast as they like and
# learn, for each hit, the client name, the requester's address and time; the POST that follows
# is the right code, so it never counts either.
async def test_device_page_lookups_are_throttled(real_discharger):
    env = real_discharger
    await env.user()
    got = (await env.post("/v1/device/authorize", {"client_name": "victim laptop"}))[1]
    await sign_in(env)
    statuses = []
    for i in range(25):
        resp = await env.client.get(f"/device?user_code=BBBB-BB{'BCDFGHJKLMNPQRSTVWXZ'[i % 20]}C")
        statuses.append(resp.status)
    assert 429 in statuses, "25 wrong codes looked up on the page without a throttle"  # its own limit (item 6)
    resp = await env.client.get(f"/device?user_code={got['user_code']}")
    assert "victim laptop" not in await resp.text()


# Found in review: a disabled user's browser session keeps working, and device approval does not
# check `disabled`, so a disabled user still gets a brand-new API session through
# `sable login --web` (SPEC §5: disabled users can't log in).
async def test_disabled_user_cannot_log_a_device_in(real_discharger):
    env = real_discharger
    await env.user()
    await sign_in(env)
    status, _, _ = await env.post("/v1/users/alice/disable", {}, env.admin)
    assert status == 200
    got = (await env.post("/v1/device/authorize", {"client_name": "cli"}))[1]
    resp = await decide(env, got["user_code"])
    await unthrottle(env, got["device_code"])
    status, body, _ = await poll(env, got["device_code"])
    assert status != 200 and "session" not in body, "a disabled user's approval produced a session"
    assert resp.status != 200 or "Device approved" not in await resp.text()


async def test_device_code_is_released_once_under_a_race(real_discharger):
    env = real_discharger
    await env.user()
    got = (await env.post("/v1/device/authorize", {}))[1]
    await sign_in(env)
    resp = await decide(env, got["user_code"])
    assert resp.status == 200
    await unthrottle(env, got["device_code"])
    results = await asyncio.gather(*[poll(env, got["device_code"]) for _ in range(10)])
    assert sum(status == 200 for status, _, _ in results) == 1
    # A second decision on the same code (approve after approve, deny after approve) is refused.
    for action in ("approve", "deny"):
        resp = await decide(env, got["user_code"], action)
        assert resp.status == 404


async def test_device_pages_show_no_device_code(real_discharger):
    env = real_discharger
    await env.user()
    got = (await env.post("/v1/device/authorize", {"client_name": "<script>alert(1)</script>"}))[1]
    await sign_in(env)
    html = await (await env.client.get(f"/device?user_code={got['user_code']}")).text()
    assert got["device_code"] not in html
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;" in html
    resp = await decide(env, got["user_code"])
    assert got["device_code"] not in await resp.text()



async def test_disabled_user_cannot_approve_a_flow(real_discharger):
    env = real_discharger
    await env.user()
    await sign_in(env)
    status, _, _ = await env.post("/v1/users/alice/disable", {}, env.admin)
    assert status == 200
    got = await start(env, sealed_ticket(env))
    # A disabled user's browser session no longer signs anyone in: back to the sign-in page.
    resp = await env.client.get(path(got["user_url"]), allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"].startswith("/login")
    resp = await env.client.get(path(got["poll_url"]))
    assert resp.status == 202


async def test_json_apis_ignore_the_browser_cookie(real_discharger):
    env = real_discharger
    await env.user()
    await sign_in(env)
    assert browser_cookie(env)
    resp = await env.client.get("/v1/sessions/current")
    assert resp.status == 401
    status, _, _ = await env.post("/v1/discharges", {"ticket": b64e(sealed_ticket(env))})
    assert status == 401


async def test_huge_fields_are_refused_not_crashed(real_discharger):
    env = real_discharger
    await env.user()
    for url, body in (("/v1/device/authorize", {"client_name": "x" * 100_000}),
                      ("/v1/device/token", {"device_code": "x" * 129}),
                      ("/v1/device/token", {"device_code": ["x"]}),
                      ("/v1/discharges", {"ticket": b64e(sealed_ticket(env)), "interactive": True,
                                          "return_to": AUTHORITY_AT + "/console/" + "x" * 3000}),
                      ("/v1/discharges", {"ticket": "A" * 60_000, "interactive": True})):
        status, got, _ = await env.post(url, body)
        assert status in (400, 413), (url, status, got)
    page = await (await env.client.get("/login?next=/" + "a" * 5000)).text()
    assert 'name="next" value="/"' in page
    resp = await env.client.post("/login", data={"csrf": csrf_of(page), "username": "a" * 129, "password": "x"})
    assert resp.status == 400


# --- discharger: interactive discharges ---------------------------------------------------------


async def test_flow_codes_do_not_cross_flows_and_do_not_replay(console_env):
    env = console_env
    await env.user()
    await sign_in(env)
    flows, codes = [], []
    for state in ("one", "two"):
        got = await start(env, sealed_ticket(env, purpose="user"),
                          return_to=f"{AUTHORITY_AT}/console/callback?state={state}")
        _, resp = await answer(env, got["user_url"], follow=False)
        assert resp.status == 303
        flows.append(got)
        codes.append(parse_qs(urlsplit(resp.headers["Location"]).query)["code"][0])
    resp = await env.client.get(path(flows[0]["poll_url"]), headers={"Sable-Flow-Code": codes[1]})
    assert resp.status == 403  # flow two's code does not release flow one
    resp = await env.client.get(path(flows[0]["user_url"]).replace("/flows/", "/v1/flows/"),
                                headers={"Sable-Flow-Code": codes[0]})
    assert resp.status == 404  # the user URL's secret is not a poll secret
    resp = await env.client.get(path(flows[0]["poll_url"]), headers={"Sable-Flow-Code": codes[0]})
    assert resp.status == 200
    for code in codes[:1]:
        resp = await env.client.get(path(flows[0]["poll_url"]), headers={"Sable-Flow-Code": code})
        assert resp.status == 410
    resp = await env.client.get(path(flows[1]["poll_url"]), headers={"Sable-Flow-Code": codes[1]})
    assert resp.status == 200


async def test_a_flow_is_decided_and_released_once_under_a_race(real_discharger):
    env = real_discharger
    await env.user()
    await sign_in(env)
    got = await start(env, sealed_ticket(env))
    html = await (await env.client.get(path(got["user_url"]))).text()
    token = csrf_of(html)
    posts = [env.client.post(path(got["user_url"]), data={"csrf": token, "action": action})
             for action in ("approve", "deny") * 5]
    answers = await asyncio.gather(*posts)
    assert sum(r.status == 200 for r in answers) == 1
    assert all(r.status == 410 for r in answers if r.status != 200)
    polls = await asyncio.gather(*[env.client.get(path(got["poll_url"])) for _ in range(10)])
    statuses = sorted(r.status for r in polls)
    assert statuses in ([200] + [410] * 9, [403] * 10), statuses


async def test_approval_page_hides_the_poll_secret(real_discharger):
    env = real_discharger
    await env.user()
    await sign_in(env)
    got = await start(env, sealed_ticket(env, name='<img src=x onerror=alert(1)>'))
    html = await (await env.client.get(path(got["user_url"]))).text()
    assert got["poll_url"].rsplit("/", 1)[1] not in html
    assert "<img src=x" not in html
    resp = await env.client.get(path(got["user_url"]))
    for name, value in {"Content-Security-Policy": "frame-ancestors 'none'", "X-Frame-Options": "DENY",
                        "Referrer-Policy": "no-referrer"}.items():
        assert value in resp.headers[name]


async def test_a_member_cannot_approve_an_admin_ticket_any_way(real_discharger):
    """Role escalation through ticket contents: the role sealed in the ticket is enforced on the
    session API, on the approval page and again at release."""
    env = real_discharger
    await env.user()
    session = await env.login()
    admin_ticket = b64e(sealed_ticket(env, purpose="user", role="admin"))
    status, _, _ = await env.discharge(session, admin_ticket)
    assert status == 403
    await sign_in(env)
    got = await start(env, sealed_ticket(env, purpose="user", role="admin"))
    _, resp = await answer(env, got["user_url"])
    assert resp.status == 403
    resp = await env.client.get(path(got["poll_url"]))
    assert resp.status == 403


# Found in review: returns_to_authority() checks the raw path prefix, so dot segments take the
# approval redirect (with the one-time code in its query) anywhere on the authority's origin;
# browsers resolve `/console/../x` and `/console/%2e%2e/x` to `/x` before sending them.
@pytest.mark.parametrize("return_to", [
    f"{AUTHORITY_AT}/console/../v1/info", f"{AUTHORITY_AT}/console/%2e%2e/v1/info"])
async def test_approve_never_redirects_outside_console(console_env, return_to):
    env = console_env
    await env.user()
    await sign_in(env)
    got = await start(env, sealed_ticket(env, purpose="user"), return_to=return_to)
    _, resp = await answer(env, got["user_url"], follow=False)
    if resp.status == 303:
        target = urlsplit(resp.headers["Location"])
        from posixpath import normpath
        from urllib.parse import unquote
        assert normpath(unquote(target.path)).startswith("/console/"), resp.headers["Location"]


# Found in review: `return_to` is checked only for its scheme prefix and length; urlsplit() drops
# CR/LF/TAB, so a return_to with CR/LF passes returns_to_authority() and Approve then builds a
# Location header that aiohttp refuses to write: the connection is dropped (an unhandled
# exception in the server log) instead of an answer; the flow is left approved but unusable.
async def test_return_to_with_control_characters_never_500(console_env):
    env = console_env
    await env.user()
    await sign_in(env)
    return_to = f"{AUTHORITY_AT}/console/callback?state=x\r\nSet-Cookie: sable_console=planted"
    status, body, _ = await env.post("/v1/discharges", {"ticket": b64e(sealed_ticket(env, purpose="user")),
                                                        "interactive": True, "return_to": return_to})
    if status == 400:
        return  # refused up front: fine
    assert status == 202, body
    try:
        _, resp = await answer(env, body["user_url"], follow=False)
    except aiohttp.ServerDisconnectedError:
        pytest.fail("Approve crashed: the server dropped the connection instead of answering")
    assert resp.status < 500, resp.status
    assert "Set-Cookie" not in resp.headers or "planted" not in resp.headers.get("Set-Cookie", "")


# --- garbage input on the new routes ------------------------------------------------------------

_BOUNDARY = "sablesablesable"
GARBAGE = {
    "raw non-UTF-8 form": (b"csrf=\xff\xfe&user_code=\xff&username=\xff", "application/x-www-form-urlencoded"),
    "unknown charset": (b"csrf=x&username=alice", "application/x-www-form-urlencoded; charset=x-no-such-charset"),
    "multipart part without a name": (
        f"--{_BOUNDARY}\r\nContent-Disposition: form-data\r\n\r\nx\r\n--{_BOUNDARY}--\r\n".encode(),
        f"multipart/form-data; boundary={_BOUNDARY}"),
    "multipart non-UTF-8 text": (
        f"--{_BOUNDARY}\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\n".encode() + b"\xff\xfe\r\n"
        + f"--{_BOUNDARY}--\r\n".encode(), f"multipart/form-data; boundary={_BOUNDARY}"),
    "truncated multipart": (f"--{_BOUNDARY}\r\nContent-Disp".encode(), f"multipart/form-data; boundary={_BOUNDARY}"),
}


async def _server_errors(client, requests) -> list[str]:
    bad = []
    for method, url, body, content_type in requests:
        headers = {"Content-Type": content_type} if content_type else {}
        try:
            resp = await client.request(method, url, data=body, headers=headers, allow_redirects=False)
            status = resp.status
        except aiohttp.ServerDisconnectedError:
            status = "disconnect"
        if status == "disconnect" or status >= 500:
            bad.append(f"{method} {url.split('/flows/')[0]}{'/flows/…' if '/flows/' in url else ''} "
                       f"[{content_type and content_type.split(';')[0]} {body[:24]!r}] -> {status}")
    return bad


# Found in review: request.post() raises UnicodeDecodeError / LookupError / ValueError on a
# malformed form, before any CSRF check; page_errors() and read_form_or_json() catch only
# SableError, so anyone gets a 500 on the discharger's pages and on the RFC 8628 JSON routes.
async def test_garbage_forms_never_500_on_the_discharger(real_discharger):
    env = real_discharger
    await env.user()
    got = await start(env, sealed_ticket(env))
    flow = path(got["user_url"])
    await sign_in(env)  # signed in: the handlers reach their form parsing
    requests = [("POST", url, body, ctype) for url in ("/login", "/logout", "/device", flow, "/v1/device/authorize",
                                                       "/v1/device/token") for body, ctype in GARBAGE.values()]
    requests += [("GET", url, None, None) for url in ("/device?user_code=%ff%fe", "/login?next=%ff%fe%00",
                                                      "/device?user_code=" + "B" * 5000, "/flows/%ff%fe")]
    bad = await _server_errors(env.client, requests)
    assert not bad, "server errors:\n" + "\n".join(bad)


# Found in review: on a 500 the error middleware logs `path=request.path`, and on /flows/{secret}
# and /v1/flows/{secret} the path is the approval link's or poll URL's secret (SPEC §12: no
# logger writes a secret).
async def test_a_crash_on_a_flow_url_logs_no_secret(real_discharger):
    env = real_discharger
    await env.user()
    got = await start(env, sealed_ticket(env))
    await sign_in(env)
    secret = got["user_url"].rsplit("/", 1)[1]
    body, ctype = GARBAGE["raw non-UTF-8 form"]
    with structlog.testing.capture_logs() as logs:
        await env.client.post(path(got["user_url"]), data=body, headers={"Content-Type": ctype})
    assert secret not in repr(logs), "the approval link's secret is in the logs"


# --- authority: the console ---------------------------------------------------------------------


async def console_cookie(env, user="alice", org="acme", role="member") -> str:
    """A console session as the callback makes it (the sign-in itself is probed against `dev`)."""
    import time as clock

    from authority.selfservice import Member
    from server.audit import Caller

    await env.create_org(org)
    return await env.service.console._session(Member(user, org, role), int(clock.time()) + 300,
                                              Caller("127.0.0.1", "test"))


async def console_page(env, cookie: str, org="acme"):
    env.client.session.cookie_jar.clear()
    resp = await env.client.get(f"/console/orgs/{org}", headers={"Cookie": f"sable_console={cookie}"},
                                allow_redirects=False)
    assert resp.status == 200, resp.status
    return await resp.text()


async def console_post(env, cookie: str, url: str, data: dict):
    env.client.session.cookie_jar.clear()
    return await env.client.post(url, data=data, headers={"Cookie": f"sable_console={cookie}"},
                                 allow_redirects=False)


# Found in review: the console's create form turns `Expires in` into a MintRequest directly, so the
# JSON API's 1..31,536,000 s bound (SPEC §4) is skipped: a member mints a 10-year (or, with
# 999999999d, an unparseable-expiry) permission token.
async def test_console_expiry_is_bounded_like_the_api(authority):
    env = authority
    cookie = await console_cookie(env)
    token = csrf_of(await console_page(env, cookie))
    minted = []
    for too_long in ("3650d", "999999999d", "31536001"):
        resp = await console_post(env, cookie, "/console/orgs/acme/tokens",
                                  {"csrf": token, "name": f"long-{too_long}", "expires_in": too_long,
                                   "all_apps": "yes", "all_actions": "yes"})
        text = await resp.text()
        assert "Apps:" not in text and "Actions:" not in text  # refused for its lifetime, not its scope
        if resp.status != 400 or 'id="new-token"' in text:
            minted.append(f"{too_long} -> {resp.status}")
    listed = await (await env.client.get("/v1/tokens?org=acme", headers=env.admin)).json()
    assert not minted, f"minted past one year: {minted}; expiries {[r['caveats'][-1] for r in listed['tokens']]}"


async def test_console_scope_is_never_full_power_by_omission(authority):
    """SPEC §19: blank Apps or Actions are refused unless All apps / All actions is chosen;
    both a list and All at once are refused too. Nothing is minted by a refused form."""
    env = authority
    cookie = await console_cookie(env)
    token = csrf_of(await console_page(env, cookie))
    cases = [({}, "Apps: name them, or choose All apps"), ({"all_apps": "yes"}, "Actions: name them, or choose All actions"),
             ({"apps": "orders", "all_apps": "yes", "actions": "r"}, "Apps: name them or choose All apps, not both"),
             ({"apps": "orders", "actions": "r", "name": ""}, "Name is required")]
    for extra, message in cases:
        resp = await console_post(env, cookie, "/console/orgs/acme/tokens", {"csrf": token, "name": "n", **extra})
        text = await resp.text()
        assert resp.status == 400 and message in text and 'id="new-token"' not in text, (extra, resp.status)
    listed = await (await env.client.get("/v1/tokens?org=acme", headers=env.admin)).json()
    assert listed["tokens"] == []
    resp = await console_post(env, cookie, "/console/orgs/acme/tokens",
                              {"csrf": token, "name": "all", "all_apps": "yes", "all_actions": "yes"})
    assert resp.status == 200 and 'id="new-token"' in await resp.text()


async def test_console_revoke_asks_first_and_only_its_form_revokes(authority):
    env = authority
    tid = tokens.parse(await env.mint(org="acme")).token_id
    boss = await console_cookie(env, "carol", role="admin")
    csrf = csrf_of(await console_page(env, boss))
    resp = await env.client.get(f"/console/orgs/acme/tokens/{tid}/revoke", allow_redirects=False,
                                headers={"Cookie": f"sable_console={boss}"})
    text = await resp.text()
    assert resp.status == 200 and tid in text and "Every token made from it stops too" in text
    resp = await console_post(env, boss, f"/console/orgs/acme/tokens/{tid}/revoke", {"csrf": csrf})
    assert resp.status == 303 and resp.headers["Location"].endswith(f"/tokens/{tid}/revoke")  # asked, not done
    listed = await (await env.client.get("/v1/tokens?org=acme", headers=env.admin)).json()
    assert all(r["revoked_at"] is None for r in listed["tokens"])
    resp = await console_post(env, boss, f"/console/orgs/acme/tokens/{tid}/revoke", {"csrf": csrf, "confirm": "yes"})
    assert resp.status == 303
    listed = await (await env.client.get("/v1/tokens?org=acme", headers=env.admin)).json()
    assert [r["revoked_at"] is not None for r in listed["tokens"]] == [True]


async def test_console_revoke_stays_inside_role_and_org(authority):
    env = authority
    admins = tokens.parse(await env.mint(org="acme")).token_id  # created by @admin
    other_org = tokens.parse(await env.mint(org="beta")).token_id
    member = await console_cookie(env, "bob")
    token = csrf_of(await console_page(env, member))
    # A member's revoke of a token they did not make: 403, whatever the form says.
    resp = await console_post(env, member, f"/console/orgs/acme/tokens/{admins}/revoke", {"csrf": token})
    assert resp.status == 403
    # The acme session against beta's URL, or beta's token through acme's URL.
    resp = await console_post(env, member, f"/console/orgs/beta/tokens/{other_org}/revoke", {"csrf": token})
    assert resp.status == 403
    boss = await console_cookie(env, "carol", role="admin")
    boss_csrf = csrf_of(await console_page(env, boss))
    resp = await console_post(env, boss, f"/console/orgs/acme/tokens/{other_org}/revoke", {"csrf": boss_csrf})
    assert resp.status == 403
    # The member's CSRF token with the admin's cookie, and no token at all.
    for data in ({"csrf": token}, {}):
        resp = await console_post(env, boss, f"/console/orgs/acme/tokens/{admins}/revoke", data)
        assert resp.status == 403
    listed = await (await env.client.get("/v1/tokens?org=acme", headers=env.admin)).json()
    assert all(r["revoked_at"] is None for r in listed["tokens"])


async def test_console_answers_no_cookie_from_json_and_no_json_credential_from_pages(authority):
    env = authority
    cookie = await console_cookie(env)
    env.client.session.cookie_jar.clear()
    resp = await env.client.get("/v1/tokens?org=acme", headers={"Cookie": f"sable_console={cookie}"})
    assert resp.status == 401
    resp = await env.client.post("/v1/tokens", json={"org": "acme"}, headers={"Cookie": f"sable_console={cookie}"})
    assert resp.status == 401


async def test_console_callback_input_checks(authority):
    env = authority
    env.client.session.cookie_jar.clear()
    for query in ("", "?state=x", "?code=y", "?state=" + "x" * 200 + "&code=y", "?state=%ff&code=%fe",
                  "?state=x&code=y"):
        resp = await env.client.get("/console/callback" + query, allow_redirects=False)
        assert 400 <= resp.status < 500, (query, resp.status)
        assert set_cookie_of(resp, "sable_console") in (None, "")


# Found in review: with a sign-in really pending for this browser (its state cookie set), a
# `code` holding CR/LF, NUL or DEL reached the header of the discharger poll and answered 500.
@pytest.mark.parametrize("bad", ["\r\nSet-Cookie: x=1", "\n", "\x00", "\x7f", " ", "%", "é"])
@pytest.mark.parametrize("where", ["code", "state"])
async def test_console_callback_refuses_damaged_codes_with_a_pending_sign_in(authority, bad, where):
    import json as jsonlib
    import time as clock

    from authority.pages import SIGNIN_COOKIE
    from server.pagekit import new_secret

    env = authority
    state = new_secret()
    sealed = env.service.console.keys.master.seal(jsonlib.dumps({
        "ut": "sable_ut_x", "poll": f"{env.discharger.location}/v1/flows/{new_secret()}", "org": "acme"}).encode())
    now = int(clock.time())
    await env.service.store.add_signin(tokens.secret_digest(state), sealed, now + 600, now)
    values = {"state": state, "code": new_secret()}
    values[where] = values[where][:20] + bad + values[where][20:]
    query = "&".join(f"{k}={quote(v, safe='')}" for k, v in values.items())
    resp = await env.client.get(f"/console/callback?{query}", allow_redirects=False,
                                headers={"Cookie": f"{SIGNIN_COOKIE}={state}"})
    assert resp.status == 400, (where, bad, resp.status, await resp.text())
    assert set_cookie_of(resp, "sable_console") in (None, "")
    assert "<html" in (await resp.text()).lower()  # a page, as the rest of the console answers


# Found in review: the console's form handlers call request.post() outside any SableError, so a
# malformed form is a 500 there too.
async def test_garbage_forms_never_500_on_the_console(authority):
    env = authority
    cookie = await console_cookie(env)
    env.client.session.cookie_jar.clear()
    tid = tokens.parse(await env.mint(org="acme")).token_id
    bad = []
    for url in ("/console/orgs/acme/tokens", f"/console/orgs/acme/tokens/{tid}/revoke", "/console/logout"):
        for body, ctype in GARBAGE.values():
            resp = await env.client.post(url, data=body, allow_redirects=False,
                                         headers={"Content-Type": ctype, "Cookie": f"sable_console={cookie}"})
            if resp.status >= 500:
                bad.append(f"{url} [{ctype.split(';')[0]} {body[:20]!r}] -> {resp.status}")
    assert not bad, "server errors:\n" + "\n".join(bad)


# --- authority: user tokens and self-service ----------------------------------------------------


async def user_token(env, org="acme", role="member") -> str:
    status, body = await env.post("/v1/user-tokens", {"org": org, "role": role})
    assert status == 201, body
    return body["token"]


def as_header(ut: str, dt: str) -> dict:
    return {"Authorization": f"Bearer {ut},{dt}"}


async def test_a_discharge_cannot_be_stretched_to_another_user(authority):
    env = authority
    await env.create_org("acme")
    ut = await user_token(env)
    # A discharge for alice that also says `user bob` (as a holder appending to it before binding).
    dt = env.discharger.discharge(ut, user="alice", extra=["user bob"])
    resp = await env.client.get("/v1/tokens", headers=as_header(ut, dt))
    assert resp.status == 401
    # `user bob` appended to the user token itself narrows; it does not make the caller bob.
    narrowed = offline.attenuate(ut, ["user bob"])
    bob_pt = await env.mint(org="acme")
    status, st = await env.post("/v1/service-tokens", {"tokens": [bob_pt, env.discharger.discharge(bob_pt, user="bob")]})
    assert status == 201
    resp = await env.client.post(f"/v1/tokens/{st['id']}/revoke",
                                 headers=as_header(narrowed, env.discharger.discharge(narrowed, user="alice")))
    assert resp.status in (401, 403)


async def test_a_user_tokens_org_and_role_cannot_be_edited(authority):
    import dataclasses

    env = authority
    await env.create_org("acme")
    await env.create_org("acmf")
    ut = await user_token(env, "acme", "member")
    parsed = tokens.parse(ut)
    ident = parsed.identifier
    for forged_ident in (ident[:17] + b"\x01" + ident[18:],  # member -> admin
                         ident[:18] + b"acmf",  # another org of the same length
                         ident + b"x"):  # a longer org
        forged = dataclasses.replace(parsed, identifier=forged_ident).encode()
        resp = await env.client.get("/v1/tokens", headers=as_header(forged, env.discharger.discharge(forged)))
        assert resp.status == 401, forged_ident


async def test_a_member_revokes_only_in_their_own_org(authority):
    env = authority
    await env.create_org("acme")
    beta_pt = await env.mint(org="beta")
    # bob holds a beta service token (his `user`), but his acme user token does not reach it.
    status, st = await env.post("/v1/service-tokens", {"tokens": [beta_pt, env.discharger.discharge(beta_pt, user="bob")]})
    assert status == 201
    for role in ("member", "admin"):
        ut = await user_token(env, "acme", role)
        resp = await env.client.post(f"/v1/tokens/{st['id']}/revoke",
                                     headers=as_header(ut, env.discharger.discharge(ut, user="bob")))
        assert resp.status == 403, role
    # A beta user token attenuated with `org acme` reaches neither org.
    ut = offline.attenuate(await user_token(env, "beta"), ["org acme"])
    resp = await env.client.get("/v1/tokens?org=acme", headers=as_header(ut, env.discharger.discharge(ut)))
    assert resp.status in (401, 403)


# --- the console against real services (`sable dev`) --------------------------------------------


def jar() -> aiohttp.CookieJar:
    return aiohttp.CookieJar(unsafe=True)  # both services are on 127.0.0.1


async def console_sign_in(http: aiohttp.ClientSession, dev: dict, org: str = "acme") -> str:
    """Start a console sign-in and sign in to the discharger, which approves it without a
    prompt; returns the callback URL the approval redirects to (not yet followed)."""
    async with http.get(f"{dev['a']}/console/orgs/{org}", allow_redirects=False) as r:
        assert r.status == 303, await r.text()
        user_url = r.headers["Location"]
    async with http.get(f"{dev['d']}/login") as r:
        token = csrf_of(await r.text())
    async with http.post(f"{dev['d']}/login", data={"csrf": token, "username": "alice", "password": dev["password"],
                                                      "next": urlsplit(user_url).path}, allow_redirects=False) as r:
        assert r.status == 303
    async with http.get(user_url, allow_redirects=False) as r:
        assert r.status == 303, await r.text()
        return r.headers["Location"]


@pytest.mark.slow
async def test_console_approval_signs_in_only_its_own_browser_once(dev):
    async with aiohttp.ClientSession(cookie_jar=jar()) as victim, aiohttp.ClientSession(cookie_jar=jar()) as thief:
        callback = await console_sign_in(victim, dev)
        assert callback.startswith(f"{dev['a']}/console/callback?") and "code=" in callback
        # Another browser (with or without a console sign-in of its own) gets nothing from the URL.
        async with thief.get(callback, allow_redirects=False) as r:
            assert r.status == 403
        async with thief.get(f"{dev['a']}/console/orgs/acme", allow_redirects=False) as r:
            assert r.status == 303  # it started its own sign-in; the victim's URL is still no use
        async with thief.get(callback, allow_redirects=False) as r:
            assert r.status == 403
        async with victim.get(callback, allow_redirects=False) as r:
            assert r.status == 303 and r.headers["Location"] == "/console/orgs/acme"
        async with victim.get(f"{dev['a']}/console/orgs/acme", allow_redirects=False) as r:
            assert r.status == 200
        async with victim.get(callback, allow_redirects=False) as r:  # a replay of the callback
            assert r.status in (403, 410)
        async with victim.get(f"{dev['a']}/console/orgs/acme", allow_redirects=False) as r:
            assert r.status == 200  # the replay did not sign the victim out either


# Found in review: every anonymous GET /console/orgs/O mints a user token (outside the 10/min
# /v1/user-tokens limit) and starts an interactive discharge from the authority's own address,
# so 30 requests by anyone use up the discharger's per-address flow limit and nobody can sign
# in to the console for the next minute.
@pytest.mark.slow
async def test_anonymous_requests_cannot_lock_everyone_out_of_the_console(dev):
    async with aiohttp.ClientSession(cookie_jar=jar()) as attacker:
        for _ in range(31):
            async with attacker.get(f"{dev['a']}/console/orgs/nonexistent-org", allow_redirects=False):
                pass
    async with aiohttp.ClientSession(cookie_jar=jar()) as victim:
        async with victim.get(f"{dev['a']}/console/orgs/acme", allow_redirects=False) as r:
            assert r.status == 303, f"a legitimate sign-in is refused with {r.status}"


# Found in review: the sign-in cookie shares the session cookie's name, so a top-level GET (which
# SameSite=Lax lets any site trigger) to another org's console page replaces a signed-in
# browser's session cookie: a cross-site sign-out.
@pytest.mark.slow
async def test_a_cross_site_link_does_not_sign_the_console_out(dev):
    async with aiohttp.ClientSession(cookie_jar=jar()) as victim:
        callback = await console_sign_in(victim, dev)
        async with victim.get(callback, allow_redirects=False) as r:
            assert r.status == 303
        async with victim.get(f"{dev['a']}/console/orgs/other-org", allow_redirects=False) as r:
            assert r.status in (303, 404)  # 404: no such org (a sign-in starts only for a real one)
        async with victim.get(f"{dev['a']}/console/orgs/acme", allow_redirects=False) as r:
            assert r.status == 200, "the acme console session was replaced by another org's sign-in"


# Found in review: `sable dev`'s discharger trusted X-Forwarded-For from 127.0.0.1, so any local
# process could name any address and step past the per-address throttles.
@pytest.mark.slow
async def test_sable_dev_believes_no_forwarded_address(dev):
    async with aiohttp.ClientSession() as http:
        statuses = []
        for i in range(31):
            async with http.post(f"{dev['d']}/v1/device/authorize", json={"client_name": "x"},
                                 headers={"X-Forwarded-For": f"198.51.100.{i + 1}"}) as r:
                statuses.append(r.status)
    assert statuses[:30] == [200] * 30 and statuses[30] == 429, "each forged address got its own limit"
