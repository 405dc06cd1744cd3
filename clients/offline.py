"""Offline operations on tokens: attenuate, bind a discharge, inspect. No secrets needed."""

from __future__ import annotations

from clients import caveats, macaroon, tokens
from clients.errors import CaveatError
from clients.tokens import DISCHARGE, Token


def _token(token: str | Token, prefixes: tuple[str, ...] = tokens.MACAROON_PREFIXES) -> Token:
    return token if isinstance(token, Token) else tokens.parse(token, prefixes)


def attenuate(token: str | Token, new_caveats: list[str]) -> str:
    """Append first-party caveats. Each is checked against the grammar before signing."""
    tok = _token(token)
    if tok.prefix == DISCHARGE:
        raise CaveatError("attenuate a permission or service token, not a discharge")
    if len(tok.caveats) + len(new_caveats) > tokens.MAX_CAVEATS:
        raise CaveatError(f"a token holds at most {tokens.MAX_CAVEATS} caveats")
    for text in new_caveats:
        caveats.parse_strict(text)
    out = macaroon.attenuate(tok, new_caveats).encode()
    if len(out) > tokens.MAX_TOKEN_CHARS:
        raise CaveatError(f"the result would exceed {tokens.MAX_TOKEN_CHARS} characters")
    return out


def bind(token: str | Token, discharge: str | Token) -> str:
    """Bind a discharge to this exact token (pymacaroons `prepare_for_request`)."""
    return macaroon.bind_discharge(_token(token), _token(discharge, (DISCHARGE,))).encode()


def inspect(token: str | Token) -> dict:
    """What a token says about itself. Never includes the signature."""
    tok = _token(token)
    first, third = [], []
    for c in tok.caveats:
        if c.third_party:
            third.append(c.location)
        else:
            first.append(c.cid.decode("utf-8", "replace"))
    out: dict = {"kind": tok.kind, "location": tok.location, "caveats": first, "third_party": third}
    if tok.prefix == DISCHARGE:
        out["ticket_bytes"] = len(tok.identifier)
    else:
        out["id"] = tok.token_id
    return out
