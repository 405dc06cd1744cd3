"""The caveat grammar's refusals with their reasons, what parsed caveats hold, the registry
and the parse cache (SPEC §3)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import pytest

from clients import caveats
from clients.caveats import Access
from clients.errors import CaveatError


@pytest.mark.parametrize("text, reason", [
    ("apps", "caveat must be '<name> <value>'"),
    ("bogus x", "unknown caveat 'bogus'"),
    ("b" * 60 + " x", f"unknown caveat {'b' * 40!r}"),
    ("apps a,,b", "set must be comma-separated names"),
    ("org a b", "org must be a name"),
    ("user", "caveat must be '<name> <value>'"),
    ("actions rx", "actions must match [rwcdC]+"),
    ("expires 2026-12-01", "time must be YYYY-MM-DDTHH:MM:SSZ"),
    ("expires 2026-02-30T00:00:00Z", "time is not a real date"),
])
def test_refusals_name_the_reason(text, reason):
    with pytest.raises(CaveatError) as e:
        caveats.parse_strict(text)
    assert str(e.value) == reason


@pytest.mark.parametrize("text, cls, attrs", [
    ("apps orders,billing", caveats.Apps, {"allowed": frozenset({"orders", "billing"})}),
    ("hosts h", caveats.Hosts, {"allowed": frozenset({"h"})}),
    ("instances i-1,i:2", caveats.Instances, {"allowed": frozenset({"i-1", "i:2"})}),
    ("org acme", caveats.Org, {"value": "acme"}),
    ("user alice", caveats.User, {"value": "alice"}),
    ("actions rwC", caveats.Actions, {"letters": frozenset("rwC")}),
    ("expires 2026-12-01T00:00:00Z", caveats.Expires, {"at": 1796083200}),
    ("not-before 1970-01-01T00:00:01Z", caveats.NotBefore, {"at": 1}),
])
def test_parsed_caveats_keep_their_text_and_value(text, cls, attrs):
    for cav in (caveats.parse_strict(text), caveats.parse(text.encode())):
        assert type(cav) is cls and cav.text == text
        for k, v in attrs.items():
            assert getattr(cav, k) == v


def test_value_keeps_everything_after_the_first_space():
    with pytest.raises(CaveatError, match="^org must be a name$"):
        caveats.parse_strict("org acme x")


def test_unparseable_keeps_a_bounded_text_and_the_reason():
    cav = caveats.parse(b"bogus " + b"x" * 200)
    assert isinstance(cav, caveats.Unparseable) and cav.text == ("bogus " + "x" * 200)[:80]
    assert cav.why == "unknown caveat 'bogus'"
    assert cav.prohibits(Access("a", "r"), 0) == f"caveat {cav.text!r} is not understood: unknown caveat 'bogus'"
    bad = caveats.parse(b"apps \xff" + b"y" * 100)
    assert isinstance(bad, caveats.Unparseable) and bad.why == "not UTF-8"
    assert bad.text == (b"apps \xff" + b"y" * 100).decode("utf-8", "replace")[:80]


def test_parse_cache_returns_the_same_object_and_stays_bounded(monkeypatch):
    first = caveats.parse(b"apps cached-one")
    assert caveats.parse(b"apps cached-one") is first
    long = b"apps " + b"a" * caveats.CACHEABLE
    assert caveats.parse(long) is not caveats.parse(long)
    edge = b"apps " + b"b" * (caveats.CACHEABLE - 5)
    assert len(edge) == caveats.CACHEABLE and caveats.parse(edge) is caveats.parse(edge)
    monkeypatch.setattr(caveats, "CACHE_ENTRIES", 2)
    caveats._cache.clear()
    caveats.parse(b"apps x1")
    caveats.parse(b"apps x2")
    assert len(caveats._cache) == 2
    caveats.parse(b"apps x3")
    assert list(caveats._cache) == [b"apps x3"]


def test_registry_refuses_a_name_twice():
    @dataclass(frozen=True, slots=True)
    class Probe(caveats.Caveat):
        name: ClassVar[str] = "probe-caveat"

        @classmethod
        def parse(cls, text: str, value: str) -> caveats.Caveat:
            return cls(text)

    try:
        assert caveats.register(Probe) is Probe and caveats.REGISTRY["probe-caveat"] is Probe
        assert type(caveats.parse_strict("probe-caveat x")) is Probe
        with pytest.raises(RuntimeError, match="^caveat 'probe-caveat' registered twice$"):
            caveats.register(Probe)
    finally:
        caveats.REGISTRY.pop("probe-caveat", None)


@pytest.mark.parametrize("data, reason", [
    ([], "access must be an object"),
    ({"org": "a", "action": "r", "extra": 1}, "unknown access field 'extra'"),
    ({"action": "r"}, "access.org is required and must be a name"),
    ({"org": "a b", "action": "r"}, "access.org is required and must be a name"),
    ({"org": "a"}, "access.action is required and must match [rwcdC]+"),
    ({"org": "a", "action": "x"}, "access.action is required and must match [rwcdC]+"),
    ({"org": "a", "action": "r", "host": 5}, "access.host must be a name"),
    ({"org": "a", "action": "r", "instance": "a b"}, "access.instance must be a name"),
])
def test_access_refusals(data, reason):
    with pytest.raises(CaveatError) as e:
        Access.from_dict(data)
    assert str(e.value) == reason


def test_access_keeps_every_field():
    data = {"org": "o", "action": "rw", "app": "a", "host": "h", "instance": "i", "user": "u"}
    assert Access.from_dict(data) == Access(**data)
    assert Access.from_dict({"org": "o", "action": "r", "app": None}) == Access("o", "r")
