"""The console (SPEC §11): pages under /console/ on the authority. Sign-in goes through the
discharger (`authority.console`); listing, creating and revoking go through the same
self-service rules as the JSON API. Works without JavaScript."""

from __future__ import annotations

import re
import time
from pathlib import Path
from urllib.parse import urlencode

from aiohttp import web

from authority.model import MintRequest
from authority.selfservice import Member
from authority.service import Authority
from clients import caveats, scope
from clients.caveats import NAME_RE, format_time
from clients.errors import BadRequest, Forbidden, NotFound
from server.http import caller
from server.pagekit import Pages, check_csrf, css, page_errors, read_form

COOKIE = "sable_console"
SIGNIN_COOKIE = "sable_console_signin"  # apart, so starting a sign-in never ends a session
SERVICE = "console"
AUTHORITY = web.AppKey("authority", Authority)
PAGES = web.AppKey("authority_pages", Pages)
FOLDER = Path(__file__).with_name("templates")
_TOKEN_ID = re.compile(r"[0-9a-f]{32}")
_SECRET = re.compile(r"[A-Za-z0-9_-]{16,128}")  # what server.pagekit.new_secret makes
NOTICES = {"expired": "Your console session had ended, so you were signed in again. "
                      "What you last sent was not done: do it again if you still want it."}
routes = web.RouteTableDef()
page = page_errors(PAGES, SERVICE)


def _see_other(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location, "Cache-Control": "no-store"})


def _org(request: web.Request) -> str:
    org = request.match_info["org"]
    if not NAME_RE.fullmatch(org):
        raise NotFound("no such org")
    return org


async def _signed_in(request: web.Request, org: str) -> tuple[Member, str] | None:
    """The member and cookie of a console session for this org, or None."""
    pages: Pages = request.app[PAGES]
    cookie = pages.cookie(request, COOKIE)
    member = await request.app[AUTHORITY].console.member(cookie)
    if member is None or member.org != org or cookie is None:
        return None
    return member, cookie


async def _signed_in_form(request: web.Request) -> tuple[str, Member, str, dict]:
    """For a form posted to an org's console: (org, member, cookie, fields), after the sign-in
    and CSRF checks (403 otherwise)."""
    org = _org(request)
    cookie = request.app[PAGES].cookie(request, COOKIE)
    member = await request.app[AUTHORITY].console.member(cookie)
    if cookie is not None and member is None:
        await _form(request, cookie)  # CSRF first: another site's post learns nothing
        # The session ended (it lasts no longer than its discharge): nothing is done; the page
        # signs in again and says so.
        raise web.HTTPSeeOther(f"/console/orgs/{org}?notice=expired", headers={"Cache-Control": "no-store"})
    if cookie is None or member is None or member.org != org:
        raise Forbidden("sign in to this org's console first")
    return org, member, cookie, await _form(request, cookie)


async def _form(request: web.Request, cookie: str) -> dict:
    form = await read_form(request)
    check_csrf(request.app[AUTHORITY].console.csrf(cookie), form)
    return form


def _status(row, now: int) -> str:
    if row.revoked_at is not None:
        return "revoked"
    if row.expires_at is not None and row.expires_at <= now:
        return "expired"
    return "active"


# The create form as it starts: a name and a scope must be chosen; a lifetime is offered.
BLANK_FORM = {"name": "", "apps": "", "actions": "", "all_apps": False, "all_actions": False, "expires_in": "30d"}


async def _render(request: web.Request, member: Member, cookie: str, status: int = 200, **extra) -> web.Response:
    a: Authority = request.app[AUTHORITY]
    now = int(time.time())
    rows = []
    for r in await a.selfservice.tokens(member, member.org):
        state = _status(r, now)
        rows.append({"id": r.id, "name": r.name, "kind": r.kind, "created_by": r.created_by,
                     "scope": scope.summary(r.caveats),
                     "created": format_time(r.created_at),
                     "expires": format_time(r.expires_at) if r.expires_at else "never",
                     "last_used": format_time(r.last_used_at) if r.last_used_at else "never", "status": state,
                     "revocable": state == "active" and a.selfservice.may_revoke(member, r)})
    # An org's admins see its webhooks (SPEC §18): where its events go, and whether they get there.
    hooks = [{"id": w.id, "url": w.url, "events": ", ".join(w.events), "state": w.state, "pending": w.pending}
             for w in await a.webhooks.list(member.org)] if member.role == "admin" else None
    context = {"new_token": None, "new_name": None, "error": None, "notice": None, "values": BLANK_FORM, **extra}
    return request.app[PAGES].render("console.html", status=status, service=SERVICE, user=member.username,
                                     role=member.role, org=member.org, rows=rows, webhooks=hooks,
                                     csrf=a.console.csrf(cookie), **context)


@routes.get("/static/sable.css")
async def stylesheet(request: web.Request) -> web.Response:
    return await css(request)


@routes.get("/")
async def root(request: web.Request) -> web.Response:
    return _see_other("/console/")


@routes.get("/console/")
@page
async def console_home(request: web.Request) -> web.Response:
    """The user's orgs: listed by the discharger, who knows them, with links back to this
    console (the discharger's `authority_url` must name this authority)."""
    discharger = request.app[AUTHORITY].minting.trust.first()
    if discharger is None:
        raise NotFound("this authority trusts no discharger, so nobody can sign in")
    public = request.app[AUTHORITY].config.public_url
    return _see_other(f"{discharger.location}/?{urlencode({'authority': public})}")


@routes.get("/console/orgs/{org}")
@page
async def console_page(request: web.Request) -> web.Response:
    org = _org(request)
    signed_in = await _signed_in(request, org)
    notice = request.query.get("notice")
    if signed_in is not None:
        return await _render(request, *signed_in, notice=NOTICES.get(notice or ""))
    a: Authority = request.app[AUTHORITY]
    if not await a.store.org_exists(org):
        raise NotFound(f"org {org!r} does not exist")
    # The discharge tells the user's own role; ?role=admin asks the discharger to insist on it.
    role = "admin" if request.query.get("role") == "admin" else "member"
    started = await a.console.start(org, role, caller(request), notice=notice if notice in NOTICES else None)
    resp = _see_other(started.user_url)
    request.app[PAGES].set_cookie(request, resp, SIGNIN_COOKIE, started.cookie, max_age=600)
    return resp


@routes.get("/console/callback")
@page
async def callback(request: web.Request) -> web.Response:
    pages: Pages = request.app[PAGES]
    state, code = request.query.get("state", ""), request.query.get("code", "")
    if not _SECRET.fullmatch(state) or not _SECRET.fullmatch(code):  # the code goes into a header next
        raise BadRequest("this sign-in link is incomplete or damaged; start again")
    cookie, org, notice = await request.app[AUTHORITY].console.finish(state, pages.cookie(request, SIGNIN_COOKIE),
                                                                       code, caller(request))
    resp = _see_other(f"/console/orgs/{org}" + (f"?{urlencode({'notice': notice})}" if notice in NOTICES else ""))
    pages.clear_cookie(request, resp, SIGNIN_COOKIE)
    pages.set_cookie(request, resp, COOKIE, cookie)  # a new value at every sign-in: no fixation
    return resp


@routes.post("/console/orgs/{org}/tokens")
@page
async def create(request: web.Request) -> web.Response:
    org, member, cookie, form = await _signed_in_form(request)
    values = {**{k: form.get(k, "").strip()[:256] for k in ("name", "apps", "actions", "expires_in")},
              "all_apps": form.get("all_apps") == "yes", "all_actions": form.get("all_actions") == "yes"}

    async def again(message: str) -> web.Response:  # the form comes back as it was sent
        return await _render(request, member, cookie, 400, error=message, values=values)

    name = values["name"]
    if not name:
        return await again("Name is required: say what the token is for")
    if len(name) > 128 or any(ord(ch) < 0x20 for ch in name):
        return await again("Name must be at most 128 printable characters")
    given = []
    for field, everything in (("apps", "All apps"), ("actions", "All actions")):
        value, chose_all = values[field].replace(" ", ""), values[f"all_{field}"]
        if bool(value) == chose_all:  # neither (a full-power token by accident) or both
            return await again(f"{field.capitalize()}: name them, or choose {everything}" if not value
                               else f"{field.capitalize()}: name them or choose {everything}, not both")
        if value:
            given.append(f"{field} {value}")
    expires_in = None
    if values["expires_in"]:
        expires_in = caveats.parse_duration(values["expires_in"])
        if expires_in is None:
            return await again("Expires in must be a duration like 90s, 15m, 12h or 30d")
    a: Authority = request.app[AUTHORITY]
    try:  # minting checks the caveats and the lifetime, as for the JSON API
        minted = await a.selfservice.mint(member, MintRequest(org, tuple(given), name, expires_in), caller(request))
    except BadRequest as e:  # CaveatError included
        return await again(e.message)
    return await _render(request, member, cookie, new_token=minted.token, new_name=name)


async def _revocable(request: web.Request, member: Member):
    token_id = request.match_info["id"]
    if not _TOKEN_ID.fullmatch(token_id):
        raise NotFound("no token with that id")
    return await request.app[AUTHORITY].selfservice.revocable(member, token_id)


@routes.get("/console/orgs/{org}/tokens/{id}/revoke")
@page
async def confirm_revoke(request: web.Request) -> web.Response:
    """Revoking asks first, on a page that names the token and says what else stops."""
    org = _org(request)
    signed_in = await _signed_in(request, org)
    if signed_in is None:
        return _see_other(f"/console/orgs/{org}")  # signs in, then the list; the user clicks again
    member, cookie = signed_in
    row = await _revocable(request, member)
    a: Authority = request.app[AUTHORITY]
    return request.app[PAGES].render("revoke.html", service=SERVICE, user=member.username, org=org, csrf=a.console.csrf(cookie),
                                     token={"id": row.id, "name": row.name, "kind": row.kind,
                                            "scope": scope.summary(row.caveats), "revoked": row.revoked_at is not None})


@routes.post("/console/orgs/{org}/tokens/{id}/revoke")
@page
async def revoke(request: web.Request) -> web.Response:
    org, member, _, form = await _signed_in_form(request)
    row = await _revocable(request, member)  # a refusal says so at once
    if form.get("confirm") != "yes":  # only the confirmation page's form revokes
        return _see_other(f"/console/orgs/{org}/tokens/{row.id}/revoke")
    await request.app[AUTHORITY].selfservice.revoke(member, row.id, caller(request))
    return _see_other(f"/console/orgs/{org}")


@routes.get("/console/orgs/{org}/tokens/{id}/regenerate")
@page
async def confirm_regenerate(request: web.Request) -> web.Response:
    """Regenerating asks first (SPEC §18), saying that the old token and what was made from it stop."""
    org = _org(request)
    signed_in = await _signed_in(request, org)
    if signed_in is None:
        return _see_other(f"/console/orgs/{org}")
    member, cookie = signed_in
    row = await _revocable(request, member)
    a: Authority = request.app[AUTHORITY]
    return request.app[PAGES].render("regenerate.html", service=SERVICE, user=member.username, org=org,
                                     csrf=a.console.csrf(cookie),
                                     token={"id": row.id, "name": row.name, "kind": row.kind,
                                            "scope": scope.summary(row.caveats), "revoked": row.revoked_at is not None})


@routes.post("/console/orgs/{org}/tokens/{id}/regenerate")
@page
async def regenerate(request: web.Request) -> web.Response:
    org, member, cookie, form = await _signed_in_form(request)
    row = await _revocable(request, member)
    if form.get("confirm") != "yes":
        return _see_other(f"/console/orgs/{org}/tokens/{row.id}/regenerate")
    minted, _ = await request.app[AUTHORITY].regeneration.regenerate(row.id, caller(request), member.username)
    resp = await _render(request, member, cookie, new_token=minted.token, new_name=row.name,
                         notice="Regenerated: the old token and everything made from it are revoked.")
    resp.headers["Cache-Control"] = "no-store"  # the new token is on this page
    return resp


@routes.post("/console/logout")
@page
async def logout(request: web.Request) -> web.Response:
    pages: Pages = request.app[PAGES]
    cookie = pages.cookie(request, COOKIE)
    if cookie is None:
        raise Forbidden("not signed in")
    await _form(request, cookie)
    await request.app[AUTHORITY].console.sign_out(cookie)
    resp = web.Response(text="", status=303, headers={"Location": "/console/signed-out", "Cache-Control": "no-store"})
    pages.clear_cookie(request, resp, COOKIE)
    return resp


@routes.get("/console/signed-out")
@page
async def signed_out(request: web.Request) -> web.Response:
    return request.app[PAGES].render("message.html", service=SERVICE, user=None, heading="Signed out",
                                     detail="You have signed out of the console.", tone="")
