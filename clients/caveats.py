"""The caveat language (SPEC §3): a small registry of typed caveats.

Each caveat class parses its own value and answers `prohibits(access, now)` with None
(allowed) or a reason. Anything that does not parse, or whose name is unknown, becomes an
`Unparseable` caveat that prohibits everything: the language fails closed.
"""

from __future__ import annotations

import calendar
import re
import time
from dataclasses import dataclass
from typing import ClassVar

from clients.errors import CaveatError

_ELEMENT = r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}"
NAME_RE = re.compile(_ELEMENT)
SET_RE = re.compile(rf"{_ELEMENT}(?:,{_ELEMENT})*")
ACTIONS_RE = re.compile(r"[rwcdC]+")
TIME_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z")  # ASCII digits only
ACTION_LETTERS = "rwcdC"


@dataclass(frozen=True, slots=True)
class Access:
    """What a request wants to do. `org` and `action` are required."""

    org: str
    action: str
    app: str | None = None
    host: str | None = None
    instance: str | None = None
    user: str | None = None
    # The thumbprint of the key whose DPoP proof this request carried, set only by the code
    # that checked the proof (clients.proof_check), never read from a request's access object.
    jkt: str | None = None

    @classmethod
    def from_dict(cls, data: object) -> Access:
        """Validated; the same access, as workloads send again and again, from a small cache."""
        try:
            key = tuple(data.items()) if isinstance(data, dict) and len(data) <= 6 else None
            hit = _ACCESS_CACHE.get(key) if key is not None else None
        except TypeError:  # an unhashable value: not a valid access anyway
            key = hit = None
        if hit is not None:
            return hit
        access = cls._from_dict(data)
        if key is not None:
            if len(_ACCESS_CACHE) >= ACCESS_CACHE_ENTRIES:
                _ACCESS_CACHE.clear()
            _ACCESS_CACHE[key] = access
        return access

    @classmethod
    def _from_dict(cls, data: object) -> Access:
        if not isinstance(data, dict):
            raise CaveatError("access must be an object")
        unknown = set(data) - {"org", "action", "app", "host", "instance", "user"}
        if unknown:
            raise CaveatError(f"unknown access field {sorted(unknown)[0]!r}")
        org, action = data.get("org"), data.get("action")
        if not isinstance(org, str) or not NAME_RE.fullmatch(org):
            raise CaveatError("access.org is required and must be a name")
        if not isinstance(action, str) or not ACTIONS_RE.fullmatch(action):
            raise CaveatError("access.action is required and must match [rwcdC]+")
        fields = {}
        for key in ("app", "host", "instance", "user"):
            value = data.get(key)
            if value is not None and (not isinstance(value, str) or not NAME_RE.fullmatch(value)):
                raise CaveatError(f"access.{key} must be a name")
            fields[key] = value
        return cls(org=org, action=action, **fields)


ACCESS_CACHE_ENTRIES = 4096
_ACCESS_CACHE: dict[tuple, Access] = {}


def format_time(epoch: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def parse_time(text: str) -> int:
    if not TIME_RE.fullmatch(text):
        raise CaveatError("time must be YYYY-MM-DDTHH:MM:SSZ")
    try:
        return calendar.timegm(time.strptime(text, "%Y-%m-%dT%H:%M:%SZ"))
    except ValueError:
        raise CaveatError("time is not a real date") from None


def _set(value: str) -> frozenset[str]:
    if not SET_RE.fullmatch(value):
        raise CaveatError("set must be comma-separated names")
    return frozenset(value.split(","))


REGISTRY: dict[str, type[Caveat]] = {}

# The concrete caveats below add only class constants to their dataclass parents, so they
# are plain subclasses with empty slots: re-running @dataclass on each cost the CLI's start
# ~1 ms a class (SPEC §9: offline commands in 150 ms).


def register(cls: type[Caveat]) -> type[Caveat]:
    if cls.name in REGISTRY:
        raise RuntimeError(f"caveat {cls.name!r} registered twice")
    REGISTRY[cls.name] = cls
    return cls


@dataclass(frozen=True, slots=True)
class Caveat:
    """Base class. `text` is the caveat exactly as signed."""

    name: ClassVar[str] = ""
    time_bound: ClassVar[bool] = False  # true if the answer changes with the clock
    text: str

    @classmethod
    def parse(cls, text: str, value: str) -> Caveat:
        raise NotImplementedError

    def prohibits(self, access: Access, now: float) -> str | None:
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class Unparseable(Caveat):
    """An unknown name or a malformed value: denies everything."""

    why: str = ""

    def prohibits(self, access: Access, now: float) -> str | None:
        return f"caveat {self.text!r} is not understood: {self.why}"


@dataclass(frozen=True, slots=True)
class _SetCaveat(Caveat):
    field: ClassVar[str] = ""
    allowed: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, text: str, value: str) -> Caveat:
        return cls(text, _set(value))

    def prohibits(self, access: Access, now: float) -> str | None:
        wanted = getattr(access, self.field)
        if wanted is None:
            return f"caveat {self.text!r} needs access.{self.field}"
        if wanted not in self.allowed:
            return f"caveat {self.text!r} does not allow {self.field} {wanted!r}"
        return None


@dataclass(frozen=True, slots=True)
class _NameCaveat(Caveat):
    field: ClassVar[str] = ""
    value: str = ""

    @classmethod
    def parse(cls, text: str, value: str) -> Caveat:
        if not NAME_RE.fullmatch(value):
            raise CaveatError(f"{cls.name} must be a name")
        return cls(text, value)

    def prohibits(self, access: Access, now: float) -> str | None:
        wanted = getattr(access, self.field)
        if wanted != self.value and not (wanted is None and self.field == "user"):
            return f"caveat {self.text!r} does not allow {self.field} {wanted!r}"
        return None


@register
class Org(_NameCaveat):
    __slots__ = ()
    name: ClassVar[str] = "org"
    field: ClassVar[str] = "org"


@register
class Apps(_SetCaveat):
    __slots__ = ()
    name: ClassVar[str] = "apps"
    field: ClassVar[str] = "app"


@register
class Hosts(_SetCaveat):
    __slots__ = ()
    name: ClassVar[str] = "hosts"
    field: ClassVar[str] = "host"


@register
class Instances(_SetCaveat):
    __slots__ = ()
    name: ClassVar[str] = "instances"
    field: ClassVar[str] = "instance"


@register
@dataclass(frozen=True, slots=True)
class Actions(Caveat):
    name: ClassVar[str] = "actions"
    letters: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, text: str, value: str) -> Caveat:
        if not ACTIONS_RE.fullmatch(value):
            raise CaveatError("actions must match [rwcdC]+")
        return cls(text, frozenset(value))

    def prohibits(self, access: Access, now: float) -> str | None:
        if not self.letters.issuperset(access.action):
            return f"caveat {self.text!r} does not allow action {access.action!r}"
        return None


@dataclass(frozen=True, slots=True)
class _TimeCaveat(Caveat):
    time_bound: ClassVar[bool] = True
    at: int = 0

    @classmethod
    def parse(cls, text: str, value: str) -> Caveat:
        return cls(text, parse_time(value))


@register
class Expires(_TimeCaveat):
    __slots__ = ()
    name: ClassVar[str] = "expires"

    def prohibits(self, access: Access, now: float) -> str | None:
        if now >= self.at:
            return f"caveat {self.text!r}: the token has expired"
        return None


@register
class NotBefore(_TimeCaveat):
    __slots__ = ()
    name: ClassVar[str] = "not-before"

    def prohibits(self, access: Access, now: float) -> str | None:
        if now < self.at:
            return f"caveat {self.text!r}: the token is not valid yet"
        return None


@register
class User(_NameCaveat):
    """Added by the discharger. The one field whose absence does not deny (SPEC §3)."""

    __slots__ = ()

    name: ClassVar[str] = "user"
    field: ClassVar[str] = "user"


ROLES = ("member", "admin")  # lowest first


@register
@dataclass(frozen=True, slots=True)
class Role(Caveat):
    """Added by the discharger to a discharge (SPEC §19): the user's role in the ticket's org,
    so the console signs in with it. It always holds; it grants nothing by itself. A holder may
    append more to a discharge, so a reader takes the lowest (`lowest_role`)."""

    name: ClassVar[str] = "role"
    role: str = "member"

    @classmethod
    def parse(cls, text: str, value: str) -> Caveat:
        if value not in ROLES:
            raise CaveatError("role must be member or admin")
        return cls(text, value)

    def prohibits(self, access: Access, now: float) -> str | None:
        return None


_DISCHARGE_ID_RE = re.compile(r"[0-9a-f]{32}")


@register
@dataclass(frozen=True, slots=True)
class DischargeId(Caveat):
    """Added by the discharger to every discharge, as its first caveat (SPEC §16): 16 random
    bytes naming this one discharge, so a single-use token strips at most once with it. It
    always holds; the authority believes it only as the first caveat, which a holder cannot write."""

    name: ClassVar[str] = "discharge-id"
    value: str = ""

    @classmethod
    def parse(cls, text: str, value: str) -> Caveat:
        if not _DISCHARGE_ID_RE.fullmatch(value):
            raise CaveatError("discharge-id must be 32 lowercase hex digits")
        return cls(text, value)

    def prohibits(self, access: Access, now: float) -> str | None:
        return None


def lowest_role(parsed: list[Caveat]) -> str | None:
    """The lowest `role` among these caveats, or None when there is none."""
    roles = [c.role for c in parsed if isinstance(c, Role)]
    return min(roles, key=ROLES.index) if roles else None


_THUMBPRINT_RE = re.compile(r"[A-Za-z0-9_-]{43}")  # base64url of a SHA-256 digest


@register
@dataclass(frozen=True, slots=True)
class CnfJkt(Caveat):
    """Proof of possession (SPEC §14): allowed only with a valid DPoP proof made with the key
    of this RFC 7638 thumbprint. A request-dependent caveat: copied, not judged, at strip."""

    name: ClassVar[str] = "cnf-jkt"
    jkt: str = ""

    @classmethod
    def parse(cls, text: str, value: str) -> Caveat:
        if not _THUMBPRINT_RE.fullmatch(value):
            raise CaveatError("cnf-jkt must be a base64url SHA-256 key thumbprint (43 characters)")
        return cls(text, value)

    def prohibits(self, access: Access, now: float) -> str | None:
        if access.jkt is None:
            return f"caveat {self.text!r} needs a DPoP proof made with that key, and there is none"
        if access.jkt != self.jkt:
            return f"caveat {self.text!r}: the DPoP proof is made with another key"
        return None


def parse_strict(text: str) -> Caveat:
    """Parse caveat text, raising CaveatError if it is unknown or malformed."""
    name, sep, value = text.partition(" ")
    cls = REGISTRY.get(name)
    if not sep or cls is None:
        raise CaveatError(f"unknown caveat {name[:40]!r}" if sep else "caveat must be '<name> <value>'")
    return cls.parse(text, value)


CACHEABLE = 256  # longer predicates are parsed each time, so the cache stays small
CACHE_ENTRIES = 8192
_cache: dict[bytes, Caveat] = {}


def parse(predicate: bytes) -> Caveat:
    """Parse a signed first-party caveat; never raises. Cached: tokens repeat their caveats,
    and a dict lookup is far cheaper than parsing. The cache is emptied when full."""
    cav = _cache.get(predicate)
    if cav is None:
        cav = _parse(predicate)
        if len(predicate) <= CACHEABLE:
            if len(_cache) >= CACHE_ENTRIES:
                _cache.clear()
            _cache[predicate] = cav
    return cav


def _parse(predicate: bytes) -> Caveat:
    try:
        text = predicate.decode("utf-8")
    except UnicodeDecodeError:
        return Unparseable(predicate.decode("utf-8", "replace")[:80], "not UTF-8")
    try:
        return parse_strict(text)
    except CaveatError as e:
        return Unparseable(text[:80], str(e))


_DURATION = re.compile(r"(\d{1,9})([smhd]?)")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> int | None:
    """`90s`, `15m`, `12h`, `30d` (or plain seconds) as seconds; None if not a positive duration."""
    m = _DURATION.fullmatch(text.strip())
    if not m or int(m.group(1)) == 0:
        return None
    return int(m.group(1)) * _UNITS[m.group(2)]
