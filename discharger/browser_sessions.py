"""Browser sessions: the `sable_browser` cookie. Its value is random; a signed-in browser's
value is stored only as a digest, and every sign-in replaces it (no fixation). CSRF tokens
are keyed digests of the cookie value, so a form is valid only with the cookie it was served
with, including the login form's (the cookie is set before sign-in)."""

from __future__ import annotations

import time

from clients import tokens
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
        self._mac = master.pseudonym

    def csrf(self, cookie: str) -> str:
        return self._mac(f"csrf:{cookie}")

    async def sign_in(self, creds: Credentials, caller: Caller) -> str:
        """A new cookie value for a signed-in browser (the password checked as for the API,
        throttle included)."""
        username = await self.sessions.authenticate(creds, caller)
        return await self.start(username, "password", caller)

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
