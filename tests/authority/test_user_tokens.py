"""User tokens in process (fast, and in `make mutation`'s selection): their identifier, the
derived key, and `Checker.check_user`; plus the durations the console and CLI accept."""

from __future__ import annotations

import os
import time

import pytest

from authority.audit import DenialLog
from authority.minting import build
from authority.records import TokenCache
from authority.root_keys import RootKeys
from authority.usage import Usage
from authority.verification import Checker
from clients import offline, tokens
from clients.caveats import Access, format_time, parse_duration
from clients.errors import Denial, TokenFormatError
from server.audit import Caller
from tests.support.fakes import FakeDischarger

HERE = "http://authority.test"
CALLER = Caller("127.0.0.1", "rid-1")


@pytest.fixture
async def env(store):
    keys = RootKeys(bytes(32))
    await keys.load_user_key(store)
    fake = FakeDischarger()
    usage = Usage(store, DenialLog())
    checker = Checker(HERE, frozenset({fake.location}), TokenCache(store, keys), usage, usage.denials,
                      user_signature=keys.user_token_signature)
    return keys, fake, checker


def user_token(keys, fake, org="acme", role="member", first=None) -> str:
    first = first or [f"org {org}", f"expires {format_time(int(time.time()) + 3600)}"]
    tok, sealed = build(keys, tokens.USER, HERE, os.urandom(16).hex(), first, fake.trust, org, role=role)
    assert sealed == b""  # never stored
    return tok.encode()


def test_identifier_round_trip_and_shape():
    token_id = os.urandom(16).hex()
    ident = tokens.user_identifier(token_id, "acme", "admin")
    assert ident[0] == 2 and ident[1:17].hex() == token_id and ident[17] == 1 and ident[18:] == b"acme"
    assert tokens.user_identifier(token_id, "acme", "member")[17] == 0


@pytest.mark.parametrize("ident", [
    b"\x01" + bytes(16) + b"\x00acme",  # a permission token's version
    b"\x02" + bytes(16) + b"\x02acme",  # no such role
    b"\x02" + bytes(16) + b"\x00",  # no org
    b"\x02" + bytes(16),  # no role, no org
    b"\x02" + bytes(16) + b"\x00" + b"a" * 129,  # org too long
])
def test_malformed_user_identifiers_are_refused(ident):
    from pymacaroons import MACAROON_V2, Macaroon

    from tests.support.fakes import pm_to_string
    m = Macaroon(location=HERE, identifier=ident, key=b"k" * 32, version=MACAROON_V2)
    with pytest.raises(TokenFormatError, match="^token identifier has the wrong shape$"):
        tokens.parse(pm_to_string(tokens.USER, m))


@pytest.mark.parametrize("org", ["a", "a" * 128])
def test_the_shortest_and_longest_org_names_fit_a_user_identifier(org):
    from pymacaroons import MACAROON_V2, Macaroon

    from tests.support.fakes import pm_to_string
    ident = tokens.user_identifier(os.urandom(16).hex(), org, "member")
    m = Macaroon(location=HERE, identifier=ident, key=b"k" * 32, version=MACAROON_V2)
    assert tokens.user_claims(tokens.parse(pm_to_string(tokens.USER, m))) == (org, "member")


def test_an_org_that_is_not_utf8_is_refused():
    tok = tokens.Token(tokens.USER, HERE, b"\x02" + bytes(16) + b"\x00\xff\xfe", (), bytes(32))
    with pytest.raises(TokenFormatError, match="^token identifier has the wrong shape$"):
        tokens.user_claims(tok)


async def test_check_user_gives_user_org_and_role(env):
    keys, fake, checker = env
    ut = user_token(keys, fake, "acme", "admin")
    parsed = tokens.parse(ut)
    assert parsed.token_id == parsed.identifier[1:17].hex() and parsed.kind == "user"
    verified, org, role = await checker.check_user([parsed, tokens.parse(fake.discharge(ut, user="carol"))],
                                                   Access("acme", "r"), CALLER)
    assert (verified.user, org, role, verified.record.kind) == ("carol", "acme", "admin", "user")


async def test_check_user_denials(env):
    keys, fake, checker = env
    ut = user_token(keys, fake)
    parse = tokens.parse

    async def denied(presented, access=Access("acme", "r"), match=None):
        with pytest.raises(Denial, match=match):
            await checker.check_user([parse(t) for t in presented], access, CALLER)

    await denied([ut], match="no discharge")
    await denied([ut, fake.discharge(ut, bind=False)], match="not bound")
    await denied([ut, fake.discharge(ut, ttl=-5)], match="expire")
    await denied([ut, fake.discharge(ut)], Access("beta", "r"), match="org")
    narrowed = offline.attenuate(ut, ["actions r"])
    await denied([narrowed, fake.discharge(narrowed)], Access("acme", "c"))
    other = user_token(keys, fake)
    await denied([ut, fake.discharge(other)])
    forged = tokens.Token(tokens.USER, HERE, parse(ut).identifier, parse(ut).caveats, bytes(32)).encode()
    await denied([forged, fake.discharge(ut)], match="signature")
    # Another authority's user-token key: the same identifier, another derived key.
    stranger = RootKeys(bytes(32))
    stranger._user_key = os.urandom(32)
    await denied([user_token(stranger, fake), fake.discharge(ut)])
    # Not a user token, or an authority without user tokens.
    pt, _ = build(keys, tokens.PERMISSION, HERE, os.urandom(16).hex(), ["org acme"], fake.trust, "acme")
    await denied([pt.encode(), fake.discharge(pt.encode())], match=r"^a user token \(sable_ut_\) is required here$")
    no_users = Checker(HERE, checker.trusted, checker.records, checker.usage, checker.denials)
    with pytest.raises(Denial, match="^this authority issues no user tokens$"):
        await no_users.check_user([parse(ut), parse(fake.discharge(ut))], Access("acme", "r"), CALLER)


async def test_the_user_comes_from_the_authentication_discharge_only(env):
    keys, fake, checker = env
    ut = user_token(keys, fake)
    dt = tokens.parse(fake.discharge(ut, user="alice"))
    verified, _, _ = await checker.check_user([tokens.parse(ut), dt], Access("acme", "r"), CALLER)
    assert verified.user == "alice"
    # A discharge without a user caveat names nobody: refused.
    from pymacaroons import MACAROON_V2, Macaroon

    from discharger.tickets import unseal_ticket
    from tests.support.fakes import pm_to_string
    cav = fake.ticket(ut)
    key = unseal_ticket({fake.kid: fake.private}, cav.cid).caveat_key
    m = Macaroon(location=cav.location, identifier=cav.cid, key=key, version=MACAROON_V2)
    m.add_first_party_caveat(f"expires {format_time(int(time.time()) + 60)}")
    bare = offline.bind(ut, pm_to_string(tokens.DISCHARGE, m))
    with pytest.raises(Denial, match="^the discharge names no user$"):
        await checker.check_user([tokens.parse(ut), tokens.parse(bare)], Access("acme", "r"), CALLER)


async def test_verify_refuses_user_tokens(env):
    keys, fake, checker = env
    ut = user_token(keys, fake)
    with pytest.raises(Denial, match="^user tokens are not accepted here$"):
        await checker.check([tokens.parse(ut), tokens.parse(fake.discharge(ut))], Access("acme", "r"), CALLER)


@pytest.mark.parametrize("text, seconds", [("90", 90), ("90s", 90), ("15m", 900), ("12h", 43200), ("30d", 2592000),
                                           (" 2h ", 7200), ("0", None), ("0h", None), ("1w", None), ("", None),
                                           ("-5m", None), ("1.5h", None), ("h", None), ("1234567890", None)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds
