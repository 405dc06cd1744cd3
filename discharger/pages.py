"""The discharger's pages (SPEC §11): sign-in, device approval and interactive-discharge
approval. They work without JavaScript. Handlers call the same domain objects as the JSON
API; `server.pagekit` supplies templates, headers, cookies and CSRF checks."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote, urlencode

from aiohttp import web

from clients.caveats import format_time
from clients.errors import BadRequest, Conflict, Forbidden, NotFound, RateLimited, Unauthorized
from discharger.device import normalize
from discharger.federation import STATE_TTL
from discharger.model import Credentials
from discharger.oidc import SignInRefused
from discharger.passkeys import CEREMONY_TTL
from discharger.service import Discharger
from discharger.store import SessionRow
from server.http import caller, client_address, error_for, json_response, read_json
from server.pagekit import Pages, check_csrf, css, new_secret, page_errors, read_form, safe_next
from server.ratelimit import SlidingCounter, throttle_key

COOKIE = "sable_browser"
IDP_COOKIE = "sable_idp"  # a federated sign-in in flight (SPEC §15)
MFA_COOKIE = "sable_mfa"  # a password sign-in waiting for its second factor
MFA_TTL = 300
PASSKEY_COOKIE = "sable_passkey"  # a WebAuthn ceremony's challenge
# Provider answers and passkey sign-ins need no credential and each writes an audit row: at
# most 60 a minute from one address (per process).
SIGN_IN_TRIES = web.AppKey("sign_in_tries", SlidingCounter)


def _count_try(request: web.Request) -> None:
    counter, key = request.app[SIGN_IN_TRIES], throttle_key(client_address(request))
    wait = counter.retry_after(key)
    if wait is not None:
        raise RateLimited("too many sign-in attempts from this address; try again later", retry_after=wait)
    counter.add(key)
SERVICE = "discharger"
DISCHARGER = web.AppKey("discharger", Discharger)
PAGES = web.AppKey("discharger_pages", Pages)
FOLDER = Path(__file__).with_name("templates")
routes = web.RouteTableDef()
page = page_errors(PAGES, SERVICE)


class Browser:
    """One request's view of the browser: its cookie, signed-in user and CSRF token."""

    def __init__(self, request: web.Request, cookie: str | None, session: SessionRow | None):
        self.request = request
        self.d: Discharger = request.app[DISCHARGER]
        self.pages: Pages = request.app[PAGES]
        self.new_cookie = cookie is None  # a first visit gets a (signed-out) cookie to tie forms to
        self.cookie = cookie or new_secret()
        self.user = session.username if session else None
        self.auth_method = session.auth_method if session else None

    @classmethod
    async def of(cls, request: web.Request) -> Browser:
        pages: Pages = request.app[PAGES]
        cookie = pages.cookie(request, COOKIE)
        return cls(request, cookie, await request.app[DISCHARGER].browser.signed_in(cookie))

    @property
    def csrf(self) -> str:
        return self.d.browser.csrf(self.cookie)

    def render(self, name: str, status: int = 200, **context) -> web.Response:
        resp = self.pages.render(name, status=status, service=SERVICE, user=self.user, auth_method=self.auth_method,
                                 csrf=self.csrf, **context)
        if self.new_cookie:
            self.pages.set_cookie(self.request, resp, COOKIE, self.cookie)
        return resp

    def message(self, heading: str, detail: str = "", status: int = 200, tone: str = "") -> web.Response:
        return self.render("message.html", status=status, heading=heading, detail=detail, tone=tone)

    async def form(self) -> dict:
        """The posted form, after the CSRF check (403 without the token for this cookie)."""
        form = await read_form(self.request)
        if self.new_cookie:  # no cookie, so no form of ours can be behind this post
            raise Forbidden("this form has expired or did not come from this site; reload the page and try again")
        check_csrf(self.csrf, form)
        return form

    def to_login(self) -> web.Response:
        return _see_other(f"/login?{urlencode({'next': self.request.path_qs})}")


def _returning(grant, code: str) -> web.Response:
    """Back to where an approved flow returns (a configured authority's console), with its
    one-time code."""
    return_to = grant.data["return_to"]
    return _see_other(return_to + ("&" if "?" in return_to else "?") + urlencode({"code": code}))


def _see_other(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location, "Cache-Control": "no-store"})


@routes.get("/static/sable.css")
async def stylesheet(request: web.Request) -> web.Response:
    return await css(request)


@routes.get("/static/passkeys.js")
async def passkeys_script(request: web.Request) -> web.Response:
    return web.Response(body=_PASSKEYS_JS, content_type="text/javascript",
                        headers={"Cache-Control": "max-age=3600", "X-Content-Type-Options": "nosniff"})


_PASSKEYS_JS = (Path(__file__).with_name("static") / "passkeys.js").read_bytes()


async def _json_from_page(b: Browser) -> dict:
    """The JSON a page's script posts, after the CSRF check (its token in the body)."""
    body = await read_json(b.request)
    if b.new_cookie:
        raise Forbidden("this page has expired; reload it and try again")
    check_csrf(b.csrf, body)
    return body


@routes.post("/login/passkey/options")
async def passkey_sign_in_options(request: web.Request) -> web.Response:
    b = await Browser.of(request)
    await _json_from_page(b)
    options, cookie = b.d.passkeys.sign_in_options()
    resp = web.Response(text=options, content_type="application/json", headers={"Cache-Control": "no-store"})
    b.pages.set_cookie(request, resp, PASSKEY_COOKIE, cookie, max_age=CEREMONY_TTL)
    return resp


@routes.post("/login/passkey")
async def passkey_sign_in(request: web.Request) -> web.Response:
    """A passkey alone (`auth_method` passkey), or after a right password (password+passkey)."""
    _count_try(request)
    b = await Browser.of(request)
    body = await _json_from_page(b)
    target = safe_next(body.get("next") if isinstance(body.get("next"), str) else None)
    username, method = None, "passkey"
    if body.get("second") is True:
        held = b.d.browser.unseal(MFA_COOKIE, b.pages.cookie(request, MFA_COOKIE, max_length=1024))
        if held is None or held["password"] != await b.d.sessions.password_tag(held["username"]):
            raise Unauthorized("that took too long, or the password changed; enter your password again")
        username, method = held["username"], "password+passkey"
    found = await b.d.passkeys.sign_in(body.get("credential"), b.pages.cookie(request, PASSKEY_COOKIE, 1024),
                                       caller(request), username)
    resp = json_response({"next": target})
    b.pages.set_cookie(request, resp, COOKIE, await b.d.browser.start(found, method, caller(request)))
    b.pages.clear_cookie(request, resp, PASSKEY_COOKIE)
    b.pages.clear_cookie(request, resp, MFA_COOKIE)
    return resp


@routes.post("/account/security/passkey/options")
async def passkey_register_options(request: web.Request) -> web.Response:
    b = await Browser.of(request)
    body = await _json_from_page(b)
    if b.user is None:
        raise Unauthorized("sign in first")
    password = body.get("password")
    await b.d.sessions.authenticate(Credentials(b.user, password[:1024] if isinstance(password, str) else ""),
                                    caller(request), second_factor=False)
    options, cookie = await b.d.passkeys.registration(b.user)
    resp = web.Response(text=options, content_type="application/json", headers={"Cache-Control": "no-store"})
    b.pages.set_cookie(request, resp, PASSKEY_COOKIE, cookie, max_age=CEREMONY_TTL)
    return resp


@routes.post("/account/security/passkey")
async def passkey_register(request: web.Request) -> web.Response:
    b = await Browser.of(request)
    body = await _json_from_page(b)
    if b.user is None:
        raise Unauthorized("sign in first")
    await b.d.passkeys.register(b.user, body.get("credential"), b.pages.cookie(request, PASSKEY_COOKIE, 1024),
                                caller(request))
    resp = json_response({"ok": True})
    b.pages.clear_cookie(request, resp, PASSKEY_COOKIE)
    return resp


@routes.get("/")
@page
async def home(request: web.Request) -> web.Response:
    b = await Browser.of(request)
    if b.user is None:
        return _see_other("/login")
    # The user's orgs, each with its console at an authority this discharger serves: the one
    # that sent the browser here (`?authority=`, when configured), else the first configured.
    authorities = b.d.config.authority_urls
    asked = request.query.get("authority", "").rstrip("/")
    console = asked if asked in authorities else (authorities[0] if authorities else None)
    row = await b.d.store.get_user(b.user)
    orgs = sorted((row.roles if row is not None else {}).items())
    return b.render("home.html", orgs=orgs, console=console)


def _login(b: Browser, next_path: str, status: int = 200, error: str | None = None,
           second_step: bool = False) -> web.Response:
    """The sign-in page: one button per provider beside the password form (if passwords are
    on); or, after a right password for a user with a second factor, the field for its code."""
    providers = [{"name": p.name, "display": p.settings.display, "available": p.available}
                 for p in b.d.providers.all.values()]
    return b.render("login.html", status=status, next=next_path, username="", error=error, providers=providers,
                    passwords=b.d.config.passwords, second_step=second_step)


@routes.get("/login")
@page
async def login_page(request: web.Request) -> web.Response:
    b = await Browser.of(request)
    return _login(b, safe_next(request.query.get("next")))


@routes.get("/login/idp/{name}")
@page
async def idp_start(request: web.Request) -> web.Response:
    b = await Browser.of(request)
    started = b.d.federation.begin(request.match_info["name"], safe_next(request.query.get("next")))
    resp = web.Response(status=302, headers={"Location": started.url, "Cache-Control": "no-store"})
    b.pages.set_cookie(request, resp, IDP_COOKIE, started.cookie, max_age=STATE_TTL)
    return resp


@routes.get("/login/idp/{name}/callback")
@page
async def idp_callback(request: web.Request) -> web.Response:
    _count_try(request)
    b = await Browser.of(request)
    held = b.pages.cookie(request, IDP_COOKIE, max_length=2048)
    try:
        done = await b.d.federation.finish(request.match_info["name"], request.query, held, caller(request),
                                           signed_in_as=b.user)
    except SignInRefused as e:
        resp = b.message("Sign-in failed", e.message, status=403, tone="bad")
        b.pages.clear_cookie(request, resp, IDP_COOKIE)
        return resp
    resp = _see_other(done.next)
    if not done.linked:
        b.pages.set_cookie(request, resp, COOKIE, done.cookie)  # a new value at every sign-in: no fixation
    b.pages.clear_cookie(request, resp, IDP_COOKIE)
    return resp


@routes.post("/account/security/link/{name}")
@page
async def link_start(request: web.Request) -> web.Response:
    """SPEC §15 (b): link an identity at a provider to oneself, after re-entering the password
    (and a second factor's code, if one is set up)."""
    b = await Browser.of(request)
    form = await b.form()
    if b.user is None:
        return b.to_login()
    try:
        await b.d.sessions.authenticate(Credentials(b.user, form.get("password", "")[:1024],
                                                    form.get("code", "")[:32] or None), caller(request))
    except (Unauthorized, RateLimited) as e:
        return await _account(b, error_for(e).status, e.message)
    started = b.d.federation.begin(request.match_info["name"], "/account/security?linked=1", link_to=b.user)
    resp = web.Response(status=302, headers={"Location": started.url, "Cache-Control": "no-store"})
    b.pages.set_cookie(request, resp, IDP_COOKIE, started.cookie, max_age=STATE_TTL)
    return resp


@routes.post("/login")
@page
async def login(request: web.Request) -> web.Response:
    b = await Browser.of(request)
    form = await b.form()
    target = safe_next(form.get("next"))
    if not b.d.config.passwords:
        return _login(b, target, 403, "password sign-in is turned off here; use your organisation's sign-in")
    username, password = form.get("username", ""), form.get("password", "")
    if len(username) > 128 or len(password) > 1024:
        raise BadRequest("username or password is too long")
    try:
        cookie = await b.d.browser.sign_in(Credentials(username, password), caller(request))
    except Unauthorized as e:
        if e.reason != "mfa_required":
            return _login(b, target, 401, e.message)
        resp = _login(b, target, second_step=True)  # the password was right: now the code
        held = {"username": username, "password": await b.d.sessions.password_tag(username)}
        b.pages.set_cookie(request, resp, MFA_COOKIE, b.d.browser.seal(MFA_COOKIE, held, MFA_TTL), max_age=MFA_TTL)
        return resp
    except RateLimited as e:
        status = 401 if isinstance(e, Unauthorized) else 429
        resp = _login(b, target, status, e.message)
        if e.retry_after:
            resp.headers["Retry-After"] = str(e.retry_after)
        return resp
    resp = _see_other(target)
    b.pages.set_cookie(request, resp, COOKIE, cookie)  # a new value at every sign-in: no fixation
    return resp


@routes.post("/login/verify")
@page
async def login_verify(request: web.Request) -> web.Response:
    b = await Browser.of(request)
    form = await b.form()
    target = safe_next(form.get("next"))
    held = b.d.browser.unseal(MFA_COOKIE, b.pages.cookie(request, MFA_COOKIE, max_length=1024))
    if held is None:
        return _login(b, target, 401, "that took too long; enter your password again")
    try:
        who = await b.d.sessions.second_factor(held["username"], form.get("code", "")[:32], caller(request),
                                               held["password"])
    except (Unauthorized, RateLimited) as e:
        resp = _login(b, target, 401 if isinstance(e, Unauthorized) else 429, e.message, second_step=True)
        if e.retry_after:
            resp.headers["Retry-After"] = str(e.retry_after)
        return resp
    resp = _see_other(target)
    b.pages.set_cookie(request, resp, COOKIE, await b.d.browser.start(who.username, who.method, caller(request)))
    b.pages.clear_cookie(request, resp, MFA_COOKIE)
    return resp


async def _account(b: Browser, status: int = 200, error: str | None = None, **shown) -> web.Response:
    assert b.user is not None
    user = await b.d.users.get(b.user)
    factors = b.d.sessions.factors
    linked = {x.issuer for x in await b.d.store.links(b.user)}
    return b.render("account.html", status=status, error=error, has_password=bool(user.password_hash),
                    enrolled=await factors.totp_enrolled(b.user), recovery_left=await b.d.store.recovery_left(b.user),
                    passkeys=len(await b.d.store.passkeys_of(b.user)),
                    added=b.request.query.get("added") == "passkey",
                    linked=b.request.query.get("linked") == "1",
                    providers=[{"name": p.name, "display": p.settings.display, "linked": p.settings.issuer in linked}
                               for p in b.d.providers.all.values() if p.available],
                    **{"enrolment": None, "recovery_codes": None, **shown})


async def _recheck(b: Browser, form: dict) -> None:
    """Changing one's factors needs the password again (throttled like a login)."""
    assert b.user is not None
    await b.d.sessions.authenticate(Credentials(b.user, form.get("password", "")[:1024]), caller(b.request),
                                    second_factor=False)


@routes.get("/account/security")
@page
async def account(request: web.Request) -> web.Response:
    b = await Browser.of(request)
    if b.user is None:
        return b.to_login()
    return await _account(b)


@routes.post("/account/security/totp")
@page
async def totp_begin(request: web.Request) -> web.Response:
    b = await Browser.of(request)
    form = await b.form()
    if b.user is None:
        return b.to_login()
    try:
        await _recheck(b, form)
        enrolment = await b.d.sessions.factors.begin(b.user)
    except (Unauthorized, RateLimited, Conflict) as e:
        return await _account(b, error_for(e).status, e.message)
    return await _account(b, enrolment=enrolment)


@routes.post("/account/security/totp/confirm")
@page
async def totp_confirm(request: web.Request) -> web.Response:
    b = await Browser.of(request)
    form = await b.form()
    if b.user is None:
        return b.to_login()
    try:
        codes = await b.d.sessions.confirm_app(b.user, form.get("code", "")[:32], caller(request))
    except (Unauthorized, NotFound) as e:
        return await _account(b, 400, e.message)
    except RateLimited as e:
        return await _account(b, 429, e.message)
    return await _account(b, recovery_codes=codes)


@routes.post("/account/security/totp/remove")
@page
async def totp_remove(request: web.Request) -> web.Response:
    b = await Browser.of(request)
    form = await b.form()
    if b.user is None:
        return b.to_login()
    try:
        await _recheck(b, form)
    except (Unauthorized, RateLimited) as e:
        return await _account(b, error_for(e).status, e.message)
    await b.d.sessions.factors.remove(b.user, caller(request), by="self")
    return _see_other("/account/security")


@routes.post("/logout")
@page
async def logout(request: web.Request) -> web.Response:
    b = await Browser.of(request)
    await b.form()
    await b.d.browser.sign_out(b.cookie)
    resp = _see_other("/login")
    b.pages.clear_cookie(request, resp, COOKIE)
    return resp


@routes.get("/device")
@page
async def device_page(request: web.Request) -> web.Response:
    b = await Browser.of(request)
    if b.user is None:
        return b.to_login()
    return await _device_form(request, b, request.query.get("user_code", "")[:32])


async def _device_form(request: web.Request, b: Browser, code: str, notice: str | None = None,
                       missing: int = 200, looking: bool = True) -> web.Response:
    """The device page: with a code, the client that asked for it (its name and address), so
    the user approves knowing which one (SPEC §19). The caller has checked the sign-in."""
    assert b.user is not None
    grant, error, limited = None, None, None
    if code:
        try:  # a miss counts as a wrong look-up, never as a wrong code
            grant = await b.d.device.find(b.user, code, caller(request), looking=looking)
        except NotFound as e:
            error = e.message
        except RateLimited as e:  # the form still works: check the code and decide
            error, limited = f"{e.message}, or check the code below and decide", e
    status = 429 if limited else missing if error else 200
    resp = b.render("device.html", status=status, code=code.upper(), grant=grant, error=error,
                    requested_at=format_time(grant.created_at) if grant else "", notice=notice if grant else None,
                    shown=normalize(code) if grant else "")
    if limited:
        resp.headers["Retry-After"] = str(limited.retry_after or 1)
    return resp


@routes.post("/device")
@page
async def device_decide(request: web.Request) -> web.Response:
    b = await Browser.of(request)
    if b.user is None:
        return b.to_login()
    form = await b.form()
    approve = form.get("action") == "approve"
    code = form.get("user_code", "")[:32]
    if approve and normalize(form.get("shown", "")) != normalize(code):
        # A typed (or changed) code: show which client asked for it before approving anything.
        return await _device_form(request, b, code, notice="Check which client asked for this code, then approve it",
                                  missing=404, looking=False)  # typed: counts as a typed code
    try:
        await b.d.device.decide(b.user, code, approve, caller(request), b.auth_method or "password")
    except NotFound as e:
        return b.render("device.html", status=404, code=code.upper(), grant=None, error=e.message, requested_at="",
                        notice=None, shown="")
    if approve:
        return b.message("Device approved", "You can close this window and return to your terminal.", tone="ok")
    return b.message("Device denied", "The device will not be signed in.", tone="bad")


@routes.get("/flows/{secret}")
@page
async def flow_page(request: web.Request) -> web.Response:
    b = await Browser.of(request)
    if b.user is None:
        return b.to_login()
    secret = request.match_info["secret"]
    grant = await b.d.flows.pending(secret)
    if await b.d.flows.approves_silently(b.user, grant, b.auth_method or "password"):  # a console sign-in: no prompt (SPEC §19)
        grant, code = await b.d.flows.decide(b.user, secret, True, caller(request), prompted=False,
                                             auth_method=b.auth_method or "password")
        assert code is not None  # it returns to an authority: approves_silently checked
        return _returning(grant, code)
    return b.render("approve.html", what=grant.data["what"], grant=grant, action=f"/flows/{quote(secret)}",
                    requested_at=format_time(grant.created_at))


@routes.post("/flows/{secret}")
@page
async def flow_decide(request: web.Request) -> web.Response:
    b = await Browser.of(request)
    if b.user is None:
        return b.to_login()
    form = await b.form()
    approve = form.get("action") == "approve"
    grant, code = await b.d.flows.decide(b.user, request.match_info["secret"], approve, caller(request),
                                         auth_method=b.auth_method or "password")
    if code is not None:
        return _returning(grant, code)
    if approve:
        return b.message("Approved", "You can close this window and return to where you started.", tone="ok")
    return b.message("Denied", "Nothing was approved.", tone="bad")
