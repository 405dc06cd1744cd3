"""DPoP proofs (SPEC §14) from the attacker's side: `clients.proof_check.check_proof` and the replay
cache, with real Ed25519 keys. Every bad proof is a ProofError naming what is wrong; nothing
else escapes, whatever the bytes (the Hypothesis properties at the end)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time

import nacl.signing
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clients import pop, proof_check
from clients.proof_check import ProofError, ReplayCache, check_proof

TOKEN = "sable_st_" + "A" * 40
URL = "https://orders.example/v1/orders"
NOW = time.time()


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


@pytest.fixture(scope="module")  # not per test: the Hypothesis properties use them
def signer(dpop_keys) -> pop.DPoPSigner:
    return dpop_keys[0]


@pytest.fixture(scope="module")
def other(dpop_keys) -> pop.DPoPSigner:
    return dpop_keys[1]


def seed(signer: pop.DPoPSigner) -> bytes:
    d = signer._key.as_dict(private=True)["d"]
    return base64.urlsafe_b64decode(d + "=" * (-len(d) % 4))


def claims(**changes) -> dict:
    base = {"jti": "j-1", "htm": "GET", "htu": URL, "iat": int(NOW), "ath": proof_check.token_hash(TOKEN)}
    base.update(changes)
    return {k: v for k, v in base.items() if v is not ...}


def jws(signer, header: dict | None = None, payload: dict | None = None, sign_with: bytes | None = None,
        raw_header: bytes | None = None) -> str:
    """A proof built by hand, so every field can be wrong on purpose."""
    h = header if header is not None else {"typ": "dpop+jwt", "alg": "EdDSA", "jwk": signer.jwk}
    head = b64(raw_header if raw_header is not None else json.dumps(h).encode())
    body = b64(json.dumps(payload if payload is not None else claims()).encode())
    key = nacl.signing.SigningKey(sign_with if sign_with is not None else seed(signer))
    return f"{head}.{body}.{b64(key.sign(f'{head}.{body}'.encode()).signature)}"


def check(proof, htm="GET", htu=URL, token=TOKEN, now=NOW):
    return check_proof(proof, htm=htm, htu=htu, token=token, now=now)


def refused(proof, **kw) -> str:
    with pytest.raises(ProofError) as e:
        check(proof, **kw)
    return str(e.value)


# --- what a good proof gives -----------------------------------------------------------------


def test_the_signers_proof_yields_its_key_thumbprint(signer):
    proof = signer.proof("GET", URL + "?page=2#top", TOKEN, now=NOW)
    checked = check(proof)
    assert checked.jkt == signer.jkt and len(checked.jti) >= 16 and checked.iat == int(NOW)


def test_thumbprint_is_rfc7638():
    # RFC 8037 appendix A.3's Ed25519 key and thumbprint.
    jwk = {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}
    assert proof_check.thumbprint(jwk) == "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"


@pytest.mark.parametrize("sent, expected", [
    ("HTTPS://Orders.Example:443/v1/orders", URL),
    ("https://orders.example/v1/orders?x=1#f", URL),
    ("http://orders.example:80", "http://orders.example/"),
    ("https://orders.example:8443/a", "https://orders.example:8443/a"),
])
def test_htu_compares_normalized(signer, sent, expected):
    assert check(jws(signer, payload=claims(htu=sent)), htu=expected).jkt == signer.jkt


def test_iat_leeway_is_60_seconds_both_ways(signer):
    for iat in (NOW - 60, NOW + 60):
        assert check(jws(signer, payload=claims(iat=int(iat))), now=int(NOW)).jkt == signer.jkt
    assert "too old" in refused(jws(signer, payload=claims(iat=int(NOW) - 61)), now=int(NOW))
    assert "future" in refused(jws(signer, payload=claims(iat=int(NOW) + 61)), now=int(NOW))


# --- a proof for something else --------------------------------------------------------------


def test_proof_for_another_method_url_or_token(signer):
    proof = jws(signer)
    assert refused(proof, htm="POST") == "DPoP proof is for another HTTP method"
    assert refused(proof, htu="https://orders.example/v1/admin") == "DPoP proof is for another URL"
    assert refused(proof, htu="https://evil.example/v1/orders") == "DPoP proof is for another URL"
    assert refused(proof, htu="http://orders.example/v1/orders") == "DPoP proof is for another URL"
    assert "another token" in refused(proof, token=TOKEN + "B")


def test_signature_by_another_key_than_the_header_names(signer, other):
    assert refused(jws(signer, sign_with=seed(other))) == "DPoP proof signature does not verify"


def test_tampered_claims_break_the_signature(signer):
    head, body, sig = jws(signer).split(".")
    forged = b64(json.dumps(claims(htm="POST")).encode())
    assert refused(f"{head}.{forged}.{sig}", htm="POST") == "DPoP proof signature does not verify"


# --- algorithms and keys ---------------------------------------------------------------------


def test_alg_none_is_refused(signer):
    head = b64(json.dumps({"typ": "dpop+jwt", "alg": "none", "jwk": signer.jwk}).encode())
    body = b64(json.dumps(claims()).encode())
    assert "alg must be EdDSA" in refused(f"{head}.{body}.")


def test_hs256_with_the_public_key_as_secret_is_refused(signer):
    head = b64(json.dumps({"typ": "dpop+jwt", "alg": "HS256", "jwk": signer.jwk}).encode())
    body = b64(json.dumps(claims()).encode())
    secret = base64.urlsafe_b64decode(signer.jwk["x"] + "=")
    mac = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
    assert "alg must be EdDSA" in refused(f"{head}.{body}.{b64(mac)}")
    mac = hmac.new(json.dumps(signer.jwk).encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    assert "alg must be EdDSA" in refused(f"{head}.{body}.{b64(mac)}")


def test_ed25519_is_accepted_as_the_fully_specified_name(signer):
    assert check(jws(signer, {"typ": "dpop+jwt", "alg": "Ed25519", "jwk": signer.jwk})).jkt == signer.jkt


@pytest.mark.parametrize("header, reason", [
    ({"typ": "JWT", "alg": "EdDSA"}, "typ must be dpop.jwt"),
    ({"alg": "EdDSA"}, "typ must be dpop.jwt"),
    ({"typ": "dpop+jwt", "alg": "ES256"}, "alg must be EdDSA"),
    ({"typ": "dpop+jwt", "alg": "EdDSA", "crit": ["exp"]}, "crit or b64"),
    ({"typ": "dpop+jwt", "alg": "EdDSA", "b64": False}, "crit or b64|not a compact JWS"),  # joserfc refuses it first
])
def test_header_rules(signer, header, reason):
    assert re.search(reason, refused(jws(signer, {**header, "jwk": signer.jwk})))


def test_jwk_with_a_private_part_is_refused(signer):
    d = signer._key.as_dict(private=True)["d"]
    assert "private key" in refused(jws(signer, {"typ": "dpop+jwt", "alg": "EdDSA", "jwk": {**signer.jwk, "d": d}}))


@pytest.mark.parametrize("jwk, reason", [
    (None, "exactly {kty, crv, x}"),
    ("a string", "exactly {kty, crv, x}"),
    ({"kty": "OKP", "crv": "Ed25519"}, "exactly {kty, crv, x}"),
    ({"kty": "OKP", "crv": "Ed25519", "x": "AAAA", "kid": "k"}, "exactly {kty, crv, x}"),
    ({"kty": "OKP", "crv": "X25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}, "Ed25519 key"),
    ({"kty": "EC", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}, "Ed25519 key"),
    ({"kty": "OKP", "crv": "Ed25519", "x": "AAAA"}, "32 bytes"),
    ({"kty": "OKP", "crv": "Ed25519", "x": "!!!"}, "base64url"),
    ({"kty": "OKP", "crv": "Ed25519", "x": 7}, "Ed25519 key"),
])
def test_jwk_shape(signer, jwk, reason):
    header = {"typ": "dpop+jwt", "alg": "EdDSA"}
    if jwk is not None:
        header["jwk"] = jwk
    assert reason in refused(jws(signer, header))


# --- claims ----------------------------------------------------------------------------------


@pytest.mark.parametrize("changes, reason", [
    ({"jti": ...}, "jti must be a string"),
    ({"jti": ""}, "jti must be a string"),
    ({"jti": "x" * 65}, "jti must be a string"),
    ({"jti": 5}, "jti must be a string"),
    ({"iat": ...}, "iat must be a number"),
    ({"iat": "now"}, "iat must be a number"),
    ({"iat": True}, "iat must be a number"),
    ({"htm": ...}, "another HTTP method"),
    ({"htu": ...}, "another URL"),
    ({"htu": "not a url"}, "htu must be an http(s) URL"),
    ({"htu": "ftp://orders.example/v1/orders"}, "htu must be an http(s) URL"),
    ({"ath": ...}, "another token"),
])
def test_claim_rules(signer, changes, reason):
    assert reason in refused(jws(signer, payload=claims(**changes)))


def test_jti_of_64_characters_is_fine(signer):
    assert check(jws(signer, payload=claims(jti="x" * 64))).jti == "x" * 64


# --- malformed JWS of every shape ------------------------------------------------------------


@pytest.mark.parametrize("proof", [
    None, 5, b"bytes", "", ".", "..", "a.b", "a.b.c.d", "a..c", "....",
    "é.é.é", "x" * 5000, "eyJhbGciOiJFZERTQSJ9.e30.!!!!", "W10.e30.AAAA",  # header an array
])
def test_malformed_proofs_are_refused_cleanly(proof):
    with pytest.raises(ProofError):
        check(proof)


def test_payload_that_is_not_an_object(signer):
    head = b64(json.dumps({"typ": "dpop+jwt", "alg": "EdDSA", "jwk": signer.jwk}).encode())
    for body in (b"[1]", b"null", b"not json", b"\xff\xfe"):
        enc = b64(body)
        sig = b64(nacl.signing.SigningKey(seed(signer)).sign(f"{head}.{enc}".encode()).signature)
        with pytest.raises(ProofError):
            check(f"{head}.{enc}.{sig}")


def test_header_that_is_not_json(signer):
    with pytest.raises(ProofError):
        check(jws(signer, raw_header=b"{not json"))


def test_truncated_signature(signer):
    proof = jws(signer)
    assert "not an Ed25519 signature" in refused(proof[:-10])


def test_over_4_kib_is_refused_before_parsing(signer):
    assert "longer than 4096" in refused(jws(signer, payload=claims(pad="x" * 4096)))


# --- replay ----------------------------------------------------------------------------------


def test_a_claimed_proof_cannot_be_claimed_again_while_it_is_valid(signer):
    replay = ReplayCache()
    proof = check(jws(signer))  # iat = int(NOW)
    replay.claim(proof, NOW)
    with pytest.raises(ProofError, match="already used"):
        replay.claim(proof, int(NOW) + 60)  # the last moment the proof passes the time check
    replay.claim(proof, int(NOW) + 62)  # forgotten once it is stale anyway
    assert len(replay) == 1


def test_a_proof_dated_ahead_is_remembered_until_it_goes_stale(signer):
    replay = ReplayCache()
    ahead = check(jws(signer, payload=claims(iat=int(NOW) + 60)))
    replay.claim(ahead, NOW)
    with pytest.raises(ProofError, match="already used"):
        replay.claim(ahead, int(NOW) + 119)
    replay.claim(ahead, int(NOW) + 122)


def test_a_released_proof_can_be_used(signer):
    replay = ReplayCache()
    proof = check(jws(signer))
    replay.claim(proof, NOW)
    replay.release(proof)
    assert len(replay) == 0
    replay.claim(proof, NOW)
    with pytest.raises(ProofError, match="already used"):
        replay.claim(proof, NOW)


def test_claim_and_release_cycles_keep_the_heap_bounded(signer):
    replay = ReplayCache(max_entries=10)
    proof = check(jws(signer))
    for _ in range(100):
        replay.claim(proof, NOW)
        replay.release(proof)
    assert len(replay._heap) <= 20 and len(replay) == 0


def test_the_same_jti_under_another_key_is_another_proof(signer, other):
    replay = ReplayCache()
    replay.claim(check(jws(signer)), NOW)
    replay.claim(check(jws(other, {"typ": "dpop+jwt", "alg": "EdDSA", "jwk": other.jwk})), NOW)


def test_replay_cache_is_bounded_and_refuses_rather_than_forgets(signer, other):
    replay = ReplayCache(max_entries=3, max_per_key=10)
    proofs = [check(jws(signer, payload=claims(jti=f"j{i}"))) for i in range(4)]
    for p in proofs[:3]:
        replay.claim(p, NOW)
    with pytest.raises(ProofError, match="too many DPoP proofs in the last minute"):
        replay.claim(proofs[3], NOW)
    assert len(replay) == 3
    with pytest.raises(ProofError, match="already used"):
        replay.claim(proofs[0], NOW)  # none was forgotten to make room
    replay.claim(proofs[3], int(NOW) + 62)  # room again once they are stale
    assert len(replay) == 1


def test_one_key_fills_only_its_own_quota(signer, other):
    replay = ReplayCache(max_entries=100, max_per_key=2)
    for i in range(2):
        replay.claim(check(jws(signer, payload=claims(jti=f"j{i}"))), NOW)
    with pytest.raises(ProofError, match="with this key"):
        replay.claim(check(jws(signer, payload=claims(jti="j2"))), NOW)
    replay.claim(check(jws(other, {"typ": "dpop+jwt", "alg": "EdDSA", "jwk": other.jwk})), NOW)


@pytest.mark.parametrize("htu, reason", [
    ("https://user:pw@orders.example/v1/orders", "user information"),
    ("https://orders.example/" + "x" * 2048, "longer than 2048"),
    ("https://[v1.x]/v1/orders", "not a URL|host name"),
    ("https://bad_host/v1/orders", "host name"),
])
def test_odd_htus_are_refused(signer, htu, reason):
    assert re.search(reason, refused(jws(signer, payload=claims(htu=htu)), htu=htu))


def test_ipv6_htu_compares_normalized(signer):
    htu = "https://[2001:DB8::1]:443/x"
    assert check(jws(signer, payload=claims(htu=htu)), htu="https://[2001:db8::1]/x").jkt == signer.jkt


# --- properties ------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_any_text_is_a_proof_error_or_nothing_else(text):
    with pytest.raises(ProofError):
        check(text)


@settings(max_examples=200, deadline=None)
@given(header=st.dictionaries(st.sampled_from(["typ", "alg", "jwk", "crit", "kid"]),
                              st.one_of(st.none(), st.integers(), st.text(max_size=20),
                                        st.sampled_from(["dpop+jwt", "EdDSA", "none", "HS256"]))),
       payload=st.dictionaries(st.sampled_from(["jti", "htm", "htu", "iat", "ath"]),
                               st.one_of(st.none(), st.integers(), st.floats(allow_nan=True), st.text(max_size=70))))
def test_any_json_shape_is_a_proof_error_or_a_valid_proof(signer, header, payload):
    proof = jws(signer, header, payload)
    try:
        checked = check(proof)
    except ProofError:
        return
    assert checked.jkt == signer.jkt  # only a proof meeting every rule gets here


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=400), st.binary(min_size=1, max_size=3))
def test_flipping_bytes_of_a_good_proof_never_yields_another_claim(signer, at, junk):
    good = jws(signer)
    at = at % len(good)
    mutated = good[:at] + junk.decode("latin-1") + good[at + 1:]
    try:
        checked = check(mutated)
    except ProofError:
        return
    assert checked.jkt == signer.jkt and checked.jti == "j-1"  # e.g. padding-equivalent spellings


def test_thumbprint_agrees_with_joserfc(signer, other):
    from joserfc.jwk import thumbprint as joserfc_thumbprint

    for jwk in (signer.jwk, other.jwk):
        assert proof_check.thumbprint(jwk) == joserfc_thumbprint(jwk)
