"""Trust policy rules (SPEC §16), as pure functions: what a policy may say, and what matches."""

from __future__ import annotations

import pytest

from clients.errors import BadRequest
from discharger.store import TrustPolicy
from discharger.trust import MAX_CLAIMS, MAX_MAX_AGE, MAX_VALUE, check_policy, immutable_ids, mismatch

ISSUER = "https://ci.example.com"


def ok(issuer=ISSUER, audience=None, claims=None, max_age=600) -> None:
    check_policy(issuer, audience, {"a": "b"} if claims is None else claims, max_age)


@pytest.mark.parametrize("kwargs", [
    {"issuer": "https://" + "h" * (512 - 8)},  # 512 characters
    {"issuer": "http://127.0.0.1:9000"}, {"issuer": "http://localhost"},
    {"audience": "a"}, {"audience": "a" * 512},
    {"max_age": 1}, {"max_age": MAX_MAX_AGE},
    {"claims": {f"k{i}": "v" for i in range(MAX_CLAIMS)}},
    {"claims": {"a": "v" * MAX_VALUE}}, {"claims": {"a": "b", "sub": "repo:acme/*"}},
    {"claims": {"a": "b", "ref": "refs/heads/*"}},
    {"claims": {"A_z.0:-": "b"}}, {"claims": {"k" * 64: "b"}},
])
def test_acceptable_policies(kwargs):
    ok(**kwargs)


@pytest.mark.parametrize("kwargs, said", [
    ({"issuer": "https://" + "h" * (513 - 8)}, "issuer must be an https URL"),
    ({"issuer": "http://ci.example.com"}, "issuer must be an https URL (http only for a loopback host)"),
    ({"issuer": 5}, "issuer must be"),
    ({"audience": ""}, "audience must be a non-empty string"),
    ({"audience": "a" * 513}, "audience must be a non-empty string"),
    ({"audience": 5}, "audience must be"),
    ({"max_age": 0}, "max_age must be 1 to 3600 seconds"),
    ({"max_age": MAX_MAX_AGE + 1}, "max_age must be"),
    ({"max_age": True}, "max_age must be"),
    ({"max_age": "60"}, "max_age must be"),
    ({"claims": {}}, "a policy needs 1 to 16 claims"),
    ({"claims": {f"k{i}": "v" for i in range(MAX_CLAIMS + 1)}}, "a policy needs 1 to 16 claims"),
    ({"claims": ["a"]}, "a policy needs"),
    ({"claims": {"a b": "v"}}, "a claim name must match [A-Za-z0-9_.:-]{1,64}"),
    ({"claims": {"k" * 65: "v"}}, "a claim name must match"),
    ({"claims": {"a": ""}}, "claim a: the value must be 1 to 256 printable characters"),
    ({"claims": {"a": "v" * (MAX_VALUE + 1)}}, "claim a: the value must be"),
    ({"claims": {"a": "b\n"}}, "claim a: the value must be"),
    ({"claims": {"a": 5}}, "claim a: the value must be"),
    ({"claims": {"a": "b", "sub": "repo*"}}, "'*' may only end a value, right after '/' or ':'"),
    ({"claims": {"a": "b", "sub": "repo:*:*"}}, "'*' may only end"),
    ({"claims": {"sub": "repo:acme/*"}}, "a policy needs at least one claim matched exactly (without '*')"),
    ({"issuer": "https://token.actions.githubusercontent.com", "claims": {"repository": "acme/app"}},
     "needs repository_id or repository_owner_id matched exactly: names can be re-registered"),
    ({"issuer": "https://gitlab.com/", "claims": {"project_path": "acme/app"}}, "project_id or namespace_id"),
])
def test_refused_policies_say_why(kwargs, said):
    with pytest.raises(BadRequest) as e:
        ok(**kwargs)
    assert said in e.value.message


def test_immutable_ids_by_issuer():
    assert immutable_ids("https://token.actions.githubusercontent.com/") == ("repository_id", "repository_owner_id")
    assert immutable_ids("https://token.actions.githubusercontent.com/acme") == ("repository_id", "repository_owner_id")
    assert immutable_ids("https://ghe.acme.example/_services/token") == ("repository_id", "repository_owner_id")
    assert immutable_ids("https://token.actions.githubusercontent.com.evil.example") is None
    assert immutable_ids("https://gitlab.com") == ("project_id", "namespace_id")
    assert immutable_ids("https://gitlab.acme.example") is None


def test_matching():
    policy = TrustPolicy("p", ISSUER, None, {"repository_id": "1", "sub": "repo:acme/app:*"}, 600)
    assert mismatch(policy, {"repository_id": "1", "sub": "repo:acme/app:ref:refs/heads/main"}) is None
    assert mismatch(policy, {"repository_id": "1", "sub": "repo:acme/app:"}) is None
    assert mismatch(policy, {"repository_id": "2", "sub": "repo:acme/app:x"}) == "repository_id"
    assert mismatch(policy, {"repository_id": "1", "sub": "repo:acme/app-evil:x"}) == "sub"
    assert mismatch(policy, {"repository_id": 1, "sub": "repo:acme/app:x"}) == "repository_id"
    assert mismatch(policy, {"sub": "repo:acme/app:x"}) == "repository_id"
    assert mismatch(policy, {"repository_id": "1", "sub": ["repo:acme/app:x"]}) == "sub"
    assert mismatch(policy, {"repository_id": "11", "sub": "repo:acme/app:x"}) == "repository_id"
