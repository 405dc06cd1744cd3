"""Console sessions against both real services (`sable dev`), SPEC §19: a session lasts no
longer than the discharge it was made from; past it the next page signs in again through the
discharger without a prompt, which checks the user again (disabled, membership, role);
offboarding at the authority ends sessions at once; a post after the end changes nothing and
says so. Session ends are made by moving `expires_at` in the authority's database: the clock
a real session waits out, without the five minutes."""

from __future__ import annotations

import re
import sqlite3
import time
from contextlib import closing
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest

from clients import caveats, offline, tokens
from clients.tickets import b64e
from tests.discharger.test_device import csrf_of

pytestmark = pytest.mark.slow


def jar() -> aiohttp.CookieJar:
    return aiohttp.CookieJar(unsafe=True)  # both services are on 127.0.0.1


def authority_db(dev) -> Path:
    return Path(dev["log"]).parent / "var" / "authority.db"


def sessions(dev) -> list[tuple]:
    with closing(sqlite3.connect(authority_db(dev))) as db:
        return db.execute("SELECT username, org, role, expires_at FROM console_sessions").fetchall()


def end_sessions(dev) -> None:
    """What five minutes do to a console session: it has expired."""
    with closing(sqlite3.connect(authority_db(dev))) as db, db:
        db.execute("UPDATE console_sessions SET expires_at = 1")


async def sign_in(http, dev, org="acme") -> str:
    """Signed out everywhere: the console page, the discharger's sign-in, and back. The
    console page's HTML."""
    async with http.get(f"{dev['a']}/console/orgs/{org}") as r:
        assert r.status == 200 and urlsplit(str(r.url)).path == "/login", str(r.url)
        token, target = csrf_of(await r.text()), parse_qs(urlsplit(str(r.url)).query)["next"][0]
    async with http.post(f"{dev['d']}/login", data={"csrf": token, "username": "alice", "password": dev["password"],
                                                      "next": target}) as r:
        assert r.status == 200 and str(r.url) == f"{dev['a']}/console/orgs/{org}", str(r.url)
        return await r.text()


async def open_console(http, dev, org="acme") -> tuple[int, str, list[str]]:
    """GET the console page, following redirects: (status, final URL, the hosts passed)."""
    async with http.get(f"{dev['a']}/console/orgs/{org}") as r:
        return r.status, str(r.url), [str(h.url) for h in r.history]


async def admin(http, dev, service: str, path: str, body: dict) -> dict:
    async with http.post(dev[service] + path, json=body,
                         headers={"Authorization": f"Bearer {dev['admin']}"}) as r:
        assert r.status == 200, await r.text()
        return await r.json()


async def test_a_session_lasts_no_longer_than_its_discharge_and_renews_without_a_prompt(dev):
    async with aiohttp.ClientSession(cookie_jar=jar()) as http:
        before = int(time.time())
        html = await sign_in(http, dev)
        assert "Tokens of org acme" in html and "(member)" in html
        ((user, org, role, expires_at),) = sessions(dev)
        assert (user, org, role) == ("alice", "acme", "member")
        assert before < expires_at <= int(time.time()) + 300  # the discharge's lifetime, not an hour

        end_sessions(dev)
        status, url, passed = await open_console(http, dev)
        assert status == 200 and url == f"{dev['a']}/console/orgs/acme"
        assert any(u.startswith(dev["d"] + "/flows/") for u in passed), passed  # through the discharger
        assert not any("/login" in u for u in passed), passed  # and without a prompt
        assert len(sessions(dev)) == 1 and sessions(dev)[0][3] > int(time.time())


async def test_renewal_takes_the_users_role_at_the_discharger_each_time(dev):
    async with aiohttp.ClientSession(cookie_jar=jar()) as http:
        assert "(member)" in await sign_in(http, dev)
        await admin(http, dev, "d", "/v1/users/alice/orgs", {"orgs": [{"org": "acme", "role": "admin"}]})
        end_sessions(dev)
        status, _, _ = await open_console(http, dev)
        assert status == 200 and sessions(dev)[0][2] == "admin"
        await admin(http, dev, "d", "/v1/users/alice/orgs", {"orgs": ["acme"]})  # demoted
        end_sessions(dev)
        status, _, _ = await open_console(http, dev)
        assert status == 200 and sessions(dev)[0][2] == "member"
        await admin(http, dev, "d", "/v1/users/alice/orgs", {"orgs": ["other"]})  # out of acme
        end_sessions(dev)
        status, url, _ = await open_console(http, dev)
        assert not url.startswith(dev["a"] + "/console/orgs/acme"), url  # the discharger keeps it
        async with http.get(f"{dev['a']}/console/orgs/acme", allow_redirects=False) as r:
            assert r.status == 303 and r.headers["Location"].startswith(dev["d"])  # still signed out


async def test_a_disabled_user_loses_the_console_when_its_discharge_ends(dev):
    async with aiohttp.ClientSession(cookie_jar=jar()) as http:
        await sign_in(http, dev)
        await admin(http, dev, "d", "/v1/users/alice/disable", {})
        end_sessions(dev)
        status, url, _ = await open_console(http, dev)
        assert not url.startswith(dev["a"] + "/console/"), (status, url)
        assert sessions(dev) == [] or all(row[3] <= int(time.time()) for row in sessions(dev))


async def test_offboarding_at_the_authority_ends_console_sessions_at_once(dev):
    async with aiohttp.ClientSession(cookie_jar=jar()) as http:
        await sign_in(http, dev)
        assert len(sessions(dev)) == 1
        await admin(http, dev, "a", "/v1/tokens/revoke", {"user": "alice"})
        assert sessions(dev) == []
        async with http.get(f"{dev['a']}/console/orgs/acme", allow_redirects=False) as r:
            assert r.status == 303 and r.headers["Location"].startswith(dev["d"])  # signed out


async def test_a_post_after_the_end_changes_nothing_and_says_so(dev):
    async with aiohttp.ClientSession(cookie_jar=jar()) as http:
        page = await sign_in(http, dev)
        end_sessions(dev)
        async with http.post(f"{dev['a']}/console/orgs/acme/tokens", allow_redirects=False,
                             data={"csrf": csrf_of(page), "name": "late", "apps": "orders", "actions": "r"}) as r:
            assert r.status == 303 and r.headers["Location"] == "/console/orgs/acme?notice=expired"
        async with http.post(f"{dev['a']}/console/orgs/acme/tokens", allow_redirects=False,
                             data={"csrf": "forged", "name": "late"}) as r:
            assert r.status == 403  # another site's post is refused, expired session or not
        async with http.get(f"{dev['a']}/console/orgs/acme?notice=expired") as r:
            html = await r.text()
            assert r.status == 200 and str(r.url).startswith(f"{dev['a']}/console/orgs/acme")
            assert "signed in again" in html and "late" not in html
        async with http.get(f"{dev['a']}/v1/tokens?org=acme", headers={"Authorization": f"Bearer {dev['admin']}"}) as r:
            assert all(t["name"] != "late" for t in (await r.json())["tokens"])


async def test_discharges_carry_the_users_role_once_the_authority_lists_it(dev):
    """And a `discharge-id` first (SPEC §16), where a holder cannot write one."""
    async with aiohttp.ClientSession() as http:
        async with http.get(dev["a"] + "/v1/info") as r:
            listed = (await r.json())["caveats"]
            assert "role" in listed and "discharge-id" in listed
        async with http.post(dev["a"] + "/v1/tokens", json={"org": "acme"},
                             headers={"Authorization": f"Bearer {dev['admin']}"}) as r:
            pt = (await r.json())["token"]
        async with http.post(dev["d"] + "/v1/sessions", json={"username": "alice", "password": dev["password"]}) as r:
            session = (await r.json())["session"]
        ticket = [c for c in tokens.parse(pt).caveats if c.third_party][0].cid
        async with http.post(dev["d"] + "/v1/discharges", json={"ticket": b64e(ticket)},
                             headers={"Authorization": f"Bearer {session}"}) as r:
            dt = (await r.json())["discharge"]
        said = offline.inspect(dt)["caveats"]
        assert re.fullmatch(r"discharge-id [0-9a-f]{32}", said[0]), said
        assert said[1] == "user alice" and said[2].startswith("expires ") and said[3] == "role member", said
        # It always holds: the pair verifies as before.
        async with http.post(dev["a"] + "/v1/verify", json={"tokens": [pt, offline.bind(pt, dt)],
                                                            "access": {"org": "acme", "action": "r"}}) as r:
            assert r.status == 200, await r.text()
    assert caveats.lowest_role([caveats.parse(b"role admin"), caveats.parse(b"role member")]) == "member"
