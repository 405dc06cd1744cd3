"""Passkeys (WebAuthn, SPEC §15): discoverable credentials with user verification, registered
by a signed-in user and used as the second factor after a password or alone in its place.
py_webauthn checks every registration and assertion; the relying party id is the host of the
discharger's public URL and the origin that URL.

Each ceremony's challenge travels in a sealed cookie and is claimed once in the database, so an
assertion cannot be replayed; a signature counter that does not grow is refused (a cloned
authenticator), unless the authenticator keeps none.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlsplit

from webauthn import (
    base64url_to_bytes,
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from clients import tokens
from clients.errors import BadRequest, Conflict, Unauthorized
from clients.tickets import b64e
from discharger.browser_sessions import BrowserSessions
from discharger.store import DischargerStore, PasskeyRow
from server.audit import Caller

CEREMONY_TTL = 300
_REGISTER, _SIGN_IN = "passkey_register", "passkey_sign_in"
REFUSED = "that passkey could not sign you in"


class Passkeys:
    def __init__(self, store: DischargerStore, browser: BrowserSessions, public_url: str):
        self.store = store
        self.browser = browser
        parts = urlsplit(public_url)
        self.rp_id = parts.hostname or "localhost"
        self.origin = f"{parts.scheme}://{parts.netloc}"

    def _user_id(self, username: str) -> bytes:
        return self.browser.master.pseudonym(f"webauthn:{username}").encode()  # not the name itself

    async def registration(self, username: str) -> tuple[str, str]:
        """(the options for navigator.credentials.create, as JSON; the sealed ceremony cookie)."""
        existing = [PublicKeyCredentialDescriptor(id=p.credential_id) for p in await self.store.passkeys_of(username)]
        options = generate_registration_options(
            rp_id=self.rp_id, rp_name="Sable", user_name=username, user_id=self._user_id(username),
            exclude_credentials=existing, authenticator_selection=AuthenticatorSelectionCriteria(
                resident_key=ResidentKeyRequirement.REQUIRED, user_verification=UserVerificationRequirement.REQUIRED))
        cookie = self.browser.seal(_REGISTER, {"username": username, "challenge": b64e(options.challenge)},
                                   CEREMONY_TTL)
        return options_to_json(options), cookie

    async def register(self, username: str, credential: Any, cookie: str | None, caller: Caller) -> None:
        held = self.browser.unseal(_REGISTER, cookie)
        if not isinstance(credential, dict):
            raise BadRequest("credential must be the browser's passkey (an object)")
        if held is None or held["username"] != username:
            raise Unauthorized("this passkey registration expired or was started elsewhere; try again")
        challenge = base64url_to_bytes(held["challenge"])
        await self._claim(challenge)
        try:
            verified = verify_registration_response(credential=credential, expected_challenge=challenge,
                                                    expected_rp_id=self.rp_id, expected_origin=self.origin,
                                                    require_user_verification=True)
        except (WebAuthnException, ValueError, TypeError, KeyError):
            raise Unauthorized("the browser's passkey could not be checked; try again") from None
        audit = caller.record("mfa_enrol", user=username, detail={"factor": "passkey"})
        row = PasskeyRow(verified.credential_id, username, verified.credential_public_key, verified.sign_count)
        if not await self.store.add_passkey(row, int(time.time()), audit):
            raise Conflict("that passkey is registered already")
        audit.emit()

    def sign_in_options(self) -> tuple[str, str]:
        """Options for navigator.credentials.get (discoverable: no username asked), and the cookie."""
        options = generate_authentication_options(rp_id=self.rp_id,
                                                  user_verification=UserVerificationRequirement.REQUIRED)
        return options_to_json(options), self.browser.seal(_SIGN_IN, {"challenge": b64e(options.challenge)},
                                                           CEREMONY_TTL)

    async def sign_in(self, credential: Any, cookie: str | None, caller: Caller, username: str | None = None) -> str:
        """The user whose passkey made this assertion (it must be `username`'s, when given:
        a second factor); Unauthorized otherwise, with an audit record."""
        try:
            held = self.browser.unseal(_SIGN_IN, cookie)
            if held is None:
                raise Unauthorized("this passkey sign-in expired or was started elsewhere; try again")
            challenge = base64url_to_bytes(held["challenge"])
            raw_id = credential.get("rawId") if isinstance(credential, dict) else None
            try:
                credential_id = base64url_to_bytes(raw_id) if isinstance(raw_id, str) and len(raw_id) <= 1400 else None
            except (ValueError, TypeError):
                credential_id = None
            row = await self.store.passkey(credential_id) if credential_id else None
            if row is None or (username is not None and row.username != username):
                raise Unauthorized(REFUSED, reason="mfa_invalid" if username else None)
            await self._claim(challenge)
            try:
                verified = verify_authentication_response(
                    credential=credential, expected_challenge=challenge, expected_rp_id=self.rp_id,
                    expected_origin=self.origin, credential_public_key=row.public_key,
                    credential_current_sign_count=row.sign_count, require_user_verification=True)
            except (WebAuthnException, ValueError, TypeError, KeyError):
                raise Unauthorized(REFUSED, reason="mfa_invalid" if username else None) from None
            if not await self.store.use_passkey(row.credential_id, verified.new_sign_count):
                raise Unauthorized(REFUSED, reason="mfa_invalid" if username else None)
            user = await self.store.get_user(row.username)
            if user is None or user.disabled:
                raise Unauthorized(REFUSED)
        except Unauthorized:
            audit = caller.record("login", outcome="failed", user=username, detail={"factor": "passkey"})
            await self.store.write_audit([audit])
            audit.emit()
            raise
        return row.username

    async def _claim(self, challenge: bytes) -> None:
        if not await self.store.claim_state(tokens.secret_digest(b64e(challenge)),
                                            int(time.time()) + CEREMONY_TTL, int(time.time())):
            raise Unauthorized("this passkey ceremony was used already; try again")
