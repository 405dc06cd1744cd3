"""Every way the strict parser refuses input, with the reason it gives (SPEC §2), and the
limits at their exact boundaries."""

from __future__ import annotations

import hashlib

import pytest

from clients import tokens
from clients.errors import TokenFormatError
from clients.tokens import RawCaveat, Token

IDENT = b"\x01" + bytes(16)


def payload(*fields: bytes, caveats: bytes = b"", sig: bytes = b"\x06\x20" + bytes(32)) -> bytes:
    return b"\x02" + b"".join(fields) + b"\x00" + caveats + b"\x00" + sig


HEADER = b"\x02\x10" + IDENT  # identifier field: type 2, length 17
GOOD = payload(HEADER[:0] + b"\x02\x11" + IDENT)


def text_of(raw: bytes, prefix: str = tokens.SERVICE) -> str:
    return tokens.encode(prefix, raw)


def with_check(body: str) -> str:
    return body + tokens.checksum(body)


def refused(text, prefixes=tokens.MACAROON_PREFIXES) -> str:
    with pytest.raises(TokenFormatError) as e:
        tokens.parse(text, prefixes)
    return str(e.value)


def test_good_payload_parses():
    tok = tokens.parse(text_of(GOOD))
    assert (tok.identifier, tok.caveats, tok.location) == (IDENT, (), None)


@pytest.mark.parametrize("text, reason", [
    (None, "token must be a string"),
    (b"sable_st_x", "token must be a string"),
    ("sable_st_é" + "A" * 10, "token has characters outside ASCII"),
    ("nope_" + "A" * 20, "unknown token prefix"),
    ("sable_st_AAAAAA", "token is truncated"),
    ("sable_st_", "token is truncated"),
    ("sable_st_AgEAAAAAAA", "bad checksum: the token was mistyped or truncated"),
    (with_check("sable_st_A"), "payload is not valid base64url"),
    (with_check("sable_st_AgE+"), "payload is not valid base64url"),
    (with_check("sable_st_AgE/"), "payload is not valid base64url"),
    (with_check("sable_st_AgE="), "payload is not valid base64url"),
    (with_check("sable_st_AgE*"), "payload is not valid base64url"),
    (with_check("sable_st_Ag.E"), "payload is not valid base64url"),
    (with_check("sable_st_AgEA**"), "payload is not valid base64url"),  # a lax decoder would drop the **
    (with_check("sable_st_AgF"), "payload is not canonical base64url"),
    (with_check("sable_st_Ah"), "payload is not canonical base64url"),
    (with_check("sable_st_AE"), "payload is not canonical base64url"),
])
def test_string_level_refusals(text, reason):
    assert refused(text) == reason


def test_size_limit_is_inclusive():
    body = "sable_st_" + "A" * (tokens.MAX_TOKEN_CHARS - len("sable_st_") - 6)
    exact = with_check(body)
    assert len(exact) == tokens.MAX_TOKEN_CHARS
    assert refused(exact) != f"token is longer than {tokens.MAX_TOKEN_CHARS} characters"
    assert refused(" " + with_check(body + "A") + " ") == f"token is longer than {tokens.MAX_TOKEN_CHARS} characters"


@pytest.mark.parametrize("raw, reason", [
    (b"\x00", "not a libmacaroons v2 macaroon"),
    (b"\x01" + GOOD[1:], "not a libmacaroons v2 macaroon"),
    (b"\x02\x04\x01x", "macaroon header has no identifier"),
    (b"\x02\x02\x11" + IDENT + b"\x01", "unexpected field in macaroon header"),
    (payload(b"\x02\x10" + IDENT[:16]), "token identifier has the wrong shape"),
    (payload(b"\x02\x11\x02" + bytes(16)), "token identifier has the wrong shape"),
    (payload(b"\x02\x11" + IDENT, caveats=b"\x04\x01x\x00"), "caveat has no identifier"),
    (payload(b"\x02\x11" + IDENT, caveats=b"\x02\x7fab"), "field extends past the end"),
    (payload(b"\x02\x11" + IDENT, caveats=b"\x01\x01d\x02\x01x\x00"), "first-party caveat with a location"),
    (payload(b"\x02\x11" + IDENT, caveats=b"\x02\x01x\x05"), "unexpected field in caveat"),
    (payload(b"\x02\x11" + IDENT, caveats=b"\x02\x01x\x04\x01v\x05"), "unexpected field in caveat"),
    (payload(b"\x02\x11" + IDENT, sig=b"\x06\x1f" + bytes(31)), "bad signature field or trailing bytes"),
    (payload(b"\x02\x11" + IDENT, sig=b"\x05\x20" + bytes(32)), "bad signature field or trailing bytes"),
    (payload(b"\x02\x11" + IDENT) + b"\x00", "bad signature field or trailing bytes"),
    (payload(b"\x02\x11" + IDENT)[:-1], "bad signature field or trailing bytes"),
    (b"\x02\x02\xff", "payload is not a libmacaroons v2 macaroon"),
    (b"\x02\x02\x11" + IDENT + b"\x00\x02\x02ab", "payload is not a libmacaroons v2 macaroon"),
    (b"\x02\x01\x02\xff\xfe", "payload is not a libmacaroons v2 macaroon"),
    (payload(b"\x02\x11" + IDENT, caveats=b"\x02\x80\x00x\x00"), "non-minimal varint"),
    (payload(b"\x02\x11" + IDENT, caveats=b"\x02\x81\x80\x00x\x00"), "non-minimal varint"),
    (payload(b"\x02\x11" + IDENT, caveats=b"\x02\xff\xff\xff\xff\xff\x01"), "varint too long"),
    (payload(b"\x02\x11" + IDENT, caveats=b"\x02\x80\x80\x80\x80\x01"), "field extends past the end"),
])
def test_binary_refusals(raw, reason):
    assert refused(text_of(raw)) == reason


def test_long_fields_use_minimal_varints_both_ways():
    for n in (127, 128, 129, 300, 16000):
        tok = Token(tokens.SERVICE, "x" * n, IDENT, (RawCaveat(b"c" * n), RawCaveat(b"t" * n, b"v" * n, "l" * n)),
                    bytes(32))
        raw = tokens.to_bytes(tok)
        assert tokens.from_bytes(tokens.SERVICE, raw) == tok
    assert tokens.to_bytes(Token(tokens.SERVICE, None, IDENT, (RawCaveat(b"c" * 128),), bytes(32)))[21:24] == \
        b"\x02\x80\x01"


def test_caveat_limit_is_inclusive():
    tok = Token(tokens.SERVICE, None, IDENT, tuple(RawCaveat(b"apps a") for _ in range(tokens.MAX_CAVEATS)),
                bytes(32))
    assert len(tokens.parse(tok.encode()).caveats) == tokens.MAX_CAVEATS
    over = Token(tokens.SERVICE, None, IDENT, tok.caveats + (RawCaveat(b"apps a"),), bytes(32))
    assert refused(over.encode()) == f"more than {tokens.MAX_CAVEATS} caveats"


def test_locations_decode_as_utf8():
    tok = Token(tokens.PERMISSION, "http://é", IDENT, (RawCaveat(b"t", b"v", "http://ü"),), bytes(32))
    back = tokens.parse(tok.encode())
    assert (back.location, back.caveats[0].location) == ("http://é", "http://ü")
    assert tokens.parse(text_of(GOOD)).location is None


def test_third_party_caveat_without_a_location():
    tok = Token(tokens.PERMISSION, None, IDENT, (RawCaveat(b"t", b"v"),), bytes(32))
    assert tokens.parse(tok.encode()).caveats == (RawCaveat(b"t", b"v", None),)


def test_discharge_identifier_is_free_form():
    raw = payload(b"\x02\x03abc")
    assert tokens.parse(text_of(raw, tokens.DISCHARGE)).identifier == b"abc"
    assert tokens.parse(text_of(raw, tokens.DISCHARGE)).token_id is None


def test_checksum_is_base62_of_crc32():
    assert tokens.checksum("sable_st_") == tokens.checksum("sable_st_")
    assert len(tokens.checksum("x")) == 6 and tokens.checksum("") == "000000"
    import zlib
    n = zlib.crc32(b"abc")
    digits = ""
    for _ in range(6):
        n, d = divmod(n, 62)
        digits = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"[d] + digits
    assert tokens.checksum("abc") == digits


def test_secrets():
    secret = tokens.encode(tokens.SESSION, bytes(range(32)))
    assert tokens.parse_secret(secret, tokens.SESSION) == bytes(range(32))
    with pytest.raises(TokenFormatError, match="^credential has the wrong length$"):
        tokens.parse_secret(tokens.encode(tokens.SESSION, bytes(31)), tokens.SESSION)
    with pytest.raises(TokenFormatError, match="^unknown token prefix$"):
        tokens.parse_secret(secret, tokens.ADMIN)
    assert tokens.secret_digest(" " + secret + "\n") == hashlib.sha256(secret.encode()).digest()


@pytest.mark.parametrize("header, value", [
    ("Bearer abc", "abc"), ("bearer  abc ", "abc"), ("BEARER a,b", "a,b"),
    ("Basic abc", None), ("Bearer", None), ("Bearer   ", None), ("", None), ("Bearerabc", None),
])
def test_bearer_value(header, value):
    assert tokens.bearer_value(header) == value


def test_presentation_limit_is_inclusive():
    assert tokens.split_presentation(" a , ,b,") == ["a", "b"]
    assert len(tokens.split_presentation(",".join(["t"] * tokens.MAX_PRESENTATION))) == tokens.MAX_PRESENTATION
    with pytest.raises(TokenFormatError, match=f"^more than {tokens.MAX_PRESENTATION} tokens in one presentation$"):
        tokens.split_presentation(",".join(["t"] * (tokens.MAX_PRESENTATION + 1)))
