"""A CI's OpenID issuer for the tests (SPEC §16): discovery and JWKS served on loopback from a
thread of its own (so `sable` subprocesses and in-process services can both reach it while a
test blocks), ID tokens shaped like GitHub Actions' and GitLab CI's documented claim sets,
signed with keys made here (RS256 and ES256), and a key rotation on demand. It also plays the
GitHub runner's token endpoint (`ACTIONS_ID_TOKEN_REQUEST_URL` / `_TOKEN`)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
import warnings

from aiohttp import web
from joserfc import jws
from joserfc.jwk import ECKey, RSAKey, SecurityWarning

from tests.support import free_port

RUNNER_BEARER = "runner-request-token"


def github_claims(repo: str = "acme/app", repository_id: str = "812345", ref: str = "refs/heads/main",
                  environment: str | None = "production", owner_id: str = "700001") -> dict:
    """The claims GitHub Actions puts in a job's token (docs: 'About security hardening with OpenID Connect')."""
    owner = repo.split("/")[0]
    claims = {
        "sub": f"repo:{repo}:environment:{environment}" if environment else f"repo:{repo}:ref:{ref}",
        "repository": repo, "repository_id": repository_id, "repository_owner": owner,
        "repository_owner_id": owner_id, "ref": ref, "ref_type": "branch", "sha": "d6e1f0c" * 5 + "d6e1f",
        "workflow": "deploy", "workflow_ref": f"{repo}/.github/workflows/deploy.yml@{ref}",
        "job_workflow_ref": f"{repo}/.github/workflows/deploy.yml@{ref}", "event_name": "push",
        "actor": "alice", "actor_id": "900001", "run_id": "6000000001", "run_number": "42", "run_attempt": "1",
        "runner_environment": "github-hosted", "repository_visibility": "private",
    }
    if environment:
        claims["environment"] = environment
    return claims


def gitlab_claims(project: str = "acme/app", project_id: str = "4242", ref: str = "main",
                  environment: str | None = "production", namespace_id: str = "77") -> dict:
    """The claims GitLab CI puts in `id_tokens` (docs: 'OpenID Connect (OIDC) Authentication Using ID Tokens')."""
    claims = {
        "sub": f"project_path:{project}:ref_type:branch:ref:{ref}", "namespace_id": namespace_id,
        "namespace_path": project.split("/")[0], "project_id": project_id, "project_path": project,
        "user_id": "31", "user_login": "alice", "pipeline_id": "1212", "pipeline_source": "push",
        "job_id": "3434", "ref": ref, "ref_type": "branch", "ref_path": f"refs/heads/{ref}", "ref_protected": "true",
    }
    if environment:
        claims["environment"] = environment
        claims["environment_protected"] = "true"
    return claims


class Issuer:
    """The issuer at `url`. `sign(claims, ...)` makes a token with iss/aud/iat/exp/nbf/jti
    filled in; `rotate()` publishes a new key in place of the current one."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.keys = {"RS256": RSAKey.generate_key(2048, parameters={"kid": "rs-1", "use": "sig", "alg": "RS256"}),
                     "ES256": ECKey.generate_key("P-256", parameters={"kid": "es-1", "use": "sig", "alg": "ES256"})}
        self.published: list = list(self.keys.values())
        self.jwks_fetches = 0
        self.extra_jwks: list[dict] = []  # junk keys a test adds
        self.jwks_body: bytes | None = None  # a raw key set a test serves instead
        self.discovery_delay = 0.0  # seconds the discovery document takes
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None

    # --- tokens -------------------------------------------------------------------------------

    def sign(self, claims: dict, audience: str | list | None = None, alg: str = "RS256", key=None,
             header: dict | None = None, **changes) -> str:
        now = int(time.time())
        payload = {"iss": self.url, "aud": audience, "iat": now, "nbf": now, "exp": now + 300,
                   "jti": str(uuid.uuid4()), **claims, **changes}
        payload = {k: v for k, v in payload.items() if v is not None}
        key = key or self.keys[alg]
        head = {"alg": alg, "typ": "JWT", "kid": key.kid, **(header or {})}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SecurityWarning)
            return jws.serialize_compact(head, json.dumps(payload), key, algorithms=[alg])

    def rotate(self, alg: str = "RS256") -> None:
        """A new key for `alg` replaces the old one in the published set (an abrupt rotation)."""
        old = self.keys[alg]
        n = int(old.kid.rsplit("-", 1)[1]) + 1
        prefix = old.kid.rsplit("-", 1)[0]
        params = {"kid": f"{prefix}-{n}", "use": "sig", "alg": alg}
        new = RSAKey.generate_key(2048, parameters=params) if alg == "RS256" else ECKey.generate_key("P-256", parameters=params)
        self.keys[alg] = new
        self.published = [k for k in self.published if k.kid != old.kid] + [new]

    # --- the server ---------------------------------------------------------------------------

    def _app(self) -> web.Application:
        app = web.Application()

        async def discovery(request: web.Request) -> web.Response:
            await asyncio.sleep(self.discovery_delay)
            return web.json_response({"issuer": self.url, "jwks_uri": f"{self.url}/.well-known/jwks",
                                      "subject_types_supported": ["public", "pairwise"],
                                      "response_types_supported": ["id_token"],
                                      "claims_supported": ["sub", "aud", "exp", "iat", "iss", "jti", "nbf", "ref"],
                                      "id_token_signing_alg_values_supported": ["RS256", "ES256"],
                                      "scopes_supported": ["openid"]})

        async def jwks(request: web.Request) -> web.Response:
            self.jwks_fetches += 1
            if self.jwks_body is not None:
                return web.Response(body=self.jwks_body, content_type="application/json")
            keys = [k.as_dict(private=False) for k in self.published] + self.extra_jwks
            return web.json_response({"keys": keys})

        async def runner_token(request: web.Request) -> web.Response:
            if request.headers.get("Authorization") != f"Bearer {RUNNER_BEARER}":
                return web.json_response({"message": "bad bearer"}, status=401)
            audience = request.query.get("audience")
            return web.json_response({"value": self.sign(github_claims(), audience=audience)})

        app.router.add_get("/.well-known/openid-configuration", discovery)
        app.router.add_get("/.well-known/jwks", jwks)
        app.router.add_get("/_apis/idtoken", runner_token)
        return app

    @property
    def runner_url(self) -> str:
        return f"{self.url}/_apis/idtoken?api-version=2.0"

    def start(self) -> None:
        started = threading.Event()

        def serve() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            runner = web.AppRunner(self._app(), access_log=None)
            loop.run_until_complete(runner.setup())
            loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", self.port).start())
            self._runner = runner
            started.set()
            loop.run_forever()
            loop.run_until_complete(runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=serve, daemon=True)
        self._thread.start()
        assert started.wait(10), "the test issuer did not start"

    def stop(self) -> None:
        """Stop serving (the port refuses connections once this returns); again is a no-op."""
        loop, self._loop = self._loop, None
        if loop is not None:
            loop.call_soon_threadsafe(loop.stop)
            self._thread.join(10)
