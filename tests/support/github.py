"""GitHub's side of secret scanning (SPEC §18), played for the tests: P-256 keys, the public
keys document in GitHub's format served on loopback, and reports signed as GitHub signs them
(DER ECDSA over the raw body, base64), with `cryptography`."""

from __future__ import annotations

import base64
import hashlib
import json

from aiohttp import web
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

KEYS_PATH = "/meta/public_keys/secret_scanning"


def _pem(key: ec.EllipticCurvePrivateKey) -> str:
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def key_id(key: ec.EllipticCurvePrivateKey) -> str:
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


class GitHub:
    def __init__(self) -> None:
        self.old = ec.generate_private_key(ec.SECP256R1())  # rotated out, still listed
        self.current = ec.generate_private_key(ec.SECP256R1())
        self.fetches = 0

    def document(self) -> dict:
        return {"public_keys": [{"key_identifier": key_id(k), "key": _pem(k), "is_current": k is self.current}
                                for k in (self.old, self.current)]}

    def app(self) -> web.Application:
        async def keys(request: web.Request) -> web.Response:
            self.fetches += 1
            return web.json_response(self.document())
        app = web.Application()
        app.router.add_get(KEYS_PATH, keys)
        return app

    def sign(self, body: bytes, key: ec.EllipticCurvePrivateKey | None = None, kid: str | None = None) -> dict:
        key = key or self.current
        signature = base64.b64encode(key.sign(body, ec.ECDSA(hashes.SHA256()))).decode()
        return {"Github-Public-Key-Identifier": kid or key_id(key), "Github-Public-Key-Signature": signature,
                "Content-Type": "application/json"}

    def report(self, *found: str, url: str = "https://github.com/octo/repo/blob/abc/config.yml",
               source: str = "content") -> tuple[bytes, dict]:
        body = json.dumps([{"token": t, "type": "sable_token", "url": url, "source": source} for t in found]).encode()
        return body, self.sign(body)
