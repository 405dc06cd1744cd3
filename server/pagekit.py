"""The browser kit both services' pages build on (SPEC §11, browser rules): templates with
autoescaping, the security headers every page sends, cookies, CSRF tokens tied to a cookie,
and the check on where a redirect may go. JSON APIs never read a cookie; only pages use this.
"""

from __future__ import annotations

import hmac
import secrets
from pathlib import Path
from typing import Any

import jinja2
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from clients.errors import BadRequest, Forbidden, SableError
from server.http import BodyTooLarge, forwarded_proto, refuse_control_characters, refuse_control_in

PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}
_TEMPLATES = Path(__file__).with_name("templates")


class Pages:
    """Renders a service's templates (its own folder, then the shared `server/templates`)."""

    def __init__(self, folder: Path, secure: bool):
        self.env = jinja2.Environment(loader=jinja2.FileSystemLoader([str(folder), str(_TEMPLATES)]),
                                      autoescape=True, undefined=jinja2.StrictUndefined)
        self.secure = secure  # served under https: Secure cookies with the __Host- prefix

    def render(self, name: str, status: int = 200, **context: Any) -> web.Response:
        body = self.env.get_template(name).render(**context)
        return web.Response(text=body, status=status, content_type="text/html", headers=PAGE_HEADERS)

    def https(self, request: web.Request) -> bool:
        """Whether the browser reached us over https: the public URL says so, or a trusted
        proxy's `X-Forwarded-Proto` does (SPEC §12)."""
        if self.secure or request.secure:
            return True
        return forwarded_proto(request) == "https"

    def cookie_name(self, request: web.Request, base: str) -> str:
        return f"__Host-{base}" if self.https(request) else base

    def set_cookie(self, request: web.Request, response: web.StreamResponse, base: str, value: str,
                   max_age: int | None = None) -> None:
        response.set_cookie(self.cookie_name(request, base), value, max_age=max_age, path="/", httponly=True,
                            samesite="Lax", secure=self.https(request))

    def clear_cookie(self, request: web.Request, response: web.StreamResponse, base: str) -> None:
        response.del_cookie(self.cookie_name(request, base), path="/", secure=self.https(request), httponly=True,
                            samesite="Lax")

    def cookie(self, request: web.Request, base: str, max_length: int = 128) -> str | None:
        value = request.cookies.get(self.cookie_name(request, base))
        return value if value and len(value) <= max_length else None


async def read_form(request: web.Request) -> dict[str, str]:
    """A posted form's text fields; BadRequest (400) for a body that is not a readable form
    (bytes that are not UTF-8, an unknown charset, a malformed multipart part)."""
    try:
        form = await request.post()
    except web.HTTPRequestEntityTooLarge:
        raise BodyTooLarge() from None  # a SableError, so an OAuth endpoint answers it in OAuth's words
    except (UnicodeDecodeError, LookupError, ValueError, AssertionError, HttpProcessingError):
        raise BadRequest("the form could not be read") from None
    fields = {k: v for k, v in form.items() if isinstance(k, str) and isinstance(v, str)}
    refuse_control_in(fields)  # SPEC §4: 400 naming the field, before any lookup
    return fields


def new_secret() -> str:
    """A fresh unguessable value (256 bits) for a cookie, URL segment or code."""
    return secrets.token_urlsafe(32)


def check_csrf(expected: str, form: Any) -> None:
    """Forbidden (403) unless the form's `csrf` field is the token tied to this browser's cookie."""
    given = form.get("csrf") if form is not None else None
    if not isinstance(given, str) or not hmac.compare_digest(given.encode(), expected.encode()):
        raise Forbidden("this form has expired or did not come from this site; reload the page and try again")


def safe_next(value: str | None) -> str:
    """A local path to go to after sign-in: it must start with a single `/` (not `//` or `/\\`)
    and hold no backslash, control character or scheme; anything else becomes `/`."""
    if not value or not value.startswith("/") or value.startswith(("//", "/\\")):
        return "/"
    if "\\" in value or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value) or len(value) > 2048:
        return "/"
    if ":" in value.split("?", 1)[0].split("/", 2)[1]:  # a scheme smuggled into the first segment
        return "/"
    return value


def page_errors(pages_key: web.AppKey, service: str):
    """Decorator for page handlers: a SableError becomes an HTML page with its status and
    message (the JSON API's errors stay JSON)."""
    from server.http import error_for

    def wrap(handler):
        async def run(request: web.Request) -> web.StreamResponse:
            try:
                refuse_control_characters(request)  # as the JSON API does, answered as a page
                return await handler(request)
            except SableError as e:
                status = error_for(e).status
                pages = request.app[pages_key]
                resp = pages.render("message.html", status=status, service=service, user=None,
                                    heading=_HEADINGS.get(status, "Something went wrong"), detail=e.message,
                                    tone="bad")
                if e.retry_after is not None or e.code in ("rate_limited", "unavailable"):
                    resp.headers["Retry-After"] = str(e.retry_after or 1)
                return resp
        run.__name__ = handler.__name__
        run.renders_page = True  # type: ignore[attr-defined]  # server.http leaves its checks to us
        return run
    return wrap


_HEADINGS = {400: "That did not work", 401: "Sign in failed", 403: "Not allowed", 404: "Not found",
             410: "Expired", 429: "Too many attempts", 503: "Unavailable"}


async def css(request: web.Request) -> web.Response:
    return web.Response(body=_CSS, content_type="text/css", headers={"Cache-Control": "max-age=3600",
                                                                    "X-Content-Type-Options": "nosniff"})


_CSS = (Path(__file__).with_name("static") / "sable.css").read_bytes()
