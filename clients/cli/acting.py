"""Who the token commands act as: the admin credential when SABLE_ADMIN_TOKEN is set, else the
logged-in user, through a user token and its discharge for the org (SPEC §11). Both are
cached per org (mode 0600) until shortly before they expire."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

from clients import caveats, offline, tokens
from clients.cli.common import (
    EXIT_USAGE,
    admin_token,
    authority,
    authority_url,
    discharger,
    fail,
    load_session,
    session_path,
    write_private,
)
from clients.errors import SableAPIError
from clients.tickets import b64e

if TYPE_CHECKING:
    from clients.sdk import AuthorityClient

_MARGIN = 30  # seconds: renew a cached credential this long before it expires


def _cache_path() -> Path:
    return session_path().with_name("user-tokens.json")


def _expiry(text: str) -> float:
    try:
        return caveats.parse_time(text) if text else 0.0
    except Exception:  # a damaged cache entry: renew it
        return 0.0


async def acting(org: str | None, need_org: bool = True) -> tuple[AuthorityClient, str | None]:
    """An authority client with the right credential, and the org to act on (filled in when
    the user belongs to exactly one)."""
    if admin_token("authority"):
        if org is None and need_org:
            fail("--org is required with the admin credential", EXIT_USAGE)
        return authority(), org
    data = load_session()
    async with discharger(data.get("discharger_url")) as d:
        try:
            current = await d.current_session(data["session"])
        except SableAPIError as e:
            if e.code == "unauthorized":
                fail("your session has expired: run `sable login`")
            raise
        roles: dict[str, str] = current["roles"]
        if org is None:
            if len(roles) != 1:
                fail(f"--org is required: you belong to {len(roles)} orgs ({', '.join(sorted(roles)) or 'none'})",
                     EXIT_USAGE)
            org = next(iter(roles))
        if org not in roles:
            fail(f"you ({current['username']}) are not a member of org {org!r}")
        role = roles[org]
        key = f"{authority_url()}|{current['username']}|{org}|{role}"
        path = _cache_path()
        try:
            cache = json.loads(path.read_text())
        except (OSError, ValueError):
            cache = {}
        entry = cache.get(key) or {}
        now = time.time()
        async with authority() as a:
            if _expiry(entry.get("ut_expires", "")) - _MARGIN < now:
                got = await a.user_token(org, role)
                entry = {"ut": got["token"], "ut_expires": got["expires_at"]}
        if _expiry(entry.get("dt_expires", "")) - _MARGIN < now:
            ticket = [c for c in tokens.parse(entry["ut"]).caveats if c.third_party][0].cid
            got = await d.discharge(data["session"], b64e(ticket))
            entry.update(dt=offline.bind(entry["ut"], got["discharge"]), dt_expires=got["expires_at"])
        cache[key] = entry
        write_private(path, cache)
    from clients.sdk import AuthorityClient
    return AuthorityClient(authority_url(), user_credential=f"{entry['ut']},{entry['dt']}"), org
