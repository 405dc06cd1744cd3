import base64

import pytest
from pymacaroons import MACAROON_V2, Macaroon

from clients import tokens
from clients.tokens import RawCaveat, Token, TokenFormatError


def make(n_caveats=1, prefix=tokens.SERVICE) -> str:
    m = Macaroon(location="http://a.test", identifier=b"\x01" + bytes(range(16)), key=b"k" * 32, version=MACAROON_V2)
    for i in range(n_caveats):
        m.add_first_party_caveat(f"apps app{i}")
    return tokens.encode(prefix, base64.urlsafe_b64decode(m.serialize() + "=="))


def test_round_trip():
    s = make(3)
    tok = tokens.parse(s)
    assert tok.kind == "service"
    assert tok.token_id == bytes(range(16)).hex()
    assert [c.cid for c in tok.caveats] == [b"apps app0", b"apps app1", b"apps app2"]
    assert tok.encode() == s


def test_surrounding_whitespace_is_trimmed():
    s = make()
    assert tokens.parse(f"  {s}\n").encode() == s


def test_checksum_is_six_base62_chars():
    assert tokens.checksum("sable_st_x").isalnum() and len(tokens.checksum("sable_st_x")) == 6
    assert tokens.checksum("") == "000000"


def test_bad_checksum_is_reported_as_such():
    s = make()
    bad = s[:-1] + ("A" if s[-1] != "A" else "B")
    with pytest.raises(TokenFormatError, match="checksum"):
        tokens.parse(bad)


def with_check(body: str) -> str:
    return body + tokens.checksum(body)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "garbage",
        "sable_pt_",
        "sable_xx_" + "A" * 40,
        with_check("sable_st_" + "!!!!"),
        with_check("sable_st_" + "A"),  # impossible base64 length
        with_check("sable_st_" + "AAAA"),  # decodes, but not v2
        with_check("sable_st_AB"),  # non-canonical trailing bits
        "sable_st_ünïcode" + "000000",
    ],
)
def test_malformed_shapes(text):
    with pytest.raises(TokenFormatError):
        tokens.parse(text)


def test_wrong_prefix_is_rejected():
    s = make(prefix=tokens.SERVICE)
    with pytest.raises(TokenFormatError, match="prefix"):
        tokens.parse(s, (tokens.DISCHARGE,))


def test_every_truncation_is_rejected():
    s = make(2)
    _, raw = tokens.split(s, tokens.MACAROON_PREFIXES)
    for n in range(len(raw)):
        with pytest.raises(TokenFormatError):
            tokens.from_bytes(tokens.SERVICE, raw[:n])


def test_trailing_bytes_are_rejected():
    s = make(1)
    _, raw = tokens.split(s, tokens.MACAROON_PREFIXES)
    with pytest.raises(TokenFormatError):
        tokens.parse(tokens.encode(tokens.SERVICE, raw + b"\x00"))


def test_over_16_kib_is_rejected_before_decoding():
    with pytest.raises(TokenFormatError, match="longer"):
        tokens.parse("sable_st_" + "A" * tokens.MAX_TOKEN_CHARS)


def test_64_caveats_pass_and_65_fail():
    assert len(tokens.parse(make(64)).caveats) == 64
    with pytest.raises(TokenFormatError, match="64"):
        tokens.parse(make(65))


def test_non_minimal_varint_is_rejected():
    tok = tokens.parse(make(1))
    raw = tokens.to_bytes(tok)
    # Re-encode the first field type (location = 1) as the two-byte varint 0x81 0x00.
    bad = raw[:1] + b"\x81\x00" + raw[2:]
    with pytest.raises(TokenFormatError):
        tokens.from_bytes(tokens.SERVICE, bad)


def test_identifier_must_be_0x01_and_16_bytes():
    m = Macaroon(location="l", identifier=b"\x02" + bytes(16), key=b"k", version=MACAROON_V2)
    with pytest.raises(TokenFormatError, match="identifier"):
        tokens.parse(tokens.encode(tokens.SERVICE, base64.urlsafe_b64decode(m.serialize() + "==")))


def test_discharge_identifier_is_free_form():
    m = Macaroon(location="l", identifier=b"ticket bytes", key=b"k", version=MACAROON_V2)
    tok = tokens.parse(tokens.encode(tokens.DISCHARGE, base64.urlsafe_b64decode(m.serialize() + "==")))
    assert tok.identifier == b"ticket bytes" and tok.token_id is None


def test_third_party_caveat_round_trips():
    tok = Token(tokens.PERMISSION, "loc", b"\x01" + bytes(16), (RawCaveat(b"org a"), RawCaveat(b"tkt", b"v" * 72, "http://d")), b"s" * 32)
    assert tokens.parse(tok.encode()) == tok


def test_presentation_split():
    assert tokens.split_presentation(" a , b,,c ") == ["a", "b", "c"]
    with pytest.raises(TokenFormatError):
        tokens.split_presentation(",".join(["x"] * 33))


def test_admin_secret_parses():
    s = tokens.encode(tokens.ADMIN, b"\x07" * 32)
    assert tokens.parse_secret(s, tokens.ADMIN) == b"\x07" * 32
    with pytest.raises(TokenFormatError):
        tokens.parse_secret(s, tokens.SESSION)
