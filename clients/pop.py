"""Proof of possession on the holder's side (SPEC §14): an Ed25519 key made on the host and
never sent anywhere, a DPoP proof made with it for each request, and an aiohttp session that
sends a bound token as `Authorization: DPoP` with a fresh proof every time.

    signer = DPoPSigner("/etc/sable/host.key")
    async with session(token, signer) as http:
        await http.get("https://orders.internal/v1/orders")
"""

from __future__ import annotations

import json
import os
import time
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from clients.errors import BadRequest
from clients.proof_check import ProofError, b64url, normalize_htu, thumbprint, token_hash

if TYPE_CHECKING:  # aiohttp and the SDK load only when a session is made: the CLI starts without them
    import aiohttp

    from clients.sdk import WireToken


def _okp():
    from joserfc.jwk import OKPKey  # joserfc loads cryptography (~75 ms): only when keys are used

    return OKPKey


def keygen(out: str | os.PathLike) -> dict[str, Any]:
    """Write a new Ed25519 key: `out` (PKCS#8 PEM, mode 0600) and `out`.pub (the public JWK,
    0644). Returns {"jwk", "jkt"}; `jkt` is what `cnf-jkt` names. Never overwrites a key."""
    from pathlib import Path

    key = _okp().generate_key("Ed25519")
    private = Path(out)
    public = private.with_name(private.name + ".pub")
    for path in (private, public):
        if path.exists():
            raise BadRequest(f"{path} exists; a key is never overwritten (remove it first)")
    if not private.parent.is_dir():
        raise BadRequest(f"{private.parent} is not a folder: create it first (mkdir -p {private.parent})")
    pem = key.as_pem(private=True)
    fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    jwk = public_jwk(key)
    public.write_text(json.dumps(jwk) + "\n")
    public.chmod(0o644)
    return {"jwk": jwk, "jkt": thumbprint(jwk)}


def public_jwk(key) -> dict[str, str]:
    d = key.as_dict(private=False)
    return {"kty": d["kty"], "crv": d["crv"], "x": d["x"]}


def jkt_of(value: str) -> str:
    """A thumbprint from `--bind-key`: a thumbprint itself, a public JWK file (`host.key.pub`)
    or the private key file (only its public half is used; loading it costs ~75 ms more)."""
    if not os.path.exists(value):
        if len(value) == 43 and all(c.isalnum() or c in "-_" for c in value):
            return value
        raise BadRequest(f"--bind-key {value!r} is neither a file nor a key thumbprint")
    try:
        with open(value, "rb") as f:
            data = f.read(64 * 1024)
    except OSError as e:
        raise BadRequest(f"cannot read {value}: {e.strerror}") from None
    only = "only Ed25519 keys bind (make one with `sable keygen --out FILE`)"
    if data.lstrip().startswith(b"{"):
        try:
            return thumbprint(json.loads(data))
        except (ValueError, ProofError):  # not JSON, or not an Ed25519 public JWK
            raise BadRequest(f"--bind-key {value}: not an Ed25519 public key; {only}") from None
    try:
        return DPoPSigner(value).jkt
    except BadRequest:
        raise BadRequest(f"--bind-key {value}: not an Ed25519 key file; {only}") from None


class DPoPSigner:
    """Makes DPoP proofs with the private key in `private_key_file` (as `sable keygen` writes)."""

    def __init__(self, private_key_file: str | os.PathLike):
        try:
            with open(private_key_file, "rb") as f:
                self._key = _okp().import_key(f.read(64 * 1024))
        except OSError as e:
            raise BadRequest(f"cannot read the key file: {e.strerror}") from None
        except Exception:  # joserfc and cryptography raise several kinds for a bad file
            raise BadRequest(f"{os.fspath(private_key_file)} is not an Ed25519 private key (PKCS#8 PEM)") from None
        if self._key.as_dict(private=False).get("crv") != "Ed25519" or not self._key.is_private:
            raise BadRequest(f"{os.fspath(private_key_file)} is not an Ed25519 private key (PKCS#8 PEM)")
        self.jwk = public_jwk(self._key)
        self.jkt = thumbprint(self.jwk)

    def proof(self, htm: str, htu: str, token: str, now: float | None = None) -> str:
        """A proof for one request: method `htm`, URL `htu` (query and fragment dropped),
        carrying `token` (the permission or service token's string, as sent)."""
        from joserfc import jws

        claims = {"jti": b64url(os.urandom(16)), "htm": htm.upper(), "htu": normalize_htu(htu),
                  "iat": int(time.time() if now is None else now), "ath": token_hash(token)}
        header = {"typ": "dpop+jwt", "alg": "EdDSA", "jwk": self.jwk}
        with warnings.catch_warnings():  # RFC 9864 prefers "Ed25519"; RFC 9449 servers expect EdDSA
            warnings.simplefilter("ignore")
            return jws.serialize_compact(header, json.dumps(claims).encode(), self._key, algorithms=["EdDSA"])


def authorization(token: str, discharges: Sequence[str] = ()) -> str:
    """The `Authorization` value for a bound token: `DPoP <token>[,<discharge>...]`."""
    return "DPoP " + ",".join([token.strip(), *(d.strip() for d in discharges)])


def session(token: str | WireToken, signer: DPoPSigner, *, discharges: Sequence[str] = (),
            origin: str | None = None, **kwargs: Any) -> aiohttp.ClientSession:
    """An aiohttp ClientSession that sends `Authorization: DPoP <token>` and a fresh `DPoP`
    proof with every request. With a `clients.sdk.WireToken`, what is sent is its current
    short-lived attenuation (and its discharge), so the long-lived token never leaves.

    Credentials go to one origin only: `origin` (`https://host[:port]`), else that of the
    session's first request. A request elsewhere, such as a redirect to another host or from
    https to http, goes without them."""
    import aiohttp
    from yarl import URL

    from clients.sdk import WireToken

    pinned: list[URL] = [URL(origin).origin()] if origin else []

    def presentation() -> list[str]:
        if isinstance(token, WireToken):
            return token.presentation()
        return [token, *discharges]

    async def add_proof(request: aiohttp.ClientRequest, handler):
        here = request.url.origin()
        if not pinned:
            pinned.append(here)
        if here != pinned[0]:  # never hand the token or a proof to another origin
            request.headers.popall("Authorization", None)
            request.headers.popall("DPoP", None)
            return await handler(request)
        wire, *rest = presentation()
        request.headers["Authorization"] = authorization(wire, rest)
        request.headers["DPoP"] = signer.proof(request.method, str(request.url), wire)
        return await handler(request)

    return aiohttp.ClientSession(middlewares=(add_proof,), **kwargs)
