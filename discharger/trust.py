"""Trust policies (SPEC §16): the rules for which ID tokens speak for a service principal.
Pure functions: what makes a policy acceptable, and whether a token's claims match one.

A value matches exactly, or as a prefix when it ends in `*` right after a `/` or `:` (so
`repo:acme/app:*` is every ref of that repository, never `repo:acme/app-evil`). Only top-level
string claims match. A policy needs at least one exact claim; for GitHub's and GitLab's issuers
one of them must be an id that survives renames (a repository renamed and re-registered by
someone else keeps no trust).
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from clients.errors import BadRequest
from discharger.id_tokens import secure
from discharger.store import TrustPolicy

DEFAULT_MAX_AGE = 600  # 10 min since the token's iat
MAX_MAX_AGE = 3600
MAX_CLAIMS = 16
CLAIM_RE = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
MAX_VALUE = 256
# Issuers whose repository names can be re-registered: one claim must be an immutable id.
GITHUB = "https://token.actions.githubusercontent.com"
GITHUB_IDS = ("repository_id", "repository_owner_id")
GITLAB_IDS = ("project_id", "namespace_id")


def immutable_ids(issuer: str) -> tuple[str, ...] | None:
    """The id claims a policy for this issuer must match exactly: GitHub's (also an enterprise's
    own issuer under it, and GitHub Enterprise Server's `/_services/token`) and GitLab.com's."""
    url = issuer.rstrip("/")
    if url == GITHUB or url.startswith(GITHUB + "/") or urlsplit(url).path.endswith("/_services/token"):
        return GITHUB_IDS
    if url == "https://gitlab.com":
        return GITLAB_IDS
    return None


def check_policy(issuer: str, audience: str | None, claims: dict[str, str], max_age: int) -> None:
    """BadRequest naming the rule a proposed policy breaks."""
    if not isinstance(issuer, str) or not secure(issuer) or len(issuer) > 512:
        raise BadRequest("issuer must be an https URL (http only for a loopback host)")
    if audience is not None and (not isinstance(audience, str) or not 0 < len(audience) <= 512):
        raise BadRequest("audience must be a non-empty string")
    if not isinstance(max_age, int) or isinstance(max_age, bool) or not 1 <= max_age <= MAX_MAX_AGE:
        raise BadRequest(f"max_age must be 1 to {MAX_MAX_AGE} seconds")
    if not isinstance(claims, dict) or not 0 < len(claims) <= MAX_CLAIMS:
        raise BadRequest(f"a policy needs 1 to {MAX_CLAIMS} claims (KEY=VALUE)")
    for key, value in claims.items():
        if not isinstance(key, str) or not CLAIM_RE.fullmatch(key):
            raise BadRequest("a claim name must match [A-Za-z0-9_.:-]{1,64}")
        if not isinstance(value, str) or not 0 < len(value) <= MAX_VALUE or not value.isprintable():
            raise BadRequest(f"claim {key}: the value must be 1 to {MAX_VALUE} printable characters")
        if "*" in value and not (value.endswith(("/*", ":*")) and value.count("*") == 1):
            raise BadRequest(f"claim {key}: '*' may only end a value, right after '/' or ':' (a prefix match)")
    exact = [k for k, v in claims.items() if not v.endswith("*")]
    if not exact:
        raise BadRequest("a policy needs at least one claim matched exactly (without '*')")
    ids = immutable_ids(issuer)
    if ids is not None and not any(k in exact for k in ids):
        raise BadRequest(f"a policy for {issuer} needs {' or '.join(ids)} matched exactly: names can be re-registered")


def mismatch(policy: TrustPolicy, claims: dict) -> str | None:
    """The first of the policy's claims the token's claims fail, or None when all match."""
    for key, wanted in policy.claims.items():
        got = claims.get(key)
        if not isinstance(got, str):
            return key
        if wanted.endswith("*"):
            if not got.startswith(wanted[:-1]):
                return key
        elif got != wanted:
            return key
    return None
