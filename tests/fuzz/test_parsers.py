"""Properties of the token and caveat parsers, for any input."""

from hypothesis import example, given
from hypothesis import strategies as st

from authority.minting import build
from authority.root_keys import RootKeys
from clients import caveats, tokens
from clients.tokens import TokenFormatError
from tests.support.fakes import FakeDischarger

_D = FakeDischarger()
_VALID, _ = build(RootKeys(bytes(32)), tokens.PERMISSION, "http://a", "ab" * 16, ["org acme", "apps x"], _D.trust, "acme")
VALID_RAW = tokens.to_bytes(_VALID)
PREFIXES = st.sampled_from(tokens.MACAROON_PREFIXES)


def round_trips_or_rejects(text: str) -> None:
    try:
        tok = tokens.parse(text)
    except TokenFormatError:
        return
    assert tok.encode() == text.strip()


@given(st.text())
@example("sable_pt_")
def test_any_text_parses_and_round_trips_or_raises_the_one_error(text):
    round_trips_or_rejects(text)


@given(PREFIXES, st.binary(max_size=600))
def test_any_payload_with_a_valid_checksum(prefix, raw):
    round_trips_or_rejects(tokens.encode(prefix, raw))


@given(PREFIXES, st.data())
def test_mutations_of_a_valid_token(prefix, data):
    raw = bytearray(VALID_RAW)
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["flip", "cut", "insert", "delete"]))
        i = data.draw(st.integers(0, len(raw) - 1)) if raw else 0
        if op == "flip" and raw:
            raw[i] ^= data.draw(st.integers(1, 255))
        elif op == "cut":
            del raw[i:]
        elif op == "insert":
            raw[i:i] = data.draw(st.binary(min_size=1, max_size=8))
        elif op == "delete" and raw:
            del raw[i]
    round_trips_or_rejects(tokens.encode(prefix, bytes(raw)))


@given(st.binary(max_size=300))
def test_caveat_parser_never_raises(predicate):
    cav = caveats.parse(predicate)
    assert isinstance(cav, caveats.Caveat)
    reason = cav.prohibits(caveats.Access("acme", "r", "a", "h", "i", "u"), 0.0)
    assert reason is None or isinstance(reason, str)


@given(st.text(max_size=200))
def test_strict_caveat_parser_raises_only_caveat_error(text):
    try:
        cav = caveats.parse_strict(text)
    except caveats.CaveatError:
        return
    assert cav.text == text and cav.name == text.split(" ", 1)[0]
