"""JSON bodies <-> the authority's typed requests and results (SPEC §4). Shape checks live
here (types, ranges, required fields: 400 `bad_request`); rules about content live in the
domain modules."""

from __future__ import annotations

import re
import time
from typing import Any

import orjson

from authority.config import AuthorityConfig
from authority.dischargers import TrustedDischargers
from authority.minting import MAX_EXPIRES_IN
from authority.model import FeedPage, Minted, MintRequest, Revoked, Stripped, StripRequest, VerifyRequest
from authority.store import OrgRow, TokenRow, WebhookRow
from authority.verification import Verified
from clients import caveats, tokens
from clients.caveats import Access, format_time
from clients.errors import BadRequest, GrantPending
from clients.proof_check import ProofRequest
from clients.tickets import PRINCIPAL_RE, b64e
from server.secret_scanning import MAX_ITEMS, TooManyItems

MAX_NAME = 200


def iso(epoch: int | None) -> str | None:
    return None if epoch is None else format_time(epoch)


def _name(body: dict) -> str | None:
    name = body.get("name")
    if name is not None and (not isinstance(name, str) or len(name) > MAX_NAME):
        raise BadRequest(f"name must be a string of at most {MAX_NAME} characters")
    return name


def _expires_in(body: dict) -> int | None:
    value = body.get("expires_in")
    if value is not None and (type(value) is not int or not 1 <= value <= MAX_EXPIRES_IN):
        raise BadRequest(f"expires_in must be an integer from 1 to {MAX_EXPIRES_IN}")
    return value


def _org(value: Any, field: str = "org") -> str:
    if not isinstance(value, str) or not caveats.NAME_RE.fullmatch(value):
        raise BadRequest(f"{field} is required and must match [A-Za-z0-9][A-Za-z0-9._:-]{{0,127}}")
    return value


def token_list(value: Any) -> list[str]:
    if not isinstance(value, list) or not value or not all(isinstance(t, str) for t in value):
        raise BadRequest("tokens must be a non-empty list of strings")
    if len(value) > tokens.MAX_PRESENTATION:
        raise BadRequest(f"at most {tokens.MAX_PRESENTATION} tokens per presentation")
    return value


# --- requests ------------------------------------------------------------------------------


def org_name(body: dict) -> str:
    return _org(body.get("name"), "name")


def mint_request(body: dict) -> MintRequest:
    org = _org(body.get("org"))
    name = _name(body)
    given = body.get("caveats", [])
    if not isinstance(given, list) or not all(isinstance(c, str) for c in given):
        raise BadRequest("caveats must be a list of strings")
    principal = body.get("for")
    if principal is not None and (not isinstance(principal, str) or not PRINCIPAL_RE.fullmatch(principal)):
        raise BadRequest("for must name a service principal: ci:NAME, NAME matching [a-z0-9-]{1,40}")
    strip_once = body.get("strip_once")
    if strip_once is not None and not isinstance(strip_once, bool):
        raise BadRequest("strip_once must be true or false")
    return MintRequest(org, tuple(given), name, _expires_in(body), principal,
                       principal is not None if strip_once is None else strip_once)


def strip_request(body: dict) -> StripRequest:
    presented = token_list(body.get("tokens"))
    return StripRequest(presented, _name(body), _expires_in(body))


EXCHANGE_GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"
PERMISSION_TYPE = "urn:sable:token-type:permission"
DISCHARGE_TYPE = "urn:sable:token-type:discharge"
SERVICE_TYPE = "urn:sable:token-type:service"


def exchange_request(form: dict) -> StripRequest:
    """RFC 8693's token exchange as a strip (SPEC §16): the permission token as subject, its
    discharge as actor. GrantPending with the RFC's error code for anything else."""
    grant = form.get("grant_type")
    if grant != EXCHANGE_GRANT:
        raise GrantPending("unsupported_grant_type" if grant else "invalid_request", f"grant_type must be {EXCHANGE_GRANT}")
    for field in ("audience", "resource", "scope"):
        if field in form:
            raise GrantPending("invalid_target", f"{field} is not supported: a service token keeps the permission "
                                                 "token's scope; attenuate it afterwards")
    wanted = form.get("requested_token_type")
    if wanted is not None and wanted != SERVICE_TYPE:
        raise GrantPending("invalid_request", f"requested_token_type must be {SERVICE_TYPE}")
    pairs = (("subject_token", "subject_token_type", PERMISSION_TYPE, tokens.PERMISSION),
             ("actor_token", "actor_token_type", DISCHARGE_TYPE, tokens.DISCHARGE))
    for token_field, type_field, expected, prefix in pairs:
        if not form.get(token_field) or not form.get(type_field):
            raise GrantPending("invalid_request", f"{token_field} and {type_field} are required")
        if form[type_field] != expected:
            raise GrantPending("unsupported_token_type", f"{type_field} must be {expected}")
        if not form[token_field].startswith(prefix):
            raise GrantPending("invalid_grant", f"{token_field} is not a {expected.rsplit(':', 1)[1]} token")
    body: dict[str, Any] = {"name": form.get("name")} if form.get("name") else {}
    if "expires_in" in form:
        if not re.fullmatch(r"[0-9]{1,10}", form["expires_in"]):  # ASCII digits: int() takes any script's
            raise GrantPending("invalid_request", "expires_in must be a number of seconds")
        body["expires_in"] = int(form["expires_in"])
    try:
        return StripRequest([form["subject_token"], form["actor_token"]], _name(body), _expires_in(body))
    except BadRequest as e:
        raise GrantPending("invalid_request", e.message) from None


def exchanged(s: Stripped, expires_in: int | None) -> dict:
    bound = any(c.startswith(f"{caveats.CnfJkt.name} ") for c in s.caveats)
    body: dict[str, Any] = {"access_token": s.token, "issued_token_type": SERVICE_TYPE,
                            "token_type": "DPoP" if bound else "Bearer"}
    # The lifetime it got: asked for, or set by its org's lifetime policy (SPEC §18).
    times = [caveats.parse_time(c.split(" ", 1)[1]) for c in s.caveats if c.startswith("expires ")]
    if times:
        body["expires_in"] = max(0, min(times) - int(time.time()))
    elif expires_in is not None:
        body["expires_in"] = expires_in
    return body


def oauth_metadata(public_url: str) -> dict:
    """RFC 8414 (SPEC §16): what an OAuth client library needs to find the token exchange and
    introspection."""
    base = public_url.rstrip("/")
    return {"issuer": public_url, "token_endpoint": f"{base}/v1/oauth/token", "response_types_supported": [],
            "grant_types_supported": [EXCHANGE_GRANT], "token_endpoint_auth_methods_supported": ["none"],
            "introspection_endpoint": f"{base}/v1/introspect",
            "introspection_endpoint_auth_methods_supported": ["bearer"]}


ACCESS_FIELDS = ("org", "action", "app", "host", "instance", "user")


def introspection_request(form: dict) -> tuple[str, Access | None]:
    """RFC 7662's form (SPEC §17): `token` (a presentation), optional `token_type_hint`, and
    optional access fields, judged as in /v1/verify when given (org and action then needed)."""
    presentation = form.get("token")
    if not presentation:
        raise GrantPending("invalid_request", "token is required")
    given = {k: form[k] for k in ACCESS_FIELDS if form.get(k)}
    if not given:
        return presentation, None
    if "org" not in given or "action" not in given:
        raise GrantPending("invalid_request", "with access fields, org and action are both required")
    try:
        return presentation, Access.from_dict(given)
    except BadRequest as e:
        raise GrantPending("invalid_request", e.message) from None


def verify_request(body: dict) -> VerifyRequest:
    presented = token_list(body.get("tokens"))
    access = Access.from_dict(body.get("access"))  # CaveatError is a 400
    proof = body.get("proof")
    if proof is None:
        return VerifyRequest(presented, access)
    if not isinstance(proof, dict) or set(proof) != {"dpop", "htm", "htu"} \
            or not all(isinstance(v, str) for v in proof.values()):
        raise BadRequest('proof must be {"dpop": JWS, "htm": METHOD, "htu": URL}, all strings')
    return VerifyRequest(presented, access, ProofRequest(proof["dpop"], proof["htm"], proof["htu"]))


def feed_query(query: dict) -> tuple[int | None, float]:
    after, wait = query.get("after"), query.get("wait", "0")
    try:
        after_n = None if after is None else int(after)
        wait_s = float(wait)
    except ValueError:
        raise BadRequest("after must be an integer and wait a number of seconds") from None
    if (after_n is not None and not 0 <= after_n < 2**63) or not 0 <= wait_s <= 60:
        raise BadRequest("after must be a cursor (>= 0) and wait from 0 to 60")
    return after_n, wait_s


# --- results -------------------------------------------------------------------------------


def info(config: AuthorityConfig, trust: TrustedDischargers, version: str, worker: int) -> dict:
    return {
        "service": "sable-authority",
        "version": version,
        "worker": worker,
        "location": config.public_url,
        # Every caveat this authority understands: a discharger adds a newer one to its
        # discharges only once each authority it serves lists it (SPEC §16, §19).
        "caveats": sorted(caveats.REGISTRY),
        "dischargers": [
            {"location": d.location, "public_keys": [{"kid": k, "key": b64e(v)} for k, v in d.public_keys]}
            for d in trust.current
        ],
    }


def org(row: OrgRow) -> dict:
    return {"name": row.name, "created_at": iso(row.created_at)}


def minted(m: Minted) -> dict:
    return {"token": m.token, "id": m.id, "caveats": m.caveats, "for": m.principal, "strip_once": m.strip_once}


def stripped(s: Stripped) -> dict:
    return {"token": s.token, "id": s.id, "parent": s.parent, "user": s.user, "caveats": s.caveats}


def verified(v: Verified) -> dict:
    rec = v.record
    return {"allowed": True, "id": rec.id, "kind": rec.kind, "org": rec.org, "user": v.user,
            "caveats": [c.text for c in v.caveats]}


def denied(reason: str) -> dict:
    return {"allowed": False, "error": "denied", "message": reason}


def revoked(entries: list[Revoked]) -> dict:
    return {"revoked": [{"id": r.id, "scope": r.scope} for r in entries]}


def feed_page(page: FeedPage) -> dict:
    return {"cursor": page.cursor, "revoked": [{"id": e.id, "at": iso(e.at)} for e in page.revoked]}


def token(r: TokenRow) -> dict:
    return {
        "id": r.id, "kind": r.kind, "name": r.name, "org": r.org, "parent": r.parent, "user": r.user,
        "created_by": r.created_by, "created_at": iso(r.created_at), "expires_at": iso(r.expires_at),
        "revoked_at": iso(r.revoked_at), "last_used_at": iso(r.last_used_at), "caveats": r.caveats,
        "for": r.principal, "strip_once": r.strip_once,
    }


def user_token_request(body: dict) -> tuple[str, str]:
    org, role = _org(body.get("org")), body.get("role", "member")
    if role not in ("member", "admin"):
        raise BadRequest("role must be member or admin")
    return org, role


def user_token(m: Minted) -> dict:
    expires = next(c for c in m.caveats if c.startswith("expires "))[len("expires "):]
    return {"token": m.token, "id": m.id, "expires_at": expires}


def found_credentials(body: bytes) -> list[str]:
    """`POST /v1/credentials/revoke`'s `{"credentials": [...]}`: 1 to 1,000 strings, each no
    longer than a token may be. Only the shape is judged here, never a credential."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise BadRequest("body is not valid JSON text") from None
    found = parsed.get("credentials") if isinstance(parsed, dict) else None
    if not isinstance(found, list) or not found or not all(
            isinstance(c, str) and 0 < len(c) <= tokens.MAX_TOKEN_CHARS for c in found):
        raise BadRequest('body must be {"credentials": ["sable_...", ...]}')
    if len(found) > MAX_ITEMS:
        raise TooManyItems(f"at most {MAX_ITEMS} credentials in one report")
    return found


def webhook_request(body: dict) -> tuple[str, str, list[str]]:
    """`POST /v1/webhooks`: {"org", "url", "events": [...]}."""
    org, url, events = body.get("org"), body.get("url"), body.get("events")
    if not isinstance(org, str) or not caveats.NAME_RE.fullmatch(org):
        raise BadRequest("org must be an org name")
    if not isinstance(url, str):
        raise BadRequest("url must be a string")
    if not isinstance(events, list) or not all(isinstance(e, str) for e in events):
        raise BadRequest("events must be a list of event names")
    return org, url, events


def webhook(row: WebhookRow) -> dict:
    """An endpoint as listed: never its secret."""
    return {"id": row.id, "org": row.org, "url": row.url, "events": list(row.events), "state": row.state,
            "pending": row.pending, "created_at": format_time(row.created_at),
            "disabled_at": format_time(row.disabled_at) if row.disabled_at else None}
