"""Service principals and discharges for a CI's ID token (SPEC §16), against the real
discharger and a test issuer serving discovery and JWKS on loopback (tests/support/ci_issuer.py).

Every refusal of an ID token must look the same from outside (401, `no_trust_policy`, one
message); the audit says which check failed. Each case below breaks one rule and keeps the
others, so removing any one check makes its case pass a token it should refuse.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time

import pytest

from clients import tickets, tokens
from clients.tickets import b64d, b64e
from tests.support import sealed_ticket
from tests.support.ci_issuer import Issuer, github_claims, gitlab_claims

AUD = "http://discharger.test"  # the discharger's public URL: the default audience


@pytest.fixture
def issuer():
    it = Issuer()
    it.start()
    yield it
    it.stop()


def principal_ticket(env, principal="ci:deploy", org="acme", role="member") -> bytes:
    key = env.service.keys.public_keys()[0]["key"]
    return tickets.seal(b64d(key), bytes(32), org, 300, "permission", "deploy", role, principal)


async def setup(env, issuer, claims=None, name="deploy", org="acme", role="member", **policy) -> dict:
    status, body, _ = await env.post("/v1/principals", {"org": org, "name": name, "role": role}, env.admin)
    assert status == 201, body
    wanted = claims or {"repository_id": "812345", "ref": "refs/heads/main"}
    status, body, _ = await env.post(f"/v1/principals/ci:{name}/policies",
                                     {"issuer": issuer.url, "claims": wanted, **policy}, env.admin)
    assert status == 201, body
    return body


async def discharge(env, ticket: bytes, id_token: str):
    return await env.post("/v1/discharges", {"ticket": b64e(ticket), "id_token": id_token})


def said(discharge_token: str) -> list[str]:
    return [c.cid.decode() for c in tokens.parse(discharge_token).caveats]


async def refusals(env) -> list[str]:
    rows = await env.service.store.audit_rows("discharge")
    return [r.detail.get("reason") for r in rows if r.outcome == "denied"]


async def test_an_id_token_matching_a_policy_discharges_for_the_principal(real_discharger, issuer):
    env = real_discharger
    policy = await setup(env, issuer)
    status, body, _ = await discharge(env, principal_ticket(env), issuer.sign(github_claims(), audience=AUD))
    assert status == 201, body
    assert "user ci:deploy" in said(body["discharge"]) and body["auth_method"] == "id_token"
    (row,) = [r for r in await env.service.store.audit_rows("discharge") if r.outcome == "ok"]
    assert row.user == "ci:deploy" and row.detail["policy"] == policy["id"] and row.detail["issuer"] == issuer.url


@pytest.mark.parametrize("alg", ["RS256", "ES256"])
async def test_both_signing_algorithms_and_a_gitlab_shaped_token(real_discharger, issuer, alg):
    env = real_discharger
    await setup(env, issuer, {"project_id": "4242", "ref_protected": "true", "environment": "production"})
    status, body, _ = await discharge(env, principal_ticket(env), issuer.sign(gitlab_claims(), audience=AUD, alg=alg))
    assert status == 201, body


def _unsigned(payload: dict, header: dict) -> str:
    enc = lambda d: base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()  # noqa: E731
    return f"{enc(header)}.{enc(payload)}."


BROKEN = {
    # name: how to make the token (issuer, now) -> str; each breaks exactly one rule
    "wrong audience": lambda it, now: it.sign(github_claims(), audience="https://elsewhere.example"),
    "no audience": lambda it, now: it.sign(github_claims(), audience=None),
    "expired": lambda it, now: it.sign(github_claims(), audience=AUD, iat=now - 200, exp=now - 100),
    "not yet valid": lambda it, now: it.sign(github_claims(), audience=AUD, nbf=now + 600),
    "issued in the future": lambda it, now: it.sign(github_claims(), audience=AUD, iat=now + 600, exp=now + 900),
    "too old for the policy": lambda it, now: it.sign(github_claims(), audience=AUD, iat=now - 700, exp=now + 300),
    "no jti": lambda it, now: it.sign(github_claims(), audience=AUD, jti=None),
    "another repository id": lambda it, now: it.sign(github_claims(repository_id="999"), audience=AUD),
    "another ref": lambda it, now: it.sign(github_claims(ref="refs/heads/feature"), audience=AUD),
    "a claim that is not a string": lambda it, now: it.sign({**github_claims(), "repository_id": 812345}, audience=AUD),
    "iss of another issuer": lambda it, now: it.sign(github_claims(), audience=AUD, iss="https://token.actions.githubusercontent.com"),
    "iss with a trailing slash": lambda it, now: it.sign(github_claims(), audience=AUD, iss=it.url + "/"),
    "alg none": lambda it, now: _unsigned({**github_claims(), "iss": it.url, "aud": AUD, "iat": now, "exp": now + 300,
                                           "jti": "j-none"}, {"alg": "none", "kid": "rs-1"}),
    "HS256 with the public key as secret": lambda it, now: _hs256(it, now),
    "a key the issuer does not publish": lambda it, now: it.sign(github_claims(), audience=AUD, key=_stranger()),
    "a signature over other claims": lambda it, now: _swap_payload(it.sign(github_claims(), audience=AUD),
                                                                   {**github_claims(repository_id="999"), "iss": it.url,
                                                                    "aud": AUD, "iat": now, "exp": now + 300, "jti": "x"}),
    "ES256 header on the RSA key": lambda it, now: _swap_header(it.sign(github_claims(), audience=AUD), {"alg": "ES256", "kid": "rs-1"}),
    "garbage": lambda it, now: "not.a.jwt",
    "alg is a list (unsigned)": lambda it, now: _unsigned({**github_claims(), "iss": it.url, "aud": AUD, "iat": now,
                                                           "exp": now + 300, "jti": "j-list"},
                                                          {"alg": ["RS256"], "kid": "rs-1"}),
    "exp NaN": lambda it, now: it.sign(github_claims(), audience=AUD, exp=float("nan")),
    "exp Infinity": lambda it, now: it.sign(github_claims(), audience=AUD, exp=float("inf")),
    "iat NaN (would skip the age check)": lambda it, now: it.sign(github_claims(), audience=AUD, iat=float("nan")),
    "iat below any float": lambda it, now: it.sign(github_claims(), audience=AUD, iat=-10**400),
    "exp past 2^53": lambda it, now: it.sign(github_claims(), audience=AUD, exp=10**20),
    "exp a boolean": lambda it, now: it.sign(github_claims(), audience=AUD, exp=True),
    "a key of an unknown curve": lambda it, now: it.sign(github_claims(), audience=AUD, alg="ES256",
                                                         header={"kid": "odd"}),
    "oversized": lambda it, now: it.sign({**github_claims(), "pad": "x" * 20_000}, audience=AUD),
}


def _stranger():
    from joserfc.jwk import RSAKey
    return RSAKey.generate_key(2048, parameters={"kid": "rs-1"})  # the issuer's kid, another key


def _hs256(it, now) -> str:
    from joserfc import jws
    from joserfc.jwk import OctKey
    secret = OctKey.import_key(json.dumps(it.keys["RS256"].as_dict(private=False)).encode())
    payload = {**github_claims(), "iss": it.url, "aud": AUD, "iat": now, "exp": now + 300, "jti": "j-hs"}
    return jws.serialize_compact({"alg": "HS256", "kid": "rs-1"}, json.dumps(payload), secret, algorithms=["HS256"])


def _swap_payload(token: str, payload: dict) -> str:
    head, _, sig = token.split(".")
    body = base64.urlsafe_b64encode(json.dumps(payload).encode()).rstrip(b"=").decode()
    return f"{head}.{body}.{sig}"


def _swap_header(token: str, header: dict) -> str:
    _, body, sig = token.split(".")
    head = base64.urlsafe_b64encode(json.dumps(header).encode()).rstrip(b"=").decode()
    return f"{head}.{body}.{sig}"


async def test_every_broken_token_gets_the_same_401(real_discharger, issuer):
    env = real_discharger
    issuer.extra_jwks = [{"kty": "EC", "crv": "P-999", "kid": "odd", "x": "AA", "y": "AA", "use": "sig"}]
    await setup(env, issuer)
    now = int(time.time())
    answers = {}
    for name, make in BROKEN.items():
        status, body, _ = await discharge(env, principal_ticket(env), make(issuer, now))
        answers[name] = (status, body.get("error"), body.get("reason"), body.get("message"))
    expected = (401, "unauthorized", "no_trust_policy",
                "this ID token matches no trust policy of the principal this ticket is for")
    assert {k: v for k, v in answers.items() if v != expected} == {}
    rows = [r for r in await env.service.store.audit_rows("discharge") if r.outcome == "denied"]
    assert {(r.user, r.org, r.detail["auth_method"]) for r in rows} == {("ci:deploy", "acme", "id_token")}
    reasons = await refusals(env)
    assert len(reasons) == len(BROKEN) and all(reasons)  # each failure audited with its check
    for check in ("aud", "too_old", "claim:repository_id", "claim:ref", "id_token_alg", "id_token_exp", "id_token_nbf",
                  "id_token_iat", "id_token_jti", "id_token_signature", "issuer_not_trusted"):
        assert any(r.endswith(check) for r in reasons), (check, reasons)


async def test_a_replayed_token_is_refused_as_a_replay(real_discharger, issuer):
    env = real_discharger
    await setup(env, issuer)
    token = issuer.sign(github_claims(), audience=AUD)
    assert (await discharge(env, principal_ticket(env), token))[0] == 201
    status, body, _ = await discharge(env, principal_ticket(env), token)
    assert (status, body["reason"]) == (401, "id_token_replayed")
    assert body["message"] == "this ID token was used already; ask the CI for a fresh one"
    assert await refusals(env) == ["id_token_replayed"]


async def test_replays_are_refused_by_every_replica(real_discharger, issuer, aiohttp_client, discharger_config):
    """(iss, jti) is claimed in the database: a second discharger on it refuses the replay."""
    from discharger.app import create_app
    env = real_discharger
    await setup(env, issuer)
    other = await aiohttp_client(create_app(discharger_config))
    token = issuer.sign(github_claims(), audience=AUD)
    ticket = b64e(principal_ticket(env))
    answers = await asyncio.gather(env.client.post("/v1/discharges", json={"ticket": ticket, "id_token": token}),
                                   other.post("/v1/discharges", json={"ticket": ticket, "id_token": token}))
    assert sorted(r.status for r in answers) == [201, 401]


async def test_prefix_matching_only_where_the_policy_says(real_discharger, issuer):
    env = real_discharger
    await setup(env, issuer, {"repository_id": "812345", "sub": "repo:acme/app:*"})
    ok = issuer.sign(github_claims(), audience=AUD)  # sub repo:acme/app:environment:production
    assert (await discharge(env, principal_ticket(env), ok))[0] == 201
    lookalike = issuer.sign({**github_claims(), "sub": "repo:acme/app-evil:ref:refs/heads/main"}, audience=AUD)
    assert (await discharge(env, principal_ticket(env), lookalike))[0] == 401
    # an exact value never matches as a prefix
    await setup(env, issuer, {"repository_id": "812345", "workflow": "deploy"}, name="exact")
    longer = issuer.sign({**github_claims(), "workflow": "deploy-evil"}, audience=AUD)
    assert (await discharge(env, principal_ticket(env, "ci:exact"), longer))[0] == 401


async def test_policies_are_checked_when_made(real_discharger, issuer):
    env = real_discharger
    await env.post("/v1/principals", {"org": "acme", "name": "deploy"}, env.admin)
    bad = [
        {"issuer": issuer.url, "claims": {"sub": "repo:acme/app:*"}},  # no exact claim
        {"issuer": issuer.url, "claims": {"sub": "*"}},  # '*' alone
        {"issuer": issuer.url, "claims": {"sub": "repo:acme*"}},  # '*' not after / or :
        {"issuer": issuer.url, "claims": {"sub": "repo:*:main"}},  # '*' inside
        {"issuer": issuer.url, "claims": {}},
        {"issuer": "http://ci.example.com", "claims": {"a": "b"}},  # http to a non-loopback host
        {"issuer": "https://token.actions.githubusercontent.com", "claims": {"repository": "acme/app"}},  # no id
        {"issuer": "https://gitlab.com", "claims": {"project_path": "acme/app"}},
        {"issuer": "https://gitlab.com", "claims": {"project_id": "4242/*"}},  # the id only as a prefix
        {"issuer": "https://token.actions.githubusercontent.com/acme-enterprise", "claims": {"repository": "acme/app"}},
        {"issuer": "https://github.acme.example/_services/token", "claims": {"repository": "acme/app"}},  # GHES
        {"issuer": issuer.url, "claims": {"a": "b"}, "max_age": 0},
        {"issuer": issuer.url, "claims": {"a": "b"}, "max_age": 86400},
    ]
    for body in bad:
        status, answer, _ = await env.post("/v1/principals/ci:deploy/policies", body, env.admin)
        assert status == 400, (body, answer)
    good = {"issuer": "https://token.actions.githubusercontent.com",
            "claims": {"repository_id": "812345", "sub": "repo:acme/app:environment:*"}}
    assert (await env.post("/v1/principals/ci:deploy/policies", good, env.admin))[0] == 201
    assert (await env.post("/v1/principals/ci:nobody/policies", good, env.admin))[0] == 404
    assert (await env.post("/v1/principals/ci:deploy/policies", good))[0] == 401  # admin only


async def test_principal_names_and_lifecycle(real_discharger, issuer):
    env = real_discharger
    for name in ("Deploy", "ci:", "a" * 41, "ci:x y", "deploy_1"):
        assert (await env.post("/v1/principals", {"org": "acme", "name": name}, env.admin))[0] == 400, name
    assert (await env.post("/v1/principals", {"org": "acme", "name": "ci:deploy"}, env.admin))[0] == 201
    assert (await env.post("/v1/principals", {"org": "acme", "name": "deploy"}, env.admin))[0] == 409
    resp = await env.client.get("/v1/principals", params={"org": "acme"}, headers=env.admin)
    assert [p["name"] for p in (await resp.json())["principals"]] == ["ci:deploy"]
    # no password, no session: ci:deploy is not a user
    assert (await env.post("/v1/sessions", {"username": "ci:deploy", "password": "anything at all"}))[0] in (400, 401)
    resp = await env.client.delete("/v1/principals/ci:deploy", headers=env.admin)
    assert resp.status == 204
    assert (await env.client.get("/v1/principals/ci:deploy", headers=env.admin)).status == 404


async def test_a_disabled_principal_discharges_nothing_until_enabled(real_discharger, issuer):
    env = real_discharger
    await setup(env, issuer)
    assert (await env.post("/v1/principals/ci:deploy/disable", {}, env.admin))[0] == 200
    status, body, _ = await discharge(env, principal_ticket(env), issuer.sign(github_claims(), audience=AUD))
    assert (status, body["reason"]) == (401, "no_trust_policy")
    assert "principal_disabled" in await refusals(env)
    assert (await env.post("/v1/principals/ci:deploy/enable", {}, env.admin))[0] == 200
    assert (await discharge(env, principal_ticket(env), issuer.sign(github_claims(), audience=AUD)))[0] == 201


async def test_org_and_role_of_the_principal_bind_it(real_discharger, issuer):
    env = real_discharger
    await setup(env, issuer)  # ci:deploy: member of acme
    status, body, _ = await discharge(env, principal_ticket(env, org="globex"), issuer.sign(github_claims(), audience=AUD))
    assert status == 403 and "not a member of org 'globex'" in body["message"]
    status, body, _ = await discharge(env, principal_ticket(env, role="admin"), issuer.sign(github_claims(), audience=AUD))
    assert status == 403 and "role admin" in body["message"]
    assert await refusals(env) == ["org_or_role", "org_or_role"]


async def test_a_principal_discharges_only_tickets_sealed_for_it(real_discharger, issuer):
    env = real_discharger
    await setup(env, issuer)  # ci:deploy trusts repository 812345
    await setup(env, issuer, {"repository_id": "555"}, name="other")
    # a ticket for ci:deploy with a token that only ci:other's policy accepts
    token = issuer.sign(github_claims(repository_id="555"), audience=AUD)
    assert (await discharge(env, principal_ticket(env, "ci:deploy"), token))[0] == 401
    # a ticket for nobody in particular is for people only
    status, body, _ = await discharge(env, sealed_ticket(env), issuer.sign(github_claims(), audience=AUD))
    assert status == 403 and "not sealed for a service principal" in body["message"]


async def test_a_persons_session_cannot_discharge_a_principals_ticket(real_discharger, issuer):
    env = real_discharger
    await setup(env, issuer)
    await env.user()
    session = await env.login()
    status, body, _ = await env.discharge(session, b64e(principal_ticket(env)))
    assert status == 403 and "only that principal" in body["message"]


async def test_an_unknown_key_id_refetches_the_keys_once_a_minute(real_discharger, issuer):
    env = real_discharger
    await setup(env, issuer)
    assert (await discharge(env, principal_ticket(env), issuer.sign(github_claims(), audience=AUD)))[0] == 201
    issuer.rotate("RS256")  # the old key is gone, rs-2 is new
    fetched = issuer.jwks_fetches
    new = issuer.sign(github_claims(), audience=AUD)
    cached = env.service.principals.issuers._all[issuer.url]
    assert (await discharge(env, principal_ticket(env), new))[0] == 401  # refetched less than a minute ago
    assert issuer.jwks_fetches == fetched
    cached.jwks_at -= 61
    assert (await discharge(env, principal_ticket(env), issuer.sign(github_claims(), audience=AUD)))[0] == 201
    assert issuer.jwks_fetches == fetched + 1
    # a token under the retired key no longer verifies, and a flood of unknown kids costs one fetch a minute
    for _ in range(5):
        assert (await discharge(env, principal_ticket(env), issuer.sign(github_claims(), audience=AUD,
                                                                           key=_stranger_kid("rs-9"))))[0] == 401
    assert issuer.jwks_fetches == fetched + 1


def _stranger_kid(kid):
    from joserfc.jwk import RSAKey
    return RSAKey.generate_key(2048, parameters={"kid": kid})


async def test_an_oversized_or_junk_key_set_is_refused_not_a_500(real_discharger, issuer):
    env = real_discharger
    await setup(env, issuer)
    issuer.jwks_body = b'{"keys": [' + b'{"kty": "RSA"},' * 80_000 + b'{}]}'  # over 1 MiB
    status, body, _ = await discharge(env, principal_ticket(env), issuer.sign(github_claims(), audience=AUD))
    assert status == 503, body
    issuer.jwks_body = b'{"keys": "junk"}'
    env.service.principals.issuers._tried.clear()
    status, _, _ = await discharge(env, principal_ticket(env), issuer.sign(github_claims(), audience=AUD))
    assert status == 503


async def test_an_unreachable_issuer_is_a_503_the_job_may_retry(real_discharger, issuer):
    env = real_discharger
    await setup(env, issuer)
    token = issuer.sign(github_claims(), audience=AUD)
    issuer.stop()
    await asyncio.sleep(0.2)
    status, body, resp = await discharge(env, principal_ticket(env), token)
    assert status == 503 and resp.headers.get("Retry-After")


async def test_org_policies_are_for_people_not_principals(real_discharger, issuer):
    """An org requiring a second factor or a provider still lets its CI principal discharge:
    its proof is the ID token, judged by the trust policy (SPEC §15: principals are exempt)."""
    env = real_discharger
    await setup(env, issuer)
    resp = await env.client.put("/v1/orgs/acme/policy", json={"require_mfa": True}, headers=env.admin)
    assert resp.status == 200
    assert (await discharge(env, principal_ticket(env), issuer.sign(github_claims(), audience=AUD)))[0] == 201


async def test_oauth_metadata(real_discharger):
    resp = await real_discharger.client.get("/.well-known/oauth-authorization-server")
    body = await resp.json()
    assert body == {"issuer": AUD, "device_authorization_endpoint": f"{AUD}/v1/device/authorize",
                    "token_endpoint": f"{AUD}/v1/device/token", "response_types_supported": [],
                    "grant_types_supported": ["urn:ietf:params:oauth:grant-type:device_code"],
                    "token_endpoint_auth_methods_supported": ["none"]}


async def test_requests_during_the_first_discovery_wait_for_it(real_discharger, issuer):
    env = real_discharger
    await setup(env, issuer)
    issuer.discovery_delay = 0.5

    async def later(delay):
        await asyncio.sleep(delay)
        return await discharge(env, principal_ticket(env), issuer.sign(github_claims(), audience=AUD))
    answers = await asyncio.gather(*(later(d) for d in (0, 0.1, 0.2, 0.3)))
    assert [a[0] for a in answers] == [201] * 4


async def test_an_interactive_discharge_of_a_principals_ticket_is_refused_at_once(real_discharger, issuer):
    env = real_discharger
    status, body, _ = await env.post("/v1/discharges", {"ticket": b64e(principal_ticket(env)), "interactive": True})
    assert status == 403 and "ci:deploy" in body["message"]


async def test_an_id_token_is_spent_for_as_long_as_any_policy_could_take_it(real_discharger, issuer, monkeypatch):
    """Two policies with different max ages: a token spent under the short one is still spent
    when it is old enough for only the long one to match."""
    import discharger.principals as principals

    env = real_discharger
    await setup(env, issuer, {"repository_id": "812345"}, max_age=60)
    await env.post("/v1/principals/ci:deploy/policies",
                   {"issuer": issuer.url, "claims": {"repository_id": "812345"}, "max_age": 3600}, env.admin)
    now = int(time.time())
    token = issuer.sign(github_claims(), audience=AUD, iat=now, exp=now + 3600)
    assert (await discharge(env, principal_ticket(env), token))[0] == 201

    class Later:
        @staticmethod
        def time():
            return now + 600

    monkeypatch.setattr(principals, "time", Later)
    status, body, _ = await discharge(env, principal_ticket(env), token)
    assert (status, body["reason"]) == (401, "id_token_replayed")


async def test_refused_id_tokens_are_rate_limited_per_address(real_discharger, issuer):
    from discharger.app import REFUSALS_PER_MINUTE

    env = real_discharger
    await setup(env, issuer)
    ticket = principal_ticket(env)
    for _ in range(REFUSALS_PER_MINUTE):
        assert (await discharge(env, ticket, "not.a.jwt"))[0] == 401
    status, body, resp = await discharge(env, ticket, issuer.sign(github_claims(), audience=AUD))
    assert status == 429 and resp.headers["Retry-After"]


async def test_untrust_removes_exactly_one_policy(real_discharger, issuer):
    env = real_discharger
    first = await setup(env, issuer)
    second = (await env.post("/v1/principals/ci:deploy/policies",
                             {"issuer": issuer.url, "claims": {"repository_id": "555"}}, env.admin))[1]
    resp = await env.client.delete(f"/v1/principals/ci:deploy/policies/{first['id']}", headers=env.admin)
    assert resp.status == 204
    assert (await env.client.delete(f"/v1/principals/ci:deploy/policies/{first['id']}", headers=env.admin)).status == 404
    assert (await env.client.delete(f"/v1/principals/ci:other/policies/{second['id']}", headers=env.admin)).status == 404
    assert (await env.client.delete(f"/v1/principals/ci:deploy/policies/{second['id']}")).status == 401
    got = await (await env.client.get("/v1/principals/ci:deploy", headers=env.admin)).json()
    assert [p["id"] for p in got["policies"]] == [second["id"]]
    # the removed policy no longer speaks for it; the other one still does
    assert (await discharge(env, principal_ticket(env), issuer.sign(github_claims(), audience=AUD)))[0] == 401
    assert (await discharge(env, principal_ticket(env), issuer.sign(github_claims(repository_id="555"),
                                                                     audience=AUD)))[0] == 201
    events = [(r.event, r.user, (r.detail or {}).get("policy")) for r in await env.service.store.audit_rows()]
    assert ("principal_untrust", "ci:deploy", first["id"]) in events


async def test_disable_and_enable_answer_the_principal_and_are_audited(real_discharger, issuer):
    env = real_discharger
    await setup(env, issuer)
    status, body, _ = await env.post("/v1/principals/deploy/disable", {}, env.admin)  # NAME or ci:NAME
    assert status == 200 and body["name"] == "ci:deploy" and body["disabled"] is True
    status, body, _ = await env.post("/v1/principals/ci:deploy/enable", {}, env.admin)
    assert status == 200 and body["disabled"] is False and len(body["policies"]) == 1
    assert (await env.post("/v1/principals/ci:ghost/disable", {}, env.admin))[0] == 404
    assert (await env.post("/v1/principals/ci:deploy/disable", {}))[0] == 401
    events = [(r.event, r.user) for r in await env.service.store.audit_rows() if r.event.startswith("principal_")]
    assert ("principal_disable", "ci:deploy") in events and ("principal_enable", "ci:deploy") in events
    assert (await env.client.delete("/v1/principals/ci:ghost", headers=env.admin)).status == 404


@pytest.mark.parametrize("value, ok", [(2**53 - 1, True), (2**53, False), (-(2**53), False), (1.5, True),
                                       (1.5e15, True), (1e16, False), (1e20, False), (-1e20, False),
                                       (float("inf"), False), (float("nan"), False), (True, False), ("1", False),
                                       (None, False)])
def test_time_claims_are_finite_numbers_within_2_to_the_53(value, ok):
    from discharger.id_tokens import _number
    assert _number(value) is ok


async def test_a_successful_discharge_is_audited_with_subject_and_the_jti_kept_past_expiry(real_discharger, issuer):
    env = real_discharger
    await setup(env, issuer)
    now = int(time.time())
    token = issuer.sign(github_claims(), audience=AUD, iat=now, exp=now + 120, jti="jti-audit")
    assert (await discharge(env, principal_ticket(env), token))[0] == 201
    (row,) = [r for r in await env.service.store.audit_rows("discharge") if r.outcome == "ok"]
    assert row.detail["subject"] == "repo:acme/app:environment:production" and row.detail["auth_method"] == "id_token"
    # claimed until exp + the 60 s leeway: a claim for that moment is refused, one just after is not
    store = env.service.store
    assert not await store.claim_id_token(issuer.url, "jti-audit", now + 999, now + 179)
    assert await store.claim_id_token(issuer.url, "jti-audit", now + 999, now + 180)


async def test_jti_and_subject_bounds_and_an_unknown_principal(real_discharger, issuer):
    env = real_discharger
    await setup(env, issuer)
    for jti, status in (("", 401), ("j" * 257, 401), ("j" * 256, 201)):
        got = await discharge(env, principal_ticket(env), issuer.sign(github_claims(), audience=AUD, jti=jti))
        assert got[0] == status, len(jti)
    long_sub = issuer.sign({**github_claims(), "sub": "s" * 300}, audience=AUD)
    assert (await discharge(env, principal_ticket(env), long_sub))[0] == 201
    subjects = [r.detail["subject"] for r in await env.service.store.audit_rows("discharge") if r.outcome == "ok"]
    assert subjects[-1] == "s" * 256
    assert (await discharge(env, principal_ticket(env, "ci:ghost"), issuer.sign(github_claims(), audience=AUD)))[0] \
        == 401
    assert (await refusals(env))[-1] == "principal_unknown"
    assert (await env.post("/v1/discharges", {"ticket": b64e(principal_ticket(env)), "id_token": ""}))[0] == 400


async def test_a_trust_policy_is_audited_whole(real_discharger, issuer):
    env = real_discharger
    policy = await setup(env, issuer, {"repository_id": "812345"}, audience="https://login.example", max_age=120)
    assert policy["audience"] == "https://login.example" and policy["max_age"] == 120 and len(policy["id"]) == 8
    (row,) = await env.service.store.audit_rows("principal_trust")
    assert row.user == "ci:deploy" and row.detail == {"policy": policy["id"], "issuer": issuer.url,
                                                       "audience": "https://login.example",
                                                       "claims": {"repository_id": "812345"}, "max_age": 120}
    status, body, _ = await env.post("/v1/principals/ci:deploy/policies",
                                     {"issuer": issuer.url, "claims": {"a": "b"}, "audience": ""}, env.admin)
    assert status == 400 and "audience" in body["message"]


async def test_the_age_limit_is_max_age_plus_the_leeway(real_discharger, issuer):
    env = real_discharger
    await setup(env, issuer)  # max_age 600 s
    now = int(time.time())
    young = issuer.sign(github_claims(), audience=AUD, iat=now - 640, exp=now + 300)  # 640 <= 600 + 60
    assert (await discharge(env, principal_ticket(env), young))[0] == 201
    old = issuer.sign(github_claims(), audience=AUD, iat=now - 700, exp=now + 300)
    assert (await discharge(env, principal_ticket(env), old))[0] == 401


@pytest.mark.parametrize("payload, reason", [(b"not json", "id_token_claims"), (b"[1, 2]", "id_token_claims"),
                                             (b'{"exp": NaN}', "id_token_claims")])
async def test_claims_that_are_not_an_object_are_refused_as_such(payload, reason):
    from joserfc import jws

    from discharger.id_tokens import Issuer, SignInRefused
    from tests.support.ci_issuer import Issuer as TestIssuer

    keys = TestIssuer().keys
    it = Issuer("https://ci.example")
    it.metadata = {"issuer": it.url, "id_token_signing_alg_values_supported": ["RS256"]}
    it.jwks = {"rs-1": keys["RS256"].as_dict(private=False)}
    token = jws.serialize_compact({"alg": "RS256", "kid": "rs-1"}, payload, keys["RS256"], algorithms=["RS256"])
    with pytest.raises(SignInRefused) as e:
        await it.verify(None, token, time.time())
    assert e.value.reason == reason and e.value.message == "the provider's answer could not be trusted: its claims are malformed"
