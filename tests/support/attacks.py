"""Shared bits of the attack catalogue: exact-outcome assertions and byte-level tampering."""

from dataclasses import replace

from clients import macaroon, tokens


def expect(result, status: int, error: str) -> dict:
    got_status, body = result
    assert (got_status, body.get("error")) == (status, error), body
    assert got_status < 500
    return body


def with_payload(prefix: str, raw: bytes) -> str:
    """A token string around arbitrary bytes, with a valid checksum."""
    return tokens.encode(prefix, raw)


def raw_of(token: str) -> bytes:
    return tokens.split(token, tokens.MACAROON_PREFIXES)[1]


def flip(raw: bytes, index: int, bit: int = 0) -> bytes:
    return raw[:index] + bytes([raw[index] ^ (1 << bit)]) + raw[index + 1:]


def regions(token: str) -> dict[str, int]:
    """Byte offsets (in the v2 payload) inside each region of a token."""
    tok = tokens.parse(token)
    raw = raw_of(token)
    out = {"identifier": raw.index(tok.identifier) + 5, "signature": len(raw) - 5}
    first = next(c for c in tok.caveats if not c.third_party)
    out["caveat"] = raw.index(first.cid) + 1
    third = next((c for c in tok.caveats if c.third_party), None)
    if third is not None:
        out["vid"] = raw.index(third.vid) + 30
        out["ticket"] = raw.index(third.cid) + 20
    return out


def resign(token: str, **changes) -> str:
    return replace(tokens.parse(token), **changes).encode()


def append_raw(token: str, predicate: bytes) -> str:
    """Append a caveat with the right chained signature, bypassing the grammar check."""
    tok = tokens.parse(token)
    return resign(token, caveats=tok.caveats + (tokens.RawCaveat(predicate),),
                  signature=macaroon.first_party(tok.signature, predicate))


def holder_third_party(token: str, location: str, cid: bytes, key: bytes) -> str:
    """A holder appends a third-party caveat with a caveat key of their own choosing."""
    t = tokens.parse(token)
    vid = macaroon.seal_caveat_key(t.signature, key)
    sig = macaroon.third_party(t.signature, vid, cid)
    return replace(t, caveats=t.caveats + (tokens.RawCaveat(cid, vid, location),), signature=sig).encode()


def self_discharge(location: str, cid: bytes, key: bytes, first: list[str]) -> str:
    sig = macaroon.initial_signature(key, cid)
    for text in first:
        sig = macaroon.first_party(sig, text.encode())
    return tokens.Token(tokens.DISCHARGE, location, cid, tuple(tokens.RawCaveat(t.encode()) for t in first), sig).encode()


_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def last_char_changed(token: str) -> str:
    """The token with its last base64url character's top bit flipped: always a different
    string, and always different bytes (the top bit is never padding)."""
    return token[:-1] + _B64[(_B64.index(token[-1]) + 32) % 64]
