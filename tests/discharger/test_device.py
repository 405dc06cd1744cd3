"""Device login (RFC 8628, SPEC §11) on the real discharger: the JSON endpoints and the
browser's approval form, driven over HTTP with the test client's cookie jar (the same flow
in real Chromium is in tests/chromium)."""

from __future__ import annotations

import re

import pytest

from clients.tickets import b64e
from discharger import device
from tests.support import sealed_ticket

pytestmark = pytest.mark.usefixtures("real_discharger")


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)


async def sign_in(env, username="alice", password="correct horse"):
    page = await (await env.client.get("/login")).text()
    resp = await env.client.post("/login", data={"csrf": csrf_of(page), "username": username, "password": password,
                                                 "next": "/"}, allow_redirects=False)
    assert resp.status == 303, await resp.text()


async def decide(env, user_code: str, action: str = "approve"):
    """Type the code into the bare form and decide; an approval first shows which client asked
    (SPEC §19), and is then confirmed from that page."""
    page = await (await env.client.get("/device")).text()  # the form, without looking the code up
    resp = await env.client.post("/device", data={"csrf": csrf_of(page), "user_code": user_code, "action": action})
    page = await resp.text()
    if action != "approve" or "Check which client asked for this code" not in page:
        return resp
    shown = re.search(r'name="shown" value="([^"]*)"', page).group(1)
    return await env.client.post("/device", data={"csrf": csrf_of(page), "user_code": user_code, "action": action,
                                                  "shown": shown})


async def test_a_typed_code_shows_its_client_before_it_is_approved(real_discharger):
    env = real_discharger
    await env.user()
    await sign_in(env)
    got = await authorize(env, client_name="build box")
    page = await (await env.client.get("/device")).text()
    resp = await env.client.post("/device", data={"csrf": csrf_of(page), "user_code": got["user_code"],
                                                  "action": "approve"})
    page = await resp.text()
    assert resp.status == 200 and "Check which client asked for this code" in page
    assert "“build box”" in page and "Requested from 127.0.0.1" in page
    assert (await poll(env, got["device_code"]))[1]["error"] == "authorization_pending"  # not approved yet
    # Seen for one code, then another typed in its place: shown again, not approved.
    other = await authorize(env, client_name="someone else")
    shown = re.search(r'name="shown" value="([^"]*)"', page).group(1)
    resp = await env.client.post("/device", data={"csrf": csrf_of(page), "user_code": other["user_code"],
                                                  "action": "approve", "shown": shown})
    assert "“someone else”" in await resp.text()
    assert (await poll(env, other["device_code"]))[1]["error"] == "authorization_pending"
    resp = await env.client.post("/device", data={"csrf": csrf_of(page), "user_code": got["user_code"],
                                                  "action": "approve", "shown": shown})
    assert resp.status == 200 and "Device approved" in await resp.text()


async def authorize(env, **body):
    status, got, resp = await env.post("/v1/device/authorize", body or {"client_name": "laptop cli"})
    assert status == 200, got
    return got


async def poll(env, device_code, grant=None):
    body = {"device_code": device_code, **({"grant_type": grant} if grant else {})}
    return await env.post("/v1/device/token", body)


def unthrottle(env, code):
    """Tests poll faster than the 5 s interval: forget the last poll."""
    async def run():
        from clients import tokens
        row = await env.service.store.get_grant("device", digest=tokens.secret_digest(code))
        status = row.status
        row.polled_at = None
        await env.service.store.update_grant(row, status)
    return run()


async def test_authorize_shapes(real_discharger):
    env = real_discharger
    got = await authorize(env)
    assert set(got) == {"device_code", "user_code", "verification_uri", "verification_uri_complete", "expires_in",
                        "interval"}
    assert re.fullmatch(r"[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}", got["user_code"])
    assert got["verification_uri"] == "http://discharger.test/device"
    assert got["verification_uri_complete"] == f"http://discharger.test/device?user_code={got['user_code']}"
    assert got["expires_in"] == 600 and got["interval"] == 5
    assert len(got["device_code"]) >= 43  # 256 bits
    # RFC 8628 form fields: client_id is taken as the client name.
    resp = await env.client.post("/v1/device/authorize", data={"client_id": "gh-cli"})
    assert resp.status == 200
    for bad in ({"client_name": "x" * 65}, {"client_name": 5}, {"client_name": "a\nb"}):
        status, _, _ = await env.post("/v1/device/authorize", bad)
        assert status == 400, bad


async def test_approve_then_token_once(real_discharger):
    env = real_discharger
    await env.user()
    got = await authorize(env)
    status, body, _ = await poll(env, got["device_code"])
    assert (status, body["error"]) == (400, "authorization_pending")
    await sign_in(env)
    resp = await decide(env, got["user_code"].lower().replace("-", ""))  # case and dash ignored
    assert resp.status == 200 and "Device approved" in await resp.text()
    await unthrottle(env, got["device_code"])
    status, body, _ = await poll(env, got["device_code"], "urn:ietf:params:oauth:grant-type:device_code")
    assert status == 200, body
    assert body["session"] == body["access_token"] and body["token_type"] == "Bearer"
    assert body["username"] == "alice" and 0 < body["expires_in"] <= 12 * 3600 and body["expires_at"]
    # The session works like a password login's.
    status, _, _ = await env.discharge(body["session"], b64e(sealed_ticket(env)))
    assert status == 201
    await unthrottle(env, got["device_code"])
    status, body, _ = await poll(env, got["device_code"])
    assert (status, body["error"]) == (400, "invalid_grant")  # once only
    # The same user code cannot be approved again (for this or another device).
    resp = await decide(env, got["user_code"])
    assert resp.status == 404


async def test_deny(real_discharger):
    env = real_discharger
    await env.user()
    got = await authorize(env)
    await sign_in(env)
    resp = await decide(env, got["user_code"], "deny")
    assert resp.status == 200 and "Device denied" in await resp.text()
    status, body, _ = await poll(env, got["device_code"])
    assert (status, body["error"]) == (400, "access_denied")


async def test_slow_down_grows_the_interval(real_discharger):
    env = real_discharger
    got = await authorize(env)
    status, body, _ = await poll(env, got["device_code"])
    assert body["error"] == "authorization_pending"
    status, body, _ = await poll(env, got["device_code"])
    assert (status, body["error"]) == (400, "slow_down")
    from clients import tokens
    row = await env.service.store.get_grant("device", digest=tokens.secret_digest(got["device_code"]))
    assert row.interval == 10


async def test_unknown_expired_and_bad_requests(real_discharger, monkeypatch):
    env = real_discharger
    status, body, _ = await poll(env, "not-a-code")
    assert (status, body["error"]) == (400, "invalid_grant")
    got = await authorize(env)
    status, body, _ = await poll(env, got["device_code"], "password")
    assert status == 400 and body["error"] == "unsupported_grant_type"  # RFC 6749 §5.2
    status, body, _ = await env.post("/v1/device/token", {})
    assert status == 400 and body["error"] == "invalid_request"
    later = device._now() + device.EXPIRES_IN + 1
    monkeypatch.setattr(device, "_now", lambda: later)
    status, body, _ = await poll(env, got["device_code"])
    assert (status, body["error"]) == (400, "expired_token")


async def test_wrong_codes_are_throttled_per_user(real_discharger):
    env = real_discharger
    await env.user()
    got = await authorize(env)
    await sign_in(env)
    for _ in range(device.WRONG_CODES_PER_USER):
        resp = await decide(env, "BBBB-BBBB")
        assert resp.status == 404
    resp = await decide(env, got["user_code"])  # even the right code now waits
    assert resp.status == 429 and "Retry-After" in resp.headers
    status, body, _ = await poll(env, got["device_code"])
    assert body["error"] == "authorization_pending"


async def test_device_page_needs_sign_in_and_csrf(real_discharger):
    env = real_discharger
    await env.user()
    got = await authorize(env)
    resp = await env.client.get(f"/device?user_code={got['user_code']}", allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"].startswith("/login?next=%2Fdevice")
    await sign_in(env)
    resp = await env.client.post("/device", data={"user_code": got["user_code"], "action": "approve"})
    assert resp.status == 403
    resp = await env.client.post("/device", data={"csrf": "forged", "user_code": got["user_code"],
                                                  "action": "approve"})
    assert resp.status == 403
    status, body, _ = await poll(env, got["device_code"])
    assert body["error"] == "authorization_pending"


async def test_every_device_error_carries_error_description(real_discharger):
    """RFC 6749 §5.2: OAuth clients (oauthlib, Authlib) show `error_description` and nothing
    else, so every error of both device endpoints carries one (and keeps `message`)."""
    env = real_discharger
    got = await authorize(env)
    answers = [await poll(env, got["device_code"]), await poll(env, got["device_code"]),
               await poll(env, "not-a-code"), await poll(env, got["device_code"], "password"),
               await env.post("/v1/device/token", {}),
               await env.post("/v1/device/authorize", {"client_name": "x" * 65})]
    errors = [body["error"] for _, body, _ in answers]
    assert errors == ["authorization_pending", "slow_down", "invalid_grant", "unsupported_grant_type",
                      "invalid_request", "invalid_request"]
    for status, body, _ in answers:
        assert status == 400 and body["error_description"] and body["error_description"] == body["message"]
    form = await env.client.post("/v1/device/token", data={"grant_type": "urn:x", "device_code": "y"})
    body = await form.json()
    assert (form.status, body["error"]) == (400, "unsupported_grant_type") and body["error_description"]


async def test_device_authorize_is_limited_per_address(real_discharger):
    """Each start is a durable row: 30 a minute per address (SPEC §11), then 429 with
    Retry-After."""
    env = real_discharger
    for _ in range(30):
        await authorize(env)
    status, body, resp = await env.post("/v1/device/authorize", {"client_name": "one too many"})
    assert status == 429 and int(resp.headers["Retry-After"]) >= 1 and body["error_description"]


async def test_page_look_ups_never_lock_the_user_out_of_approving(real_discharger):
    """Links to /device?user_code=... from another site make a signed-in browser look codes up;
    they count apart from typed codes, so the user can still approve their own."""
    env = real_discharger
    await env.user()
    got = await authorize(env)
    await sign_in(env)
    for i in range(device.LOOKS_PER_USER + 3):
        resp = await env.client.get(f"/device?user_code=BBBB-BB{'BCDFGHJKLMNPQRSTVWXZ'[i % 20]}C")
        assert resp.status in (200, 429)
    assert resp.status == 429 and "Retry-After" in resp.headers
    page = await resp.text()
    assert 'name="user_code"' in page  # the form is still there to type the code into
    resp = await decide(env, got["user_code"])
    assert resp.status == 200 and "Device approved" in await resp.text()


async def test_right_codes_never_count_toward_the_wrong_code_limit(real_discharger):
    """Only wrong codes count: one user approving more devices in a minute than the wrong-code
    limit allows is never throttled (the right code's attempt is forgotten)."""
    env = real_discharger
    await env.user()
    await sign_in(env)
    for _ in range(device.WRONG_CODES_PER_USER + 2):
        got = await authorize(env)
        resp = await decide(env, got["user_code"])
        assert resp.status == 200, await resp.text()
    for _ in range(device.LOOKS_PER_USER + 2):  # and right codes looked up on the page
        got = await authorize(env)
        resp = await env.client.get(f"/device?user_code={got['user_code']}")
        assert resp.status == 200 and "laptop cli" in await resp.text()


async def test_every_device_refusal_says_why(real_discharger, monkeypatch):
    """Each way a device login is refused, with its RFC 8628 code and its exact words."""
    env = real_discharger
    await env.user()
    got = await authorize(env)
    status, body, _ = await poll(env, "not-a-code")
    assert (body["error"], body["error_description"]) == ("invalid_grant", "unknown or already used device code")
    await sign_in(env)
    resp = await decide(env, "BBBB-BBBB")
    assert resp.status == 404 and "no pending device login has that code; check it and try again" in await resp.text()
    for _ in range(device.WRONG_CODES_PER_USER - 1):
        await decide(env, "BBBB-BBBB")
    resp = await decide(env, got["user_code"])
    assert resp.status == 429 and "too many wrong codes; wait a minute and try again" in await resp.text()
    assert 1 <= int(resp.headers["Retry-After"]) <= 61
    looked = None
    for i in range(device.LOOKS_PER_USER + 1):
        looked = await env.client.get(f"/device?user_code=BBBB-BB{'BCDFGHJKLMNPQRSTVWXZ'[i % 20]}C")
    assert "too many codes looked up; wait a minute and try again, or check the code below and decide" \
        in await looked.text()

    later = await authorize(env)
    row = await env.service.store.get_grant("device", lookup=later["user_code"].replace("-", ""))
    monkeypatch.setattr(device, "_now", lambda: float(row.expires_at))  # expired at exactly expires_at
    status, body, _ = await poll(env, later["device_code"])
    assert (body["error"], body["error_description"]) == ("expired_token", "the device code has expired; start again")


async def test_an_approver_disabled_before_the_poll_gets_no_session(real_discharger):
    env = real_discharger
    await env.user()
    got = await authorize(env)
    await sign_in(env)
    assert (await decide(env, got["user_code"])).status == 200
    status, _, _ = await env.post("/v1/users/alice/disable", {}, env.admin)
    assert status == 200
    await unthrottle(env, got["device_code"])
    status, body, _ = await poll(env, got["device_code"])
    assert (status, body["error"], body["error_description"]) == (
        400, "access_denied", "the user who approved this device is disabled")


async def test_a_decided_code_is_not_found_again(real_discharger):
    env = real_discharger
    await env.user()
    await sign_in(env)
    for first in ("approve", "deny"):
        got = await authorize(env)
        assert (await decide(env, got["user_code"], first)).status == 200
        for again in ("approve", "deny"):
            resp = await decide(env, got["user_code"], again)
            assert resp.status == 404, (first, again)
        resp = await env.client.get(f"/device?user_code={got['user_code']}")
        assert "laptop cli" not in await resp.text()


async def test_device_logins_are_audited(real_discharger):
    import structlog

    env = real_discharger
    await env.user()
    with structlog.testing.capture_logs() as logs:
        approved, denied = await authorize(env), await authorize(env)
    assert [e["event"] for e in logs if e["event"].startswith("device_")] == ["device_authorize"] * 2
    await sign_in(env)
    await decide(env, approved["user_code"])
    await decide(env, denied["user_code"], "deny")
    await unthrottle(env, approved["device_code"])
    status, _, _ = await poll(env, approved["device_code"])
    assert status == 200
    rows = [(r.event, r.user, r.outcome) for r in await env.service.store.audit_rows()
            if r.event.startswith("device_")]
    assert rows == [("device_approve", "alice", "ok"), ("device_deny", "alice", "denied"),
                    ("device_login", "alice", "ok")]


async def test_a_code_is_not_found_from_the_instant_it_expires(real_discharger, monkeypatch):
    env = real_discharger
    await env.user()
    got = await authorize(env)
    await sign_in(env)
    row = await env.service.store.get_grant("device", lookup=got["user_code"].replace("-", ""))
    monkeypatch.setattr(device, "_now", lambda: float(row.expires_at))
    resp = await decide(env, got["user_code"])
    assert resp.status == 404
