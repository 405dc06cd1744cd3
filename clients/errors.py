"""Sable's one error family (SPEC §4's error codes).

Every failure Sable raises on purpose is a `SableError`. Its class says what kind of failure
it is, `code` is the API error code, and the message is for people: it names the rule, field
or caveat at fault, never a token or secret. The HTTP layer maps `code` to a status
(`server.http`); the CLI maps it to an exit code. Specific failures subclass the kind they
are, so callers catch the kind and users read the reason.
"""

from __future__ import annotations


class SableError(Exception):
    code = "bad_request"

    def __init__(self, message: str, *, retry_after: int | None = None, reason: str | None = None):
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after
        self.reason = reason  # a finer cause than `code` (SPEC §15), e.g. "mfa_required"


class MalformedToken(SableError):
    code = "malformed_token"


class BadRequest(SableError):
    code = "bad_request"


class Unauthorized(SableError):
    code = "unauthorized"


class Forbidden(SableError):
    """The caller is known but may not do this (403)."""

    code = "denied"


class NotFound(SableError):
    code = "not_found"


class Conflict(SableError):
    code = "conflict"


class RateLimited(SableError):
    code = "rate_limited"


class Gone(SableError):
    """Something that existed has expired or was used up (an interactive discharge)."""

    code = "gone"


class GrantPending(BadRequest):
    """An OAuth-style refusal whose `code` is the RFC's error: a device-token poll's RFC 8628
    answers (authorization_pending, slow_down, access_denied, expired_token), RFC 6749 §5.2's
    (invalid_request, invalid_grant, unsupported_grant_type) and RFC 8693's
    (unsupported_token_type, invalid_target)."""

    def __init__(self, code: str, message: str, reason: str | None = None):
        super().__init__(message, reason=reason)
        self.code = code


class Unavailable(SableError):
    """A database or another service the work needs cannot be reached or used."""

    code = "unavailable"


class ConfigError(SableError):
    """A setting is missing or wrong; the message says which."""

    code = "bad_request"


# The specific failures of the pure modules, named where they are raised.


class TokenFormatError(MalformedToken):
    """A token string or its binary payload is malformed. The message never holds the token."""


class CaveatError(BadRequest):
    """A caveat or an access does not follow the grammar."""


class TicketError(BadRequest):
    """A ticket that cannot be decoded or opened."""


class Denial(Forbidden):
    """Verification failed; the message names the rule or caveat, never a secret."""


class SableAPIError(SableError):
    """A service's answer was an error (its `code` and `message`), or it could not be reached
    (code `unavailable`). Raised by `clients.sdk`; here so that catching it costs no import of
    aiohttp (the CLI's offline commands start fast)."""

    def __init__(self, status: int, code: str, message: str, *, sent: bool = True, reason: str | None = None,
                 service: str | None = None):
        super().__init__(message, reason=reason)
        self.status = status
        self.code = code
        self.sent = sent  # False when the request never reached the server
        self.service = service  # which service answered ("authority", "discharger"), when known

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"

    def transient(self, idempotent: bool) -> bool:
        if self.status in (502, 503, 504):
            return idempotent
        return self.code == "unavailable" and (idempotent or not self.sent)
