"""JSON bodies <-> the discharger's typed requests and results (SPEC §5)."""

from __future__ import annotations

import time
from typing import Any

from clients import tokens
from clients.caveats import NAME_RE, format_time
from clients.errors import BadRequest
from clients.tickets import b64d
from discharger.model import ROLES, USERNAME_RE, USERNAME_RULE, Credentials, Discharge, Membership, NewUser, Session
from discharger.store import OrgPolicy, PrincipalRow, TrustPolicy

MAX_PASSWORD = 1024
MIN_PASSWORD = 8


def _orgs(value: Any) -> dict[str, str]:
    """`orgs`: org names (role member) or {"org", "role"} objects -> {org: role}."""
    shape = 'orgs must be a list of org names or {"org", "role"} objects (role member or admin)'
    if not isinstance(value, list) or len(value) > 1000:
        raise BadRequest(shape)
    roles: dict[str, str] = {}
    for item in value:
        org: Any
        role: Any
        if isinstance(item, str):
            org, role = item, "member"
        elif isinstance(item, dict) and set(item) <= {"org", "role"}:
            org, role = item.get("org"), item.get("role", "member")
        else:
            raise BadRequest(shape)
        if not isinstance(org, str) or not NAME_RE.fullmatch(org) or role not in ROLES:
            raise BadRequest(shape)
        roles[org] = max(role, roles.get(org, "member"), key=ROLES.index)
    return dict(sorted(roles.items()))


def new_user(body: dict) -> NewUser:
    username, password, idp = body.get("username"), body.get("password"), body.get("idp")
    orgs = _orgs(body.get("orgs", []))
    if not isinstance(username, str) or not USERNAME_RE.fullmatch(username):
        raise BadRequest(USERNAME_RULE)
    if idp is not None:
        if not isinstance(idp, str) or password is not None:
            raise BadRequest("a user for an identity provider (idp) has no password")
        return NewUser(username, None, orgs, idp)
    if not isinstance(password, str) or not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise BadRequest(f"password must be {MIN_PASSWORD} to {MAX_PASSWORD} characters")
    return NewUser(username, password, orgs)


def link(body: dict) -> tuple[str, str]:
    """(provider name, sub) for linking an identity to a user."""
    idp, sub = body.get("idp"), body.get("sub")
    if not isinstance(idp, str) or not idp:
        raise BadRequest("idp (a configured provider's name) is required")
    if not isinstance(sub, str) or not 0 < len(sub) <= 255:
        raise BadRequest("sub (the user's subject at the provider, 1 to 255 characters) is required")
    return idp, sub


def membership(username: str, body: dict) -> Membership:
    return Membership(username, _orgs(body.get("orgs")))


def credentials(body: dict) -> Credentials:
    username, password, totp = body.get("username"), body.get("password"), body.get("totp")
    if not isinstance(username, str) or not isinstance(password, str) or len(password) > MAX_PASSWORD \
            or len(username) > 128:
        raise BadRequest("username and password must be strings")
    if totp is not None and (not isinstance(totp, str) or len(totp) > 32):
        raise BadRequest("totp must be a string: 6 digits, or a recovery code")
    return Credentials(username, password, totp)


def ticket(body: dict) -> bytes:
    try:
        raw = b64d(body.get("ticket"))  # type: ignore[arg-type]  # b64d refuses a non-string
    except ValueError:
        raise BadRequest("ticket must be base64url") from None
    if len(raw) > tokens.MAX_TOKEN_CHARS:
        raise BadRequest("ticket must be base64url")
    return raw


async def read_form_or_json(request) -> dict:
    """A JSON object, or RFC 8628's form fields (application/x-www-form-urlencoded)."""
    from server.http import read_json
    from server.pagekit import read_form

    if request.content_type == "application/x-www-form-urlencoded":
        return await read_form(request)
    return await read_json(request)


def client_name(body: dict) -> str | None:
    name = body.get("client_name", body.get("client_id"))
    if name is None:
        return None
    if not isinstance(name, str) or len(name) > 64 or not name.isprintable():
        raise BadRequest("client_name must be at most 64 printable characters")
    return name


def return_to(body: dict) -> str | None:
    value = body.get("return_to")
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 2048 or not value.startswith(("https://", "http://")) \
            or any(ord(ch) <= 0x20 or ord(ch) == 0x7F for ch in value) or "#" in value or "\\" in value:
        raise BadRequest("return_to must be an http(s) URL without spaces, control characters or a fragment")
    return value


def device_session(s: Session, username: str) -> dict:
    return {"session": s.secret, "access_token": s.secret, "token_type": "Bearer",
            "expires_in": max(0, s.expires_at - int(time.time())), "expires_at": format_time(s.expires_at),
            "username": username, "auth_method": s.auth_method}


def password(body: dict) -> str:
    value = body.get("password")
    if not isinstance(value, str) or not MIN_PASSWORD <= len(value) <= MAX_PASSWORD:
        raise BadRequest(f"password must be {MIN_PASSWORD} to {MAX_PASSWORD} characters")
    return value


def user_row(u) -> dict:
    return {"username": u.username, "orgs": sorted(u.roles), "roles": dict(sorted(u.roles.items())),
            "disabled": u.disabled}


def current_session(username: str, roles: dict[str, str], expires_at: int, auth_method: str) -> dict:
    return {"username": username, "orgs": sorted(roles), "roles": dict(sorted(roles.items())),
            "expires_at": format_time(expires_at), "auth_method": auth_method}


def links(found: list) -> dict:
    return {"links": [{"idp": x.provider, "issuer": x.issuer, "sub": x.sub} for x in found]}


def user(m: Membership) -> dict:
    return {"username": m.username, "orgs": sorted(m.roles), "roles": dict(sorted(m.roles.items()))}


def session(s: Session) -> dict:
    return {"session": s.secret, "expires_at": format_time(s.expires_at), "auth_method": s.auth_method}


def discharge(d: Discharge) -> dict:
    return {"discharge": d.token, "expires_at": format_time(d.expires_at), "auth_method": d.auth_method}


def org_name(value: str) -> str:
    if not NAME_RE.fullmatch(value):
        raise BadRequest("org must match [A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
    return value


def new_policy(org: str, body: dict) -> OrgPolicy:
    idp, mfa = body.get("require_idp"), body.get("require_mfa", False)
    if idp is not None and not isinstance(idp, str):
        raise BadRequest("require_idp must be a provider's name, or null")
    if not isinstance(mfa, bool):
        raise BadRequest("require_mfa must be true or false")
    return OrgPolicy(org, idp or None, mfa)


def policy(p: OrgPolicy) -> dict:
    return {"org": p.org, "require_idp": p.require_idp, "require_mfa": p.require_mfa}


# --- service principals (SPEC §16) -----------------------------------------------------------

def id_token(body: dict) -> str:
    value = body.get("id_token")
    if not isinstance(value, str) or not value:
        raise BadRequest("id_token must be the CI's ID token (a JWT)")
    return value


def new_principal(body: dict) -> tuple[str, str, str]:
    name, org, role = body.get("name"), body.get("org"), body.get("role", "member")
    if not isinstance(name, str):
        raise BadRequest("name is required: NAME or ci:NAME")
    return name, org_name(org if isinstance(org, str) else ""), role if isinstance(role, str) else ""


def trust_policy_request(body: dict) -> tuple[str, str | None, dict[str, str], int | None]:
    issuer, audience, claims, max_age = body.get("issuer"), body.get("audience"), body.get("claims"), body.get("max_age")
    if not isinstance(issuer, str):
        raise BadRequest("issuer is required: the CI's OpenID issuer URL")
    if not isinstance(claims, dict):
        raise BadRequest('claims is required: {"KEY": "VALUE", ...}')
    if max_age is not None and (type(max_age) is not int):
        raise BadRequest("max_age must be a number of seconds")
    return issuer, audience, claims, max_age


def trust_policy(p: TrustPolicy) -> dict:
    return {"id": p.id, "issuer": p.issuer, "audience": p.audience, "claims": p.claims, "max_age": p.max_age}


def principal(p: PrincipalRow) -> dict:
    return {"name": p.name, "org": p.org, "role": p.role, "disabled": p.disabled,
            "created_at": format_time(p.created_at), "policies": [trust_policy(t) for t in p.policies]}


def oauth_metadata(public_url: str) -> dict:
    """RFC 8414 (SPEC §16): the device login's endpoints, for OAuth client libraries."""
    base = public_url.rstrip("/")
    return {"issuer": public_url, "device_authorization_endpoint": f"{base}/v1/device/authorize",
            "token_endpoint": f"{base}/v1/device/token", "response_types_supported": [],
            "grant_types_supported": ["urn:ietf:params:oauth:grant-type:device_code"],
            "token_endpoint_auth_methods_supported": ["none"]}
