import pytest

from clients import caveats
from clients.caveats import Access, CaveatError

NOW = caveats.parse_time("2026-06-01T00:00:00Z")
FULL = Access(org="acme", action="r", app="orders", host="worker-7", instance="i-0abc", user="alice")


def allows(text: str, access: Access = FULL, now: float = NOW) -> bool:
    return caveats.parse(text.encode()).prohibits(access, now) is None


@pytest.mark.parametrize(
    "text, access, allowed",
    [
        ("org acme", FULL, True),
        ("org other", FULL, False),
        ("apps orders,billing", FULL, True),
        ("apps billing", FULL, False),
        ("apps orders", Access("acme", "r"), False),  # missing access.app denies
        ("actions rw", FULL, True),
        ("actions w", FULL, False),
        ("actions r", Access("acme", "rw"), False),  # every letter must be allowed
        ("actions rwcdC", Access("acme", "rwcdC"), True),
        ("hosts worker-7", FULL, True),
        ("hosts worker-8", FULL, False),
        ("hosts worker-7", Access("acme", "r"), False),
        ("instances i-0abc,i-0def", FULL, True),
        ("instances i-0def", FULL, False),
        ("instances i-0abc", Access("acme", "r"), False),
        ("user alice", FULL, True),
        ("user bob", FULL, False),
        ("user bob", Access("acme", "r"), True),  # user is the one field whose absence allows
        ("expires 2026-06-01T00:00:01Z", FULL, True),
        ("expires 2026-06-01T00:00:00Z", FULL, False),  # now must be before it
        ("not-before 2026-06-01T00:00:00Z", FULL, True),  # at or after
        ("not-before 2026-06-01T00:00:01Z", FULL, False),
    ],
)
def test_caveat_judgements(text, access, allowed):
    assert allows(text, access) is allowed


@pytest.mark.parametrize(
    "text",
    [
        "apps *",
        "apps ",
        "apps a,,b",
        "apps a b",
        "apps  orders",
        "actions rx",
        "actions ",
        "expires 2026-06-01 00:00:00",
        "expires 2026-06-01T00:00:00+00:00",
        "expires 2026-06-01T00:00:00.5Z",
        "expires 2026-13-01T00:00:00Z",
        "expires ２０９９-01-01T00:00:00Z",  # non-ASCII digits
        "not-before ٢٠٢٦-01-01T00:00:00Z",
        "org a,b",
        "frobnicate yes",
        "org",
        "org acme\x00",
        "hosts " + "a" * 129,
        "",
    ],
)
def test_malformed_or_unknown_caveats_deny(text):
    cav = caveats.parse(text.encode())
    assert isinstance(cav, caveats.Unparseable)
    assert cav.prohibits(FULL, NOW)
    with pytest.raises(CaveatError):
        caveats.parse_strict(text)


def test_non_utf8_caveat_denies():
    cav = caveats.parse(b"apps \xff\xfe")
    assert isinstance(cav, caveats.Unparseable) and "UTF-8" in cav.prohibits(FULL, NOW)


def test_reason_names_the_caveat():
    reason = caveats.parse(b"hosts worker-8").prohibits(FULL, NOW)
    assert "hosts worker-8" in reason and "worker-7" in reason


def test_time_caveats_are_marked():
    assert caveats.parse(b"expires 2026-06-01T00:00:00Z").time_bound
    assert not caveats.parse(b"apps a").time_bound


def test_registry_refuses_a_second_registration():
    with pytest.raises(RuntimeError):
        caveats.register(caveats.Apps)


@pytest.mark.parametrize(
    "data",
    [
        None, [], {"org": "acme"}, {"action": "r"}, {"org": "acme", "action": "x"},
        {"org": "acme", "action": ""}, {"org": "acme", "action": "r", "app": 5},
        {"org": "acme", "action": "r", "bogus": "x"}, {"org": "", "action": "r"},
    ],
)
def test_bad_access_is_an_error(data):
    with pytest.raises(CaveatError):
        Access.from_dict(data)


def test_access_from_dict():
    a = Access.from_dict({"org": "acme", "action": "rw", "host": "h1", "user": None})
    assert a == Access("acme", "rw", host="h1")


def test_access_cache_answers_only_the_same_access():
    """Validated access objects are cached by their exact fields; the cache never lets an
    invalid access through, never answers for a different one, and stays bounded."""
    from clients import caveats as cv

    cv._ACCESS_CACHE.clear()
    data = {"org": "acme", "action": "r", "app": "orders"}
    first = Access.from_dict(data)
    assert Access.from_dict(dict(data)) is first  # the same fields: the cached object
    other = Access.from_dict({"org": "acme", "action": "r", "app": "billing"})
    assert other.app == "billing" and other is not first
    for bad in ({"org": "acme", "action": "r", "app": ["orders"]},  # unhashable: not cacheable
                {"org": "acme", "action": "x", "app": "orders"}, {"org": "acme"}, "acme"):
        with pytest.raises(CaveatError):
            Access.from_dict(bad)
        with pytest.raises(CaveatError):  # and again: a failure is never cached
            Access.from_dict(bad)
    for i in range(cv.ACCESS_CACHE_ENTRIES + 10):
        Access.from_dict({"org": "acme", "action": "r", "app": f"a{i}"})
    assert len(cv._ACCESS_CACHE) <= cv.ACCESS_CACHE_ENTRIES


# --- cnf-jkt (SPEC §14) ----------------------------------------------------------------------

JKT = "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"


def test_cnf_jkt_allows_only_a_proof_made_with_its_key():
    from dataclasses import replace

    from clients.caveats import Access, CnfJkt, parse

    cav = parse(f"cnf-jkt {JKT}".encode())
    assert isinstance(cav, CnfJkt) and cav.jkt == JKT and not cav.time_bound
    access = Access("acme", "r")
    assert "needs a DPoP proof" in cav.prohibits(access, 0)
    assert "another key" in cav.prohibits(replace(access, jkt=JKT[:-1] + "A"), 0)
    assert cav.prohibits(replace(access, jkt=JKT), 0) is None


@pytest.mark.parametrize("value", [JKT[:-1], JKT + "A", JKT[:-1] + "=", JKT[:-1] + "+", "", JKT.replace("_", "/")])
def test_cnf_jkt_value_must_be_a_thumbprint(value):
    from clients.caveats import Unparseable, parse

    cav = parse(f"cnf-jkt {value}".encode())
    assert isinstance(cav, Unparseable)
    assert cav.why == "cnf-jkt must be a base64url SHA-256 key thumbprint (43 characters)"


def test_access_jkt_cannot_come_from_a_request():
    from clients.caveats import Access
    from clients.errors import CaveatError

    with pytest.raises(CaveatError, match="unknown access field"):
        Access.from_dict({"org": "acme", "action": "r", "jkt": JKT})


def test_role_always_holds_and_the_lowest_is_taken():
    """`role` (SPEC §19) tells the console the user's role; it allows every request. A holder
    may append more to a discharge, so a reader takes the lowest."""
    for value in ("member", "admin"):
        cav = caveats.parse_strict(f"role {value}")
        assert isinstance(cav, caveats.Role) and cav.role == value and cav.text == f"role {value}"
        assert cav.prohibits(caveats.Access("acme", "rwcdC"), 0) is None and not cav.time_bound
    for bad in ("role owner", "role Admin", "role ", "role member,admin"):
        with pytest.raises(CaveatError, match="^role must be member or admin$"):
            caveats.parse_strict(bad)
    parsed = [caveats.parse(t) for t in (b"org acme", b"role admin", b"role member", b"role admin")]
    assert caveats.lowest_role(parsed) == "member"
    assert caveats.lowest_role([caveats.parse(b"role admin")]) == "admin"
    assert caveats.lowest_role([caveats.parse(b"org acme"), caveats.parse(b"role owner")]) is None
    assert caveats.lowest_role([]) is None
