import pytest

from authority.minting import build
from authority.root_keys import RootKeys
from clients import caveats, offline, tokens
from tests.support.fakes import FakeDischarger

D = FakeDischarger()


@pytest.fixture
def token() -> str:
    tok, _ = build(RootKeys(bytes(32)), tokens.PERMISSION, "http://auth", "12" * 16, ["org acme"], D.trust, "acme")
    return tok.encode()


def test_attenuate_keeps_prefix_and_appends(token):
    out = offline.attenuate(token, ["hosts worker-7", "actions r"])
    assert out.startswith(tokens.PERMISSION)
    assert offline.inspect(out)["caveats"] == ["org acme", "hosts worker-7", "actions r"]


def test_attenuate_refuses_bad_grammar(token):
    with pytest.raises(caveats.CaveatError):
        offline.attenuate(token, ["apps *"])
    with pytest.raises(caveats.CaveatError):
        offline.attenuate(token, ["nonsense x"])


def test_attenuate_refuses_discharges_and_too_many(token):
    with pytest.raises(caveats.CaveatError):
        offline.attenuate(D.discharge(token), ["apps a"])
    with pytest.raises(caveats.CaveatError):
        offline.attenuate(token, ["apps a"] * 63)


def test_inspect_shows_no_secret(token):
    info = offline.inspect(token)
    assert info == {
        "kind": "permission", "location": "http://auth", "id": "12" * 16,
        "caveats": ["org acme"], "third_party": ["http://127.0.0.1:8701"],
    }
    tok = tokens.parse(token)
    assert tok.signature.hex() not in repr(info)
