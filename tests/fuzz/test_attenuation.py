"""Attenuation never widens: whatever caveats are appended, an access the attenuated token
allows is allowed by the original too. Judged by the authority's own verify function."""

import time
from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from authority.minting import build
from authority.records import TokenRecord
from authority.root_keys import RootKeys
from authority.verification import Denial, verify
from clients import caveats, macaroon, tokens
from clients.caveats import Access
from clients.tokens import RawCaveat

KEYS = RootKeys(bytes(32))
NAMES = st.sampled_from(["a", "b", "c"])
NOW = int(time.time())
TIMES = st.sampled_from([caveats.format_time(NOW + d) for d in (-3600, -1, 1, 3600)])


def caveat_text():
    sets = st.lists(NAMES, min_size=1, max_size=3).map(",".join)
    return st.one_of(
        st.builds(lambda v: f"org {v}", st.sampled_from(["acme", "other"])),
        st.builds(lambda v: f"apps {v}", sets),
        st.builds(lambda v: f"hosts {v}", sets),
        st.builds(lambda v: f"instances {v}", sets),
        st.builds(lambda v: f"actions {v}", st.text("rwcdC", min_size=1, max_size=5)),
        st.builds(lambda v: f"user {v}", NAMES),
        st.builds(lambda v: f"expires {v}", TIMES),
        st.builds(lambda v: f"not-before {v}", TIMES),
        st.sampled_from(["apps *", "bogus x", "apps", "org a,b"]),
    )


ACCESS = st.builds(
    Access, org=st.sampled_from(["acme", "other"]), action=st.text("rwcdC", min_size=1, max_size=3),
    app=st.none() | NAMES, host=st.none() | NAMES, instance=st.none() | NAMES, user=st.none() | NAMES,
)


def allowed(token, rec, access) -> bool:
    try:
        verify(token, [], rec, access, time.time(), "http://a", frozenset())
        return True
    except Denial:
        return False


@given(st.lists(caveat_text(), max_size=4), st.lists(caveat_text(), min_size=1, max_size=4), ACCESS)
def test_attenuation_never_widens(base, extra, access):
    original, sealed = build(KEYS, tokens.SERVICE, "http://a", "cd" * 16, ["org acme", *base])
    sig0 = KEYS.initial_signature("cd" * 16, sealed, original.identifier)
    rec = TokenRecord("cd" * 16, "service", "acme", None, None, len(original.caveats), sig0, False, set(), 0)
    sig = original.signature
    added = []
    for text in extra:
        sig = macaroon.first_party(sig, text.encode())
        added.append(RawCaveat(text.encode()))
    attenuated = replace(original, caveats=original.caveats + tuple(added), signature=sig)
    if allowed(attenuated, rec, access):
        assert allowed(original, rec, access)
