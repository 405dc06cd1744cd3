"""JSON bodies <-> the discharger's typed requests and results (SPEC §5)."""

from __future__ import annotations

from typing import Any

from clients import tokens
from clients.caveats import NAME_RE, format_time
from clients.errors import BadRequest
from clients.tickets import b64d
from discharger.model import Credentials, Discharge, Membership, NewUser, Session

MAX_PASSWORD = 1024
MIN_PASSWORD = 8


def _orgs(value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(o, str) and NAME_RE.fullmatch(o) for o in value):
        raise BadRequest("orgs must be a list of org names")
    return sorted(set(value))


def new_user(body: dict) -> NewUser:
    username, password = body.get("username"), body.get("password")
    orgs = _orgs(body.get("orgs", []))
    if not isinstance(username, str) or not NAME_RE.fullmatch(username):
        raise BadRequest("username must match [A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
    if not isinstance(password, str) or not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise BadRequest(f"password must be {MIN_PASSWORD} to {MAX_PASSWORD} characters")
    return NewUser(username, password, orgs)


def membership(username: str, body: dict) -> Membership:
    return Membership(username, _orgs(body.get("orgs")))


def credentials(body: dict) -> Credentials:
    username, password = body.get("username"), body.get("password")
    if not isinstance(username, str) or not isinstance(password, str) or len(password) > MAX_PASSWORD \
            or len(username) > 128:
        raise BadRequest("username and password must be strings")
    return Credentials(username, password)


def ticket(body: dict) -> bytes:
    try:
        raw = b64d(body.get("ticket"))  # type: ignore[arg-type]  # b64d refuses a non-string
    except ValueError:
        raise BadRequest("ticket must be base64url") from None
    if len(raw) > tokens.MAX_TOKEN_CHARS:
        raise BadRequest("ticket must be base64url")
    return raw


def user(m: Membership) -> dict:
    return {"username": m.username, "orgs": m.orgs}


def session(s: Session) -> dict:
    return {"session": s.secret, "expires_at": format_time(s.expires_at)}


def discharge(d: Discharge) -> dict:
    return {"discharge": d.token, "expires_at": format_time(d.expires_at)}
