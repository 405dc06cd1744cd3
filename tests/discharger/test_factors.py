"""Second factors (SPEC §15) through the real discharger's API on both backends: TOTP with
recovery codes at password login, each code used once, wrong codes throttled like passwords,
the admin's reset; and org policies judged at discharge time."""

from __future__ import annotations

import time

import pyotp

from clients.tickets import b64e
from server.audit import Caller
from tests.support import sealed_ticket

PASSWORD = "correct horse"


async def enrol(env, username="alice") -> tuple[pyotp.TOTP, list[str]]:
    factors = env.service.sessions.factors
    enrolment = await factors.begin(username)
    assert enrolment.uri.startswith("otpauth://totp/") and "<svg" in enrolment.qr_svg
    totp = pyotp.TOTP(enrolment.secret)
    codes = await factors.confirm(username, totp.at(time.time() - 30), Caller())  # the step before: within ±1
    return totp, codes


async def login(env, **extra):
    return await env.post("/v1/sessions", {"username": "alice", "password": PASSWORD, **extra})


async def test_a_password_login_needs_the_second_factor_once_enrolled(real_discharger):
    env = real_discharger
    await env.user()
    await env.service.sessions.factors.begin("alice")  # not confirmed: not needed yet
    status, body, _ = await login(env)
    assert status == 201 and body["auth_method"] == "password"
    await env.service.sessions.factors.remove("alice", Caller(), by="test")
    totp, codes = await enrol(env)
    assert len(codes) == 10 and len(set(codes)) == 10
    status, body, _ = await login(env)
    assert status == 401 and body["reason"] == "mfa_required"
    status, body, _ = await login(env, totp="000000" if totp.now() != "000000" else "111111")
    assert status == 401 and body["reason"] == "mfa_invalid"
    code = totp.now()
    status, body, _ = await login(env, totp=code)
    assert status == 201 and body["auth_method"] == "password+totp"
    status, body, _ = await login(env, totp=code)  # the same time step again
    assert status == 401 and body["reason"] == "mfa_invalid"
    status, body, _ = await login(env, totp=codes[0])
    assert status == 201 and body["auth_method"] == "password+totp"
    status, body, _ = await login(env, totp=codes[0])
    assert status == 401 and body["reason"] == "mfa_invalid"
    assert await env.service.store.recovery_left("alice") == 9
    status, body, _ = await login(env, totp=totp.now(), password="wrong horse")
    assert status == 401 and "reason" not in body  # a wrong password says nothing of factors


async def test_wrong_codes_are_failed_logins(real_discharger):
    env = real_discharger
    await env.user()
    totp, _ = await enrol(env)
    wrong = "123456" if totp.now() != "123456" else "654321"
    statuses = [(await login(env, totp=wrong))[0] for _ in range(6)]
    assert statuses[:5] == [401] * 5 and statuses[5] == 429


async def test_the_admin_resets_a_users_factors(real_discharger):
    env = real_discharger
    await env.user()
    await enrol(env)
    resp = await env.client.delete("/v1/users/alice/factors", headers=env.admin)
    assert resp.status == 200 and (await resp.json())["removed"] is True
    status, body, _ = await login(env)
    assert status == 201 and body["auth_method"] == "password"
    resp = await env.client.delete("/v1/users/alice/factors")
    assert resp.status == 401
    resp = await env.client.delete("/v1/users/nobody/factors", headers=env.admin)
    assert resp.status == 404


async def test_an_org_policy_is_judged_at_discharge_time(real_discharger):
    env = real_discharger
    await env.user()
    _, password_session, _ = await login(env)
    status, body, _ = await env.discharge(password_session["session"], b64e(sealed_ticket(env)))
    assert status == 201
    resp = await env.client.put("/v1/orgs/acme/policy", json={"require_mfa": True}, headers=env.admin)
    assert resp.status == 200 and await resp.json() == {"org": "acme", "require_idp": None, "require_mfa": True}
    status, body, _ = await env.discharge(password_session["session"], b64e(sealed_ticket(env)))
    assert status == 403 and body["reason"] == "mfa_policy" and "/account/security" in body["message"]
    totp, _ = await enrol(env)
    _, strong, _ = await login(env, totp=totp.now())
    status, body, _ = await env.discharge(strong["session"], b64e(sealed_ticket(env)))
    assert status == 201 and body["auth_method"] == "password+totp"
    status, body, _ = await env.discharge(strong["session"], b64e(sealed_ticket(env, org="beta")))
    assert status == 403 and "member" in body["message"]  # another org: its own rules
    resp = await env.client.put("/v1/orgs/acme/policy", json={"require_idp": "okta"}, headers=env.admin)
    assert resp.status == 400 and "okta" in (await resp.json())["message"]
    denied = [r for r in await env.service.store.audit_rows("discharge") if r.outcome == "denied"]
    assert denied[0].detail["reason"] == "mfa_policy"


async def test_policies_need_the_admin_and_valid_input(real_discharger):
    env = real_discharger
    resp = await env.client.put("/v1/orgs/acme/policy", json={"require_mfa": True})
    assert resp.status == 401
    for body in ({"require_mfa": "yes"}, {"require_idp": 5}):
        resp = await env.client.put("/v1/orgs/acme/policy", json=body, headers=env.admin)
        assert resp.status == 400
    resp = await env.client.get("/v1/orgs/acme/policy", headers=env.admin)
    assert await resp.json() == {"org": "acme", "require_idp": None, "require_mfa": False}


def test_what_each_sign_in_satisfies():
    from discharger.policies import satisfies
    from discharger.store import OrgPolicy

    mfa, idp, both = OrgPolicy("acme", require_mfa=True), OrgPolicy("acme", "okta"), OrgPolicy("acme", "okta", True)
    assert [satisfies(mfa, m) is None for m in ("password", "password+totp", "password+passkey", "passkey",
                                                "idp:okta")] == [False, True, True, True, False]
    assert [satisfies(idp, m) is None for m in ("password+totp", "idp:other", "idp:okta")] == [False, False, True]
    assert satisfies(both, "idp:okta") is None and satisfies(both, "password+totp")[0] == "idp_required"
    assert satisfies(OrgPolicy("acme"), "password") is None


async def test_a_flow_approved_by_a_browser_that_signed_in_the_wrong_way_is_refused_and_denied(real_discharger):
    import pytest

    from clients.errors import Forbidden

    env = real_discharger
    await env.user()
    await env.client.put("/v1/orgs/acme/policy", json={"require_mfa": True}, headers=env.admin)
    flows = env.service.flows
    started = await flows.start(sealed_ticket(env), None, Caller())
    secret = started.user_url.rsplit("/", 1)[1]
    with pytest.raises(Forbidden) as caught:
        await flows.decide("alice", secret, True, Caller(), auth_method="password")
    assert caught.value.reason == "mfa_policy"
    with pytest.raises(Forbidden):  # the flow was denied: its poll says so
        await flows.poll(started.poll_url.rsplit("/", 1)[1], None, Caller())
    started = await flows.start(sealed_ticket(env), None, Caller())
    row, _ = await flows.decide("alice", started.user_url.rsplit("/", 1)[1], True, Caller(),
                                auth_method="password+totp")
    assert row.status == "approved"
    issued = await flows.poll(started.poll_url.rsplit("/", 1)[1], None, Caller())
    assert issued.auth_method == "password+totp"


async def test_confirming_an_app_is_throttled_like_a_login(real_discharger):
    from clients.errors import RateLimited, Unauthorized

    env = real_discharger
    await env.user()
    enrolment = await env.service.sessions.factors.begin("alice")
    now = pyotp.TOTP(enrolment.secret).now()
    wrong = "123456" if now != "123456" else "654321"
    for _ in range(5):
        try:
            await env.service.sessions.confirm_app("alice", wrong, Caller(client="192.0.2.1"))
        except Unauthorized:
            pass
    import pytest
    with pytest.raises(RateLimited):
        await env.service.sessions.confirm_app("alice", now, Caller(client="192.0.2.1"))


async def test_garbage_in_codes_and_passkeys_is_a_4xx(real_discharger):
    import re

    env = real_discharger
    await env.user()
    await enrol(env)
    for code in ("١٢٣٤٥٦", "12345\u0000", "x" * 32, "12 3456"):
        status, body, _ = await login(env, totp=code)
        assert status in (400, 401), (code, status)
    page = await (await env.client.get("/login")).text()
    csrf = re.search(r'data-csrf="([^"]+)"', page).group(1)
    resp = await env.client.post("/login/passkey/options", json={"csrf": csrf})
    assert resp.status == 200 and (await resp.json())["userVerification"] == "required"
    for credential in ({"rawId": "a"}, {"rawId": "é"}, {"rawId": 5}, None, [], "x", {"rawId": "AAAA", "response": 1}):
        resp = await env.client.post("/login/passkey", json={"csrf": csrf, "credential": credential})
        assert resp.status in (400, 401), (credential, resp.status)
    resp = await env.client.post("/login/passkey", json={"credential": {}})  # no form token
    assert resp.status == 403


async def test_a_second_step_started_before_a_password_change_is_void(real_discharger):
    import pytest

    from clients.errors import Unauthorized

    env = real_discharger
    await env.user()
    totp, _ = await enrol(env)
    sessions = env.service.sessions
    tag = await sessions.password_tag("alice")
    await env.post("/v1/users/alice/password", {"password": "a new passphrase"}, env.admin)
    with pytest.raises(Unauthorized, match="password changed"):
        await sessions.second_factor("alice", totp.now(), Caller(), tag)
    who = await sessions.second_factor("alice", totp.now(), Caller(), await sessions.password_tag("alice"))
    assert who.method == "password+totp"
