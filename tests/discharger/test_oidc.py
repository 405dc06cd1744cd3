"""The ID token's checks (SPEC §15), each provoked alone with every other rule satisfied. The
tokens are signed here with keys made here, since a real provider never signs a bad one;
tests/discharger/test_federation.py signs in through a real provider."""

from __future__ import annotations

import base64
import json
import time
import warnings

import pytest
from joserfc import jws
from joserfc.jwk import ECKey, OctKey, OKPKey, RSAKey, SecurityWarning

from discharger.oidc import Provider, SignInRefused, challenge
from discharger.providers import ProviderSettings

ISSUER = "https://idp.example"
NONCE = "n-0S6_WzA2Mj"
RSA = RSAKey.generate_key(2048, parameters={"kid": "rs1", "use": "sig"})
EC = ECKey.generate_key("P-256", parameters={"kid": "es1", "use": "sig"})
ED = OKPKey.generate_key("Ed25519", parameters={"kid": "ed1", "use": "sig"})


def provider(announced=("RS256", "ES256", "EdDSA", "PS256")) -> Provider:
    p = Provider(ProviderSettings("acme", "Acme", ISSUER, "sable", "sable-secret"))
    p.metadata = {"issuer": ISSUER, "id_token_signing_alg_values_supported": list(announced)}
    p.jwks = {k.kid: k.as_dict(private=False) for k in (RSA, EC, ED)}
    p.problem = None
    return p


def claims(**changes) -> dict:
    now = int(time.time())
    base = {"iss": ISSUER, "aud": "sable", "sub": "alice", "exp": now + 300, "iat": now, "nonce": NONCE}
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def sign(payload: dict, key=RSA, alg="RS256", **header) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SecurityWarning)
        return jws.serialize_compact({"alg": alg, "kid": key.kid, **header}, json.dumps(payload), key,
                                     algorithms=[alg])


async def check(token: str, p: Provider | None = None, nonce: str = NONCE) -> dict:
    return await (p or provider()).check_id_token(None, token, nonce)


@pytest.mark.parametrize("key, alg", [(RSA, "RS256"), (RSA, "PS256"), (EC, "ES256"), (ED, "EdDSA")])
async def test_each_accepted_algorithm_verifies(key, alg):
    assert (await check(sign(claims(), key, alg)))["sub"] == "alice"


async def test_aud_may_be_a_list_and_azp_our_client():
    assert await check(sign(claims(aud=["other", "sable"], azp="sable")))


# What the person is told for each reason (the page shows it after "could not be trusted: ").
WHY = {
    "id_token_alg": "its algorithm is not one Sable accepts",
    "id_token_kid": "its key id is malformed",
    "id_token_key": "it was signed with a key the provider does not publish",
    "id_token_signature": "its signature does not verify",
    "id_token_claims": "its claims are malformed",
    "id_token_iss": "it was issued by another provider",
    "id_token_aud": "it was issued for another application",
    "id_token_azp": "it was issued for another application",
    "id_token_exp": "it has expired",
    "id_token_iat": "it was issued in the future",
    "id_token_nbf": "it is not valid yet",
    "id_token_nonce": "it belongs to another sign-in",
    "id_token_sub": "it names nobody",
    "id_token_format": "it is not a signed token",
}


async def refused(token: str, reason: str, p: Provider | None = None, nonce: str = NONCE, now=None) -> None:
    with pytest.raises(SignInRefused) as caught:
        await (p or provider()).check_id_token(None, token, nonce, now)
    assert caught.value.reason == reason
    if reason == "id_token_key" and "does not fit" in caught.value.message:
        assert caught.value.message == "the provider's answer could not be trusted: its key does not fit its algorithm"
    else:
        assert caught.value.message == f"the provider's answer could not be trusted: {WHY[reason]}"
    assert not isinstance(token, str) or not token or token not in caught.value.message


def unsigned(payload: dict) -> str:
    def part(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
    header = json.dumps({"alg": "none", "kid": "rs1"}).encode()
    return f"{part(header)}.{part(json.dumps(payload).encode())}."


async def test_alg_none_is_refused():
    await refused(unsigned(claims()), "id_token_alg")


async def test_an_hmac_keyed_with_the_client_secret_is_refused():
    secret = OctKey.import_key(b"sable-secret" * 3, {"kid": "rs1"})
    await refused(sign(claims(), secret, "HS256"), "id_token_alg")


async def test_an_algorithm_the_provider_does_not_announce_is_refused():
    await refused(sign(claims(), EC, "ES256"), "id_token_alg", provider(announced=("RS256",)))


async def test_a_key_of_the_wrong_type_for_the_algorithm_is_refused():
    # An ES256 header naming the RSA key's id: the key does not fit the algorithm.
    forged = sign(claims(), EC, "ES256", kid="rs1")
    await refused(forged, "id_token_key")


async def test_an_unknown_key_id_is_refused():
    other = RSAKey.generate_key(2048, parameters={"kid": "elsewhere"})
    await refused(sign(claims(), other, "RS256"), "id_token_key")


async def test_a_signature_by_another_key_under_a_known_id_is_refused():
    other = RSAKey.generate_key(2048, parameters={"kid": "rs1"})
    await refused(sign(claims(), other, "RS256"), "id_token_signature")


@pytest.mark.parametrize("changes, reason", [
    ({"iss": "https://evil.example"}, "id_token_iss"),
    ({"iss": None}, "id_token_iss"),
    ({"aud": "other"}, "id_token_aud"),
    ({"aud": ["other"]}, "id_token_aud"),
    ({"aud": None}, "id_token_aud"),
    ({"azp": "other"}, "id_token_azp"),
    ({"exp": -61}, "id_token_exp"),  # seconds from now (the list is made at collection)
    ({"exp": None}, "id_token_exp"),
    ({"exp": "tomorrow"}, "id_token_exp"),
    ({"iat": +120}, "id_token_iat"),
    ({"nbf": +120}, "id_token_nbf"),
    ({"nbf": "soon"}, "id_token_nbf"),
    ({"aud": ["sable", "other"]}, "id_token_azp"),  # several audiences: azp must name us
    ({"iat": None}, "id_token_iat"),
    ({"nonce": "another"}, "id_token_nonce"),
    ({"nonce": None}, "id_token_nonce"),
    ({"sub": None}, "id_token_sub"),
    ({"sub": ""}, "id_token_sub"),
])
async def test_each_claim_check(changes, reason):
    now = int(time.time())
    changes = {k: now + v if k in ("exp", "iat", "nbf") and isinstance(v, int) else v for k, v in changes.items()}
    await refused(sign(claims(**changes)), reason)


async def test_the_leeway_is_sixty_seconds():
    now = int(time.time())
    assert await check(sign(claims(exp=now - 50, iat=now + 50)))


@pytest.mark.parametrize("token", ["", "a.b", "a.b.c.d", "!!!.e30.x", "W10.e30.x", "x" * 20000 + ".e30.x", 5, None])
async def test_garbage_is_refused(token):
    await refused(token, "id_token_format")


async def test_the_claims_must_be_an_object():
    await refused(sign([1, 2]), "id_token_claims")  # type: ignore[arg-type]


async def test_the_boundaries_of_each_time_and_of_sub():
    now = 1_900_000_000
    good = dict(exp=now - 60, iat=now + 60, nbf=now + 60)
    assert await provider().check_id_token(None, sign(claims(**good)), NONCE, now)
    assert await provider().check_id_token(None, sign(claims(nbf=now, iat=now, exp=now + 1)), NONCE, now)
    await refused(sign(claims(**{**good, "exp": now - 61})), "id_token_exp", now=now)
    await refused(sign(claims(**{**good, "iat": now + 61})), "id_token_iat", now=now)
    await refused(sign(claims(**{**good, "nbf": now + 61})), "id_token_nbf", now=now)
    await refused(sign(claims(**{**good, "exp": True})), "id_token_exp", now=now)
    await refused(sign(claims(**{**good, "iat": True})), "id_token_iat", now=now)
    await refused(sign(claims(**{**good, "nbf": True})), "id_token_nbf", now=now)
    assert await provider().check_id_token(None, sign(claims(**good, sub="s" * 255)), NONCE, now)
    await refused(sign(claims(**good, sub="s" * 256)), "id_token_sub", now=now)
    await refused(sign(claims(**good, sub=5)), "id_token_sub", now=now)


async def test_key_ids_and_the_keys_they_name():
    def part(data) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()
    await refused(f"{part({'alg': 'RS256', 'kid': 5})}.{part(claims())}.x", "id_token_kid")
    unnamed = provider()
    unnamed.jwks = {"": RSA.as_dict(private=False)}
    token = jws.serialize_compact({"alg": "RS256"}, json.dumps(claims()), RSA, algorithms=["RS256"])
    assert await unnamed.check_id_token(None, token, NONCE)  # no kid: the provider's one unnamed key
    for change in ({"alg": "RS512"}, {"use": "enc"}):
        p = provider()
        p.jwks["rs1"] = {**p.jwks["rs1"], **change}
        await refused(sign(claims()), "id_token_key", p)
    plain = provider()
    del plain.metadata["id_token_signing_alg_values_supported"]  # absent: RS256 only (OIDC Discovery)
    assert await plain.check_id_token(None, sign(claims()), NONCE)
    await refused(sign(claims(), EC, "ES256"), "id_token_alg", plain)


def test_pkce_s256_is_rfc_7636s_example():
    assert challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk") == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


async def test_an_unknown_key_id_refetches_the_keys_at_most_once_a_minute(aiohttp_server):
    """A provider that rotates its keys: the first token under a new kid fetches the key set
    again; a flood of unknown kids costs one fetch a minute. (The key set is served here by a
    bare endpoint: the cache is what is tested; test_federation signs in through a real provider.)"""
    import aiohttp
    from aiohttp import web

    fetches = []
    published = {"keys": [RSA.as_dict(private=False)]}

    async def jwks(request):
        fetches.append(time.monotonic())
        return web.json_response(published)

    app = web.Application()
    app.router.add_get("/jwks", jwks)
    server = await aiohttp_server(app)
    p = provider()
    p.metadata["jwks_uri"] = str(server.make_url("/jwks"))
    p.jwks = {}
    p.jwks_at = 0.0  # long ago
    rotated = RSAKey.generate_key(2048, parameters={"kid": "rs2", "use": "sig"})
    published["keys"].append(rotated.as_dict(private=False))
    async with aiohttp.ClientSession() as http:
        assert (await p.check_id_token(http, sign(claims(), rotated), NONCE))["sub"] == "alice"
        assert len(fetches) == 1
        stranger = RSAKey.generate_key(2048, parameters={"kid": "nobody"})
        for _ in range(5):
            with pytest.raises(SignInRefused):
                await p.check_id_token(http, sign(claims(), stranger), NONCE)
        assert len(fetches) == 1  # within the minute: no refetch
        p.jwks_at -= 61
        with pytest.raises(SignInRefused):
            await p.check_id_token(http, sign(claims(), stranger), NONCE)
        assert len(fetches) == 2


async def test_fetches_are_capped_and_never_follow_a_redirect_to_another_host(aiohttp_server):
    import aiohttp
    from aiohttp import web

    from clients.errors import Unavailable
    from discharger.id_tokens import MAX_DOCUMENT, fetch_json

    async def big(request):
        return web.Response(body=b'{"a": "' + b"x" * MAX_DOCUMENT + b'"}', content_type="application/json")

    async def away(request):
        raise web.HTTPFound("http://elsewhere.invalid/doc")

    async def here(request):
        raise web.HTTPFound("/doc")

    async def doc(request):
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_get("/big", big)
    app.router.add_get("/away", away)
    app.router.add_get("/here", here)
    app.router.add_get("/doc", doc)
    server = await aiohttp_server(app)
    async with aiohttp.ClientSession() as http:
        with pytest.raises(Unavailable, match="^the provider's answer is larger than 1 MiB$"):
            await fetch_json(http, str(server.make_url("/big")))
        with pytest.raises(Unavailable, match="^the provider redirected to another host$"):
            await fetch_json(http, str(server.make_url("/away")))
        assert await fetch_json(http, str(server.make_url("/here"))) == {"ok": True}


@pytest.mark.parametrize("change, problem", [
    ({"issuer": "http://127.0.0.1:1"}, "another issuer"),
    ({"jwks_uri": "http://keys.example/jwks"}, "jwks_uri is not https"),
    ({"token_endpoint": "http://idp.example/token"}, "token_endpoint is not https"),
    ({"authorization_endpoint": None}, "no authorization_endpoint"),
])
async def test_a_discovery_document_that_cannot_be_trusted_leaves_the_provider_unavailable(
        aiohttp_server, change, problem):
    import aiohttp
    from aiohttp import web

    from discharger.oidc import Provider as RP
    from discharger.providers import ProviderSettings

    issuer = {}

    async def discovery(request):
        doc = {"issuer": issuer["url"], "authorization_endpoint": issuer["url"] + "/auth",
               "token_endpoint": issuer["url"] + "/token", "jwks_uri": issuer["url"] + "/jwks"}
        doc.update(change)
        return web.json_response({k: v for k, v in doc.items() if v is not None})

    async def jwks(request):
        return web.json_response({"keys": [RSA.as_dict(private=False)]})

    app = web.Application()
    app.router.add_get("/.well-known/openid-configuration", discovery)
    app.router.add_get("/jwks", jwks)
    server = await aiohttp_server(app)
    issuer["url"] = str(server.make_url("")).rstrip("/")
    p = RP(ProviderSettings("acme", "Acme", issuer["url"], "sable", "s"))
    async with aiohttp.ClientSession() as http:
        await p.discover(http)
    assert not p.available and problem in p.problem


async def test_an_hmac_keyed_with_the_providers_public_key_is_refused():
    """The classic algorithm confusion: HS256 'signed' with the RSA public key's bytes."""
    import hashlib
    import hmac

    def part(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header = json.dumps({"alg": "HS256", "kid": "rs1"}).encode()
    signing_input = f"{part(header)}.{part(json.dumps(claims()).encode())}"
    mac = hmac.new(RSA.as_pem(private=False), signing_input.encode(), hashlib.sha256).digest()
    token = f"{signing_input}.{part(mac)}"
    await refused(token, "id_token_alg")
    await refused(token, "id_token_alg", provider(announced=("HS256", "RS256")))  # even if announced


@pytest.fixture
async def token_endpoint(aiohttp_server):
    """A bare token and userinfo endpoint: what `redeem` sends and how it reads the answer
    (test_federation runs the same exchange against a real provider)."""
    import base64 as b64

    from aiohttp import web

    seen: dict = {}
    answers: dict = {"token": None, "userinfo": {"sub": "alice", "groups": ["g"]}}

    async def token(request):
        seen["authorization"] = request.headers.get("Authorization")
        seen["form"] = dict(await request.post())
        answer = answers["token"] or {"id_token": sign(claims()), "access_token": "at", "token_type": "Bearer"}
        if not isinstance(answer, dict):
            return web.json_response(answer)
        return web.json_response(answer, status=answer.pop("__status", 200))

    async def userinfo(request):
        seen["bearer"] = request.headers.get("Authorization")
        return web.json_response(answers["userinfo"])

    app = web.Application()
    app.router.add_post("/token", token)
    app.router.add_get("/userinfo", userinfo)
    server = await aiohttp_server(app)
    p = provider()
    p.metadata.update(token_endpoint=str(server.make_url("/token")), userinfo_endpoint=str(server.make_url("/userinfo")),
                      authorization_endpoint="https://idp.example/auth?tenant=1")
    p.settings = ProviderSettings("acme", "Acme", ISSUER, "sable client", "s3cret/+=")
    seen["b64"] = b64
    return p, seen, answers


async def test_redeem_sends_the_code_the_verifier_and_client_secret_basic(token_endpoint):
    import aiohttp

    p, seen, _ = token_endpoint
    p.settings = ProviderSettings("acme", "Acme", ISSUER, "sable", "s3cret/+=")
    async with aiohttp.ClientSession() as http:
        got = await p.redeem(http, "the-code", "the-verifier", "https://d.example/cb", NONCE)
    assert got["sub"] == "alice" and got["groups"] == ["g"]  # groups from userinfo: the ID token had none
    assert seen["form"] == {"grant_type": "authorization_code", "code": "the-code",
                            "redirect_uri": "https://d.example/cb", "code_verifier": "the-verifier"}
    user, secret = seen["b64"].b64decode(seen["authorization"].split()[1]).decode().split(":")
    assert (user, secret) == ("sable", "s3cret%2F%2B%3D")  # each part form-encoded (RFC 6749 2.3.1)
    assert seen["bearer"] == "Bearer at"


async def test_userinfo_for_another_subject_adds_nothing(token_endpoint):
    import aiohttp

    p, _, answers = token_endpoint
    p.settings = ProviderSettings("acme", "Acme", ISSUER, "sable", "s")
    answers["userinfo"] = {"sub": "mallory", "groups": ["admins"]}
    async with aiohttp.ClientSession() as http:
        got = await p.redeem(http, "c", "v", "https://d.example/cb", NONCE)
    assert "groups" not in got


@pytest.mark.parametrize("answer, reason", [
    ({"__status": 400, "error": "invalid_grant"}, "token_endpoint:invalid_grant"),
    ({"access_token": "at"}, "token_endpoint"),
    ({"__status": 500}, "token_endpoint"),
])
async def test_a_refused_exchange_is_a_refused_sign_in(token_endpoint, answer, reason):
    import aiohttp

    p, _, answers = token_endpoint
    p.settings = ProviderSettings("acme", "Acme", ISSUER, "sable", "s")
    answers["token"] = dict(answer)
    async with aiohttp.ClientSession() as http:
        with pytest.raises(SignInRefused) as caught:
            await p.redeem(http, "c", "v", "https://d.example/cb", NONCE)
    assert caught.value.reason == reason


def test_the_authorization_url_asks_for_a_code_with_pkce_s256_state_and_nonce(token_endpoint):
    from urllib.parse import parse_qs, urlsplit

    p, _, _ = token_endpoint
    url = p.authorization_url("st", "no", "ver", "https://d.example/cb")
    assert url.startswith("https://idp.example/auth?tenant=1&")
    query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    assert query == {"tenant": "1", "response_type": "code", "client_id": "sable client",
                     "redirect_uri": "https://d.example/cb", "scope": "openid email profile", "state": "st",
                     "nonce": "no", "code_challenge": challenge("ver"), "code_challenge_method": "S256"}


async def test_a_good_discovery_document_makes_the_provider_available_and_get_says_why_not(aiohttp_server):
    from aiohttp import web

    from clients.errors import NotFound, Unavailable
    from discharger.oidc import Providers

    base = {}

    async def discovery(request):
        return web.json_response({"issuer": base["url"], "authorization_endpoint": base["url"] + "/auth",
                                  "token_endpoint": base["url"] + "/token", "jwks_uri": base["url"] + "/jwks"})

    async def jwks(request):
        return web.json_response({"keys": [RSA.as_dict(private=False), {"kty": "OKP"}]})

    app = web.Application()
    app.router.add_get("/.well-known/openid-configuration", discovery)
    app.router.add_get("/jwks", jwks)
    server = await aiohttp_server(app)
    base["url"] = str(server.make_url("")).rstrip("/")
    from discharger.providers import ProviderSettings as Settings
    dead = "http://127.0.0.1:9"
    providers = Providers((Settings("acme", "Acme", base["url"], "sable", "s"), Settings("gone", "Gone", dead, "x", "s")))
    try:
        await providers.start()
        good = providers.get("acme")
        assert good.available and good.problem is None and set(good.jwks) == {"rs1", ""}  # one unnamed key
        with pytest.raises(Unavailable, match="Gone is unavailable"):
            providers.get("gone")
        with pytest.raises(NotFound):
            providers.get("nope")
    finally:
        await providers.close()


@pytest.fixture
async def documents(aiohttp_server):
    """A bare endpoint serving whatever a test puts in `routes` (path -> handler)."""
    from aiohttp import web

    routes: dict = {}

    async def any_path(request):
        return await routes[request.path](request)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", any_path)
    server = await aiohttp_server(app)
    return server, routes


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_each_redirect_to_the_same_host_is_followed(documents, status):
    import aiohttp
    from aiohttp import web

    from discharger.oidc import fetch_json

    server, routes = documents
    routes["/from"] = lambda r: _answer(web.Response(status=status, headers={"Location": "/to"}))
    routes["/to"] = lambda r: _answer(web.json_response({"ok": 1}))
    async with aiohttp.ClientSession() as http:
        assert await fetch_json(http, str(server.make_url("/from"))) == {"ok": 1}


async def _answer(resp):
    return resp


async def test_redirect_chains_answers_and_the_size_limit(documents):
    import aiohttp
    from aiohttp import web

    from clients.errors import Unavailable
    from discharger.id_tokens import MAX_DOCUMENT, fetch_json

    server, routes = documents
    routes["/1"] = lambda r: _answer(web.Response(status=302, headers={"Location": "/2"}))
    routes["/2"] = lambda r: _answer(web.Response(status=302, headers={"Location": "/3"}))
    routes["/3"] = lambda r: _answer(web.Response(status=302, headers={"Location": "/4"}))
    routes["/4"] = lambda r: _answer(web.json_response({"ok": 1}))
    routes["/nowhere"] = lambda r: _answer(web.Response(status=302))
    exactly = b'{"a": "' + b"x" * (MAX_DOCUMENT - 10) + b'"}'
    assert len(exactly) == MAX_DOCUMENT - 1 and 1 << 20 == MAX_DOCUMENT
    routes["/exactly"] = lambda r: _answer(web.Response(body=exactly + b" ", content_type="application/json"))
    routes["/bad"] = lambda r: _answer(web.json_response([1, 2], status=400))
    routes["/worse"] = lambda r: _answer(web.json_response({"error": "x"}, status=401))
    routes["/text"] = lambda r: _answer(web.Response(text="<html>", status=200))
    async with aiohttp.ClientSession() as http:
        with pytest.raises(Unavailable) as caught:
            await fetch_json(http, str(server.make_url("/1")))  # three hops: one too many
        assert caught.value.message == "the provider redirected too often"
        assert await fetch_json(http, str(server.make_url("/2"))) == {"ok": 1}
        with pytest.raises(Unavailable, match="^the provider redirected too often$"):
            await fetch_json(http, str(server.make_url("/nowhere")))  # no Location: itself again
        assert len((await fetch_json(http, str(server.make_url("/exactly"))))["a"]) == MAX_DOCUMENT - 10
        assert await fetch_json(http, str(server.make_url("/bad"))) == {"__status": 400}
        assert await fetch_json(http, str(server.make_url("/worse"))) == {"__status": 401, "error": "x"}
        with pytest.raises(Unavailable, match="^the provider answered 200 without JSON$"):
            await fetch_json(http, str(server.make_url("/text")))


@pytest.mark.parametrize("url, secure", [
    ("https://idp.example/x", True), ("http://idp.example/x", False), ("http://127.0.0.1:5/x", True),
    ("http://[::1]:5/x", True), ("http://localhost:5/x", True), ("ftp://localhost/x", False), (5, False)])
def test_which_endpoints_are_secure(url, secure):
    from discharger.id_tokens import secure as _secure
    assert _secure(url) is secure


async def test_discovery_reads_the_keys_and_logs_what_happened(documents):
    import aiohttp
    from aiohttp import web
    from structlog.testing import capture_logs

    from discharger.oidc import Provider as RP
    from discharger.providers import ProviderSettings as Settings

    server, routes = documents
    base = str(server.make_url("")).rstrip("/")
    doc = {"issuer": base, "authorization_endpoint": base + "/auth", "token_endpoint": base + "/token",
           "jwks_uri": base + "/jwks"}
    routes["/.well-known/openid-configuration"] = lambda r: _answer(web.json_response(doc))
    keys = {"keys": [RSA.as_dict(private=False), {"kty": "OKP", "x": "unnamed"}]}
    routes["/jwks"] = lambda r: _answer(web.json_response(keys))
    async with aiohttp.ClientSession() as http:
        p = RP(Settings("acme", "Acme", base, "sable", "s"))
        with capture_logs() as logs:
            await p.discover(http)
        assert p.available and p.jwks[""] == {"kty": "OKP", "x": "unnamed"} and set(p.jwks) == {"rs1", ""}
        assert logs == [{"event": "idp_discovered", "provider": "acme", "log_level": "info"}]
        keys["keys"].append({"kty": "OKP", "x": "second unnamed"})  # two unnamed: neither is the default
        await p.discover(http)
        assert set(p.jwks) == {"rs1"}
        for broken, problem in (([1], "its key set could not be read"), ({"keys": 5}, "its key set could not be read")):
            routes["/jwks"] = lambda r, b=broken: _answer(web.json_response(b))
            q = RP(Settings("acme", "Acme", base, "sable", "s"))
            with capture_logs() as logs:
                await q.discover(http)
            assert not q.available and q.problem == problem
            assert logs == [{"event": "idp_unavailable", "provider": "acme", "problem": problem,
                             "log_level": "warning"}]
        routes["/.well-known/openid-configuration"] = lambda r: _answer(web.json_response({"x": 1}, status=404))
        q = RP(Settings("acme", "Acme", base, "sable", "s"))
        await q.discover(http)
        assert q.problem == "its discovery document could not be read"
        doc["issuer"] = base + "/other"
        routes["/.well-known/openid-configuration"] = lambda r: _answer(web.json_response(doc))
        await q.discover(http)
        assert q.problem == "its discovery document names another issuer"
    dead = RP(Settings("gone", "Gone", "http://127.0.0.1:9", "sable", "s"))
    async with aiohttp.ClientSession() as http:
        await dead.discover(http)
    assert dead.problem == "it could not be reached"


def test_an_authorization_endpoint_without_a_query_gets_one():
    p = provider()
    p.metadata["authorization_endpoint"] = "https://idp.example/auth"
    assert p.authorization_url("s", "n", "v", "https://d.example/cb").startswith("https://idp.example/auth?response_type=code&")


async def test_an_unknown_provider_is_named_so():
    from clients.errors import NotFound
    from discharger.oidc import Providers

    with pytest.raises(NotFound) as caught:
        Providers(()).get("acme")
    assert caught.value.message == "no identity provider has that name"



async def test_the_client_id_is_form_encoded_too_and_userinfo_is_asked_only_when_needed(token_endpoint):
    import aiohttp

    p, seen, answers = token_endpoint
    p.settings = ProviderSettings("acme", "Acme", ISSUER, "sable/ci", "s")
    answers["token"] = {"id_token": sign(claims(aud="sable/ci", groups=["from-token"])), "access_token": "at"}
    async with aiohttp.ClientSession() as http:
        got = await p.redeem(http, "c", "v", "https://d.example/cb", NONCE)
        assert got["groups"] == ["from-token"] and "bearer" not in seen  # the ID token had them
        assert seen["b64"].b64decode(seen["authorization"].split()[1]).decode() == "sable%2Fci:s"
        answers["token"] = {"id_token": sign(claims(aud="sable/ci"))}  # no access token: no userinfo
        assert "groups" not in await p.redeem(http, "c", "v", "https://d.example/cb", NONCE)
        assert "bearer" not in seen


async def test_redeem_refuses_an_error_status_even_with_an_id_token_and_any_non_object(token_endpoint):
    import aiohttp

    p, _, answers = token_endpoint
    p.settings = ProviderSettings("acme", "Acme", ISSUER, "sable", "s")
    async with aiohttp.ClientSession() as http:
        for answer in ({"__status": 400, "id_token": sign(claims())}, {"id_token": 5}):
            answers["token"] = dict(answer)
            with pytest.raises(SignInRefused) as caught:
                await p.redeem(http, "c", "v", "https://d.example/cb", NONCE)
            assert caught.value.message == "the provider did not accept this sign-in; start again"


async def test_redeem_finds_a_rotated_key(token_endpoint, documents):
    import aiohttp
    from aiohttp import web

    p, _, answers = token_endpoint
    p.settings = ProviderSettings("acme", "Acme", ISSUER, "sable", "s")
    server, routes = documents
    rotated = RSAKey.generate_key(2048, parameters={"kid": "rs9", "use": "sig"})
    routes["/jwks"] = lambda r: _answer(web.json_response({"keys": [rotated.as_dict(private=False)]}))
    p.metadata["jwks_uri"] = str(server.make_url("/jwks"))
    p.jwks_at = 0.0
    answers["token"] = {"id_token": sign(claims(), rotated)}
    async with aiohttp.ClientSession() as http:
        assert (await p.redeem(http, "c", "v", "https://d.example/cb", NONCE))["sub"] == "alice"



async def test_a_key_without_use_is_a_signing_key():
    p = provider()
    p.jwks["rs1"] = {k: v for k, v in p.jwks["rs1"].items() if k != "use"}
    assert await p.check_id_token(None, sign(claims()), NONCE)


async def test_the_size_limit_of_an_id_token():
    from discharger.id_tokens import MAX_TOKEN

    token = sign(claims())
    at_limit = token + "A" * (MAX_TOKEN - len(token))
    await refused(at_limit, "id_token_signature")  # read, then refused for its signature
    await refused(at_limit + "A", "id_token_format")  # one byte more: not read at all


async def test_a_provider_that_cannot_be_reached_during_the_exchange_is_unavailable(token_endpoint):
    import aiohttp

    from clients.errors import Unavailable

    p, _, answers = token_endpoint
    p.settings = ProviderSettings("acme", "Acme", ISSUER, "sable", "s")
    userinfo = p.metadata["userinfo_endpoint"]
    async with aiohttp.ClientSession() as http:
        p.metadata["token_endpoint"] = "http://127.0.0.1:9/token"
        with pytest.raises(Unavailable) as caught:
            await p.redeem(http, "c", "v", "https://d.example/cb", NONCE)
        assert caught.value.message == "Acme: the provider could not be reached"
        p.metadata["token_endpoint"] = userinfo.replace("/userinfo", "/token")
        p.metadata["userinfo_endpoint"] = "http://127.0.0.1:9/userinfo"
        with pytest.raises(Unavailable) as caught:
            await p.redeem(http, "c", "v", "https://d.example/cb", NONCE)
        assert caught.value.message == "Acme: the provider could not be reached"
        answers["token"] = [1, 2]  # not an object
        with pytest.raises(SignInRefused) as refused_:
            await p.redeem(http, "c", "v", "https://d.example/cb", NONCE)
        assert refused_.value.reason == "token_endpoint"


async def test_a_failing_key_refetch_waits_a_minute_too(documents):
    import aiohttp
    from aiohttp import web

    server, routes = documents
    fetched = []

    async def gone(request):
        fetched.append(1)
        return web.json_response({"error": "no"}, status=404)

    routes["/jwks"] = gone
    p = provider()
    p.metadata["jwks_uri"] = str(server.make_url("/jwks"))
    p.jwks_at = 0.0
    stranger = RSAKey.generate_key(2048, parameters={"kid": "nobody"})
    async with aiohttp.ClientSession() as http:
        for _ in range(3):
            with pytest.raises(SignInRefused):
                await p.check_id_token(http, sign(claims(), stranger), NONCE)
    assert len(fetched) == 1


async def test_an_issuer_with_a_trailing_slash_is_discovered_under_it(documents):
    import aiohttp
    from aiohttp import web

    from discharger.oidc import Provider as RP
    from discharger.providers import ProviderSettings as Settings

    server, routes = documents
    issuer = str(server.make_url("/tenant/"))
    doc = {"issuer": issuer, "authorization_endpoint": issuer + "auth", "token_endpoint": issuer + "token",
           "jwks_uri": issuer + "jwks"}
    routes["/tenant/.well-known/openid-configuration"] = lambda r: _answer(web.json_response(doc))
    routes["/tenant/jwks"] = lambda r: _answer(web.json_response({"keys": []}))
    p = RP(Settings("acme", "Acme", issuer, "sable", "s"))
    async with aiohttp.ClientSession() as http:
        await p.discover(http)
    assert p.available, p.problem


async def test_rediscovery_retries_the_unavailable_and_refreshes_the_stale_only(documents):
    from aiohttp import web

    from discharger.oidc import REDISCOVER, Providers
    from discharger.providers import ProviderSettings as Settings

    server, routes = documents
    base = str(server.make_url("")).rstrip("/")
    asked = []

    async def discovery(request):
        asked.append(1)
        return web.json_response({"issuer": base, "authorization_endpoint": base + "/auth",
                                  "token_endpoint": base + "/token", "jwks_uri": base + "/jwks"})

    routes["/jwks"] = lambda r: _answer(web.json_response({"keys": []}))
    providers = Providers((Settings("acme", "Acme", base, "sable", "s"),))
    p = providers.all["acme"]
    try:
        await providers._rediscover()  # never discovered: tried
        assert not p.available and len(asked) == 0  # (the document was not served yet)
        routes["/.well-known/openid-configuration"] = discovery
        await providers._rediscover()
        assert p.available and len(asked) == 1
        await providers._rediscover()  # fresh: left alone
        assert len(asked) == 1
        p.discovered_at -= REDISCOVER
        await providers._rediscover()  # an hour old: read again
        assert len(asked) == 2
    finally:
        await providers.close()
