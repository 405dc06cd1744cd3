"""Browser sessions: the `sable_browser` cookie. Its value is random; a signed-in browser's
value is stored only as a digest, and every sign-in replaces it (no fixation). CSRF tokens
are keyed digests of the cookie value, so a form is valid only with the cookie it was served
with, including the login form's (the cookie is set before sign-in)."""

from __future__ import annotations

import json
import time

from clients import tokens
from clients.tickets import b64d, b64e
from discharger.config import DischargerConfig
from discharger.model import Credentials
from discharger.sessions import Sessions
from discharger.store import DischargerStore, SessionRow
from server.audit import Caller
from server.masterkey import MasterKey
from server.pagekit import new_secret


class BrowserSessions:
    def __init__(self, config: DischargerConfig, store: DischargerStore, sessions: Sessions, master: MasterKey):
        self.config = config
        self.store = store
        self.sessions = sessions
        self.master = master
        self._mac = master.pseudonym

    def csrf(self, cookie: str) -> str:
        return self._mac(f"csrf:{cookie}")

    def seal(self, purpose: str, data: dict, ttl: int) -> str:
        """A cookie value holding `data` for `ttl` seconds that the browser can neither read nor
        change (sealed with the master key; `purpose` keeps one kind from passing as another)."""
        plain = json.dumps({"purpose": purpose, "expires_at": int(time.time()) + ttl, "data": data})
        return b64e(self.master.seal(plain.encode()))

    def unseal(self, purpose: str, value: str | None) -> dict | None:
        """What `seal` put in the value, while it lasts; None otherwise."""
        try:
            plain = self.master.unseal(b64d(value)) if value else None
            held = json.loads(plain) if plain is not None else None
        except ValueError:
            return None
        if not isinstance(held, dict) or held.get("purpose") != purpose or held.get("expires_at", 0) <= time.time():
            return None
        return held["data"]

    async def sign_in(self, creds: Credentials, caller: Caller) -> str:
        """A new cookie value for a signed-in browser (the password checked as for the API,
        throttle included)."""
        who = await self.sessions.authenticate(creds, caller)
        return await self.start(who.username, who.method, caller)

    async def start(self, username: str, auth_method: str, caller: Caller) -> str:
        """A new cookie value for a browser whose user is authenticated (`auth_method` says how)."""
        cookie = new_secret()
        now = int(time.time())
        audit = caller.record("browser_login", user=username, detail={"auth_method": auth_method})
        await self.store.create_browser_session(tokens.secret_digest(cookie), username,
                                                now + self.config.session_ttl, now, audit, auth_method)
        audit.emit()
        return cookie

    async def signed_in(self, cookie: str | None) -> SessionRow | None:
        """The browser's session, while its user is enabled."""
        if not cookie:
            return None
        found = await self.store.browser_session(tokens.secret_digest(cookie), int(time.time()))
        if found is None:
            return None
        user = await self.store.get_user(found.username)
        return found if user is not None and not user.disabled else None

    async def user(self, cookie: str | None) -> str | None:
        """The signed-in user, while enabled."""
        found = await self.signed_in(cookie)
        return found.username if found else None

    async def sign_out(self, cookie: str | None) -> None:
        if cookie:
            await self.store.delete_browser_session(tokens.secret_digest(cookie))
