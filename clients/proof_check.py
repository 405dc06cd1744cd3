"""DPoP proofs (RFC 9449, SPEC §14), checked in one place: the authority's `/v1/verify`, the
caching verifier and the middleware all call `check_proof` and keep a `ReplayCache`.

A proof is a compact JWS whose header carries the holder's Ed25519 public key. It is good for
one request: its claims name the method (`htm`), the URL (`htu`), a time (`iat`, within 60 s of
ours), a one-time id (`jti`) and the token it goes with (`ath`, a hash of the token's string).
Checking it yields the key's thumbprint, which the `cnf-jkt` caveat compares with its own.

joserfc splits the JWS; PyNaCl checks the signature.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import heapq
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import orjson

from clients.errors import Denial

MAX_PROOF_BYTES = 4096
LEEWAY = 60  # seconds either side of `iat`: the one leeway in Sable (SPEC §8)
REPLAY_SECONDS = 120  # a proof's whole window: iat may be up to 60 s ahead and 60 s behind
ALGORITHMS = ("EdDSA", "Ed25519")
MAX_JTI = 64
_B64URL = re.compile(r"[A-Za-z0-9_-]*")
_DEFAULT_PORTS = {"http": 80, "https": 443}
_HOST = re.compile(r"[a-z0-9]([a-z0-9.-]*[a-z0-9])?")  # names and IPv4 addresses; IPv6 in brackets


class ProofError(Denial):
    """A DPoP proof is malformed, or not for this request, token or key. A denial (403 from
    `/v1/verify`); the middleware answers it with 401 and `WWW-Authenticate: DPoP`."""


@dataclass(frozen=True, slots=True)
class ProofRequest:
    """A proof as a verifying party receives it, with the request it came with."""

    dpop: str
    htm: str
    htu: str


@dataclass(frozen=True, slots=True)
class Proof:
    """What a valid proof establishes: the key's thumbprint, and its one-time id."""

    jkt: str
    jti: str
    iat: float


def b64url(data: bytes) -> str:
    # clients.tickets.b64e is the same, but importing it loads PyNaCl's public-key module,
    # which `sable attenuate --bind-key` must start without (SPEC §9).
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _unb64url(text: str, what: str) -> bytes:
    if not _B64URL.fullmatch(text) or len(text) % 4 == 1:
        raise ProofError(f"DPoP proof: {what} is not base64url")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise ProofError(f"DPoP proof: {what} is not base64url") from None


def token_hash(token: str) -> str:
    """`ath`: base64url(SHA-256) of the token's string as presented, whitespace trimmed."""
    return b64url(hashlib.sha256(token.strip().encode("ascii", "replace")).digest())


_THUMBPRINTS: dict[str, str] = {}


def thumbprint(jwk: dict[str, Any]) -> str:
    """The RFC 7638 SHA-256 thumbprint of an Ed25519 public JWK, which must be exactly
    {kty, crv, x} with a 32-byte x. Cached: one holder sends the same key with every proof."""
    if not isinstance(jwk, dict) or set(jwk) != {"kty", "crv", "x"}:
        if isinstance(jwk, dict) and "d" in jwk:
            raise ProofError("DPoP proof: the jwk holds a private key")
        raise ProofError("DPoP proof: jwk must be exactly {kty, crv, x}")
    x = jwk["x"]
    if jwk["kty"] != "OKP" or jwk["crv"] != "Ed25519" or not isinstance(x, str):
        raise ProofError("DPoP proof: jwk must be an Ed25519 key (kty OKP, crv Ed25519)")
    jkt = _THUMBPRINTS.get(x)
    if jkt is None:
        if len(_unb64url(x, "jwk x")) != 32:
            raise ProofError("DPoP proof: jwk x must be 32 bytes")
        # RFC 7638 §3.2 for an OKP key: its required members in lexicographic order, no
        # whitespace. Written out rather than taken from joserfc (which agrees: tests), because
        # importing joserfc costs ~75 ms and `sable attenuate --bind-key` must start in 150.
        canonical = '{"crv":"Ed25519","kty":"OKP","x":"%s"}' % x
        jkt = b64url(hashlib.sha256(canonical.encode("ascii")).digest())
        if len(_THUMBPRINTS) >= 10_000:
            _THUMBPRINTS.clear()
        _THUMBPRINTS[x] = jkt
    return jkt


MAX_HTU = 2048


@functools.lru_cache(maxsize=1024)  # a workload's URLs repeat; entries are at most MAX_HTU long
def _normalize(url: str) -> str:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise ProofError("DPoP proof: htu is not a URL") from None
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    if scheme not in _DEFAULT_PORTS or not host:
        raise ProofError("DPoP proof: htu must be an http(s) URL with a host")
    if "@" in parts.netloc:
        raise ProofError("DPoP proof: htu may not carry user information")
    if ("[" in parts.netloc) != (":" in host):  # brackets are for IPv6 addresses only
        raise ProofError("DPoP proof: htu host is not a host name or address")
    if ":" in host:
        host = f"[{host}]"
    elif not _HOST.fullmatch(host):
        raise ProofError("DPoP proof: htu host is not a host name or address")
    netloc = host if port is None or port == _DEFAULT_PORTS[scheme] else f"{host}:{port}"
    return f"{scheme}://{netloc}{parts.path or '/'}"


def normalize_htu(url: str) -> str:
    """The URL as `htu` compares it (SPEC §14): no query or fragment, scheme and host in
    lowercase, no default port, an empty path as `/`; no user information, at most 2 KiB."""
    if len(url) > MAX_HTU:
        raise ProofError(f"DPoP proof: htu is longer than {MAX_HTU} characters")
    return _normalize(url)


def _split(proof: object) -> tuple[dict[str, Any], dict[str, Any], bytes, bytes]:
    """(header, claims, signing input, signature) of a compact JWS; ProofError if malformed."""
    if not isinstance(proof, str):
        raise ProofError("DPoP proof must be a string")
    if len(proof) > MAX_PROOF_BYTES:
        raise ProofError(f"DPoP proof is longer than {MAX_PROOF_BYTES} bytes")
    if not proof.isascii() or proof.count(".") != 2:
        raise ProofError("DPoP proof is not a compact JWS")
    from joserfc.errors import JoseError
    from joserfc.jws import extract_compact

    try:
        jws = extract_compact(proof.encode("ascii"))
    except (JoseError, ValueError, TypeError, binascii.Error):
        raise ProofError("DPoP proof is not a compact JWS") from None
    header = jws.protected
    if not isinstance(header, dict):
        raise ProofError("DPoP proof header is not a JSON object")
    if "crit" in header or "b64" in header:
        raise ProofError("DPoP proof header may not carry crit or b64")
    try:
        claims = orjson.loads(jws.payload)
    except orjson.JSONDecodeError:
        raise ProofError("DPoP proof claims are not JSON") from None
    if not isinstance(claims, dict):
        raise ProofError("DPoP proof claims are not a JSON object")
    segments = jws.segments
    signature = _unb64url(segments["signature"].decode("ascii"), "signature")
    return header, claims, segments["header"] + b"." + segments["payload"], signature


def _verify_signature(x: str, signing_input: bytes, signature: bytes) -> None:
    from nacl.bindings import crypto_sign_open
    from nacl.exceptions import BadSignatureError

    if len(signature) != 64:
        raise ProofError("DPoP proof signature is not an Ed25519 signature")
    try:
        crypto_sign_open(signature + signing_input, _unb64url(x, "jwk x"))
    except (BadSignatureError, ValueError, TypeError):
        raise ProofError("DPoP proof signature does not verify") from None


def check_proof(proof: object, *, htm: str, htu: str, token: str, now: float) -> Proof:
    """Check a DPoP proof for a request (method `htm`, URL `htu`) carrying `token` (the one
    permission or service token's string as presented). Returns the key's thumbprint and the
    proof's id; the caller checks and records replay (`ReplayCache`). ProofError otherwise."""
    header, claims, signing_input, signature = _split(proof)
    if header.get("typ") != "dpop+jwt":
        raise ProofError("DPoP proof header typ must be dpop+jwt")
    if header.get("alg") not in ALGORITHMS:
        raise ProofError("DPoP proof alg must be EdDSA (Ed25519)")
    jwk = header.get("jwk")
    jkt = thumbprint(jwk)  # type: ignore[arg-type]  # checked inside
    _verify_signature(jwk["x"], signing_input, signature)  # type: ignore[index]

    jti, iat = claims.get("jti"), claims.get("iat")
    if not isinstance(jti, str) or not 0 < len(jti) <= MAX_JTI:
        raise ProofError(f"DPoP proof jti must be a string of 1 to {MAX_JTI} characters")
    if not isinstance(iat, int | float) or isinstance(iat, bool):
        raise ProofError("DPoP proof iat must be a number")
    if iat < now - LEEWAY:
        raise ProofError("DPoP proof is too old (iat more than 60 s ago)")
    if iat > now + LEEWAY:
        raise ProofError("DPoP proof iat is more than 60 s in the future")
    if claims.get("htm") != htm:
        raise ProofError("DPoP proof is for another HTTP method")
    claimed = claims.get("htu")
    if not isinstance(claimed, str) or normalize_htu(claimed) != normalize_htu(htu):
        raise ProofError("DPoP proof is for another URL")
    if claims.get("ath") != token_hash(token):
        raise ProofError("DPoP proof is for another token (ath does not match)")
    return Proof(jkt, jti, float(iat))


class ReplayCache:
    """(jkt, jti) pairs of allowed requests (SPEC §14). Each is kept until its proof could no
    longer pass the time check anyway (iat + 60 s, at most 120 s), so a replay is denied for
    as long as the proof is otherwise valid. Bounded: past `max_entries` live pairs in all, or
    `max_per_key` for one key, new proofs are refused rather than old ones forgotten, since
    forgetting one would let it be replayed; one key's holder fills only its own quota first."""

    def __init__(self, max_entries: int = 300_000, max_per_key: int = 60_000):
        self.max_entries = max_entries
        self.max_per_key = max_per_key
        self._until: dict[tuple[str, str], float] = {}
        self._heap: list[tuple[float, tuple[str, str]]] = []  # (until, key), soonest first
        self._per_key: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._until)

    def _expire(self, now: float) -> None:
        heap = self._heap
        while heap and heap[0][0] <= now:
            until, key = heapq.heappop(heap)
            if self._until.get(key) == until:
                self._forget(key)

    def _forget(self, key: tuple[str, str]) -> None:
        del self._until[key]
        left = self._per_key[key[0]] - 1
        if left:
            self._per_key[key[0]] = left
        else:
            del self._per_key[key[0]]

    def claim(self, proof: Proof, now: float) -> None:
        """Record this proof as used; ProofError if it was used before (or no more can be
        remembered). Claimed before the request is judged, so two concurrent requests with
        one proof cannot both pass; `release` it if the request is then denied."""
        self._expire(now)
        key = (proof.jkt, proof.jti)
        if key in self._until:
            raise ProofError("DPoP proof was already used (replayed jti)")
        if self._per_key.get(proof.jkt, 0) >= self.max_per_key:
            raise ProofError("too many DPoP proofs with this key in the last minute; try again shortly")
        if len(self._until) >= self.max_entries:
            raise ProofError("too many DPoP proofs in the last minute; try again shortly")
        until = min(now + REPLAY_SECONDS, proof.iat + LEEWAY) + 1  # a second past the last valid moment
        self._until[key] = until
        self._per_key[proof.jkt] = self._per_key.get(proof.jkt, 0) + 1
        heapq.heappush(self._heap, (until, key))
        if len(self._heap) > 2 * self.max_entries:  # released claims leave stale heap entries
            self._heap = [(u, k) for k, u in self._until.items()]
            heapq.heapify(self._heap)

    def release(self, proof: Proof) -> None:
        """Forget a claimed proof whose request was denied (only allowed requests count)."""
        key = (proof.jkt, proof.jti)
        if key in self._until:
            self._forget(key)  # its heap entry is skipped when it comes up
