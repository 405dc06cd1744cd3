"""Offline operations on tokens: attenuate, bind a discharge, inspect. No secrets needed."""

from __future__ import annotations

from dataclasses import replace

from clients import caveats, crypto, tokens
from clients.tokens import DISCHARGE, Token


def attenuate(token: str | Token, new_caveats: list[str]) -> str:
    """Append first-party caveats. Each is checked against the grammar before signing."""
    tok = token if isinstance(token, Token) else tokens.parse(token)
    if tok.prefix == DISCHARGE:
        raise caveats.CaveatError("attenuate a permission or service token, not a discharge")
    if len(tok.caveats) + len(new_caveats) > tokens.MAX_CAVEATS:
        raise caveats.CaveatError(f"a token holds at most {tokens.MAX_CAVEATS} caveats")
    sig = tok.signature
    added = []
    for text in new_caveats:
        caveats.parse_strict(text)
        predicate = text.encode("utf-8")
        sig = crypto.first_party(sig, predicate)
        added.append(tokens.RawCaveat(predicate))
    out = replace(tok, caveats=tok.caveats + tuple(added), signature=sig).encode()
    if len(out) > tokens.MAX_TOKEN_CHARS:
        raise caveats.CaveatError(f"the result would exceed {tokens.MAX_TOKEN_CHARS} characters")
    return out


def bind(token: str | Token, discharge: str | Token) -> str:
    """Bind a discharge to this exact token (pymacaroons `prepare_for_request`)."""
    tok = token if isinstance(token, Token) else tokens.parse(token)
    dis = discharge if isinstance(discharge, Token) else tokens.parse(discharge, (DISCHARGE,))
    return replace(dis, signature=crypto.bind(tok.signature, dis.signature)).encode()


def inspect(token: str | Token) -> dict:
    """What a token says about itself. Never includes the signature."""
    tok = token if isinstance(token, Token) else tokens.parse(token)
    first, third = [], []
    for c in tok.caveats:
        if c.third_party:
            third.append(c.location)
        else:
            first.append(c.cid.decode("utf-8", "replace"))
    out = {"kind": tok.kind, "location": tok.location, "caveats": first, "third_party": third}
    if tok.prefix == DISCHARGE:
        out["ticket_bytes"] = len(tok.identifier)
    else:
        out["id"] = tok.token_id
    return out
