"""A real OpenID provider for the tests (SPEC §15): panva's `oidc-provider` from the npm
registry, pinned by `oidc_provider/package-lock.json`, run by node as a plain process on
loopback. `sign_in_at_provider` answers its development login and consent forms over HTTP, as
a browser would; the Chromium tests click through the same pages."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import parse_qsl, urljoin, urlsplit

import aiohttp
import pytest

FOLDER = Path(__file__).with_name("oidc_provider")
HOW_TO_GET_IT = ("install Node.js and npm (Debian: apt-get install nodejs npm), then "
                 "`npm ci --prefix tests/support/oidc_provider` (`make test` runs it)")

# The accounts the provider knows: id (its `sub`) -> claims. Any password signs them in.
ACCOUNTS = {
    "alice": {"preferred_username": "alice", "email": "alice@example.test", "groups": ["acme-admins", "dev"]},
    "bob": {"preferred_username": "bob", "groups": ["acme-devs"]},
    "carol": {"preferred_username": "carol", "groups": []},
    "dave": {"preferred_username": "dave"},  # no groups claim at all
    "eve": {"preferred_username": "ci:eve", "groups": ["acme-devs"]},  # a name Sable refuses
    "mallory": {"preferred_username": "alice", "groups": ["acme-devs"]},  # claims a taken name
}


def missing() -> str | None:
    """Why the provider cannot run here, or None."""
    if shutil.which("node") is None:
        return "node is not installed"
    if not (FOLDER / "node_modules" / "oidc-provider").is_dir():
        return "oidc-provider is not installed"
    return None


class OpenIDProvider:
    def __init__(self, redirect_uris: list[str], accounts: dict | None = None):
        env = {**os.environ, "REDIRECT_URIS": ",".join(redirect_uris),
               "ACCOUNTS": json.dumps(accounts or ACCOUNTS), "NODE_NO_WARNINGS": "1"}
        self.proc = subprocess.Popen(["node", str(FOLDER / "provider.mjs")], cwd=FOLDER, env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("READY "):
            self.stop()
            raise RuntimeError(f"the OpenID provider did not start: {line!r}")
        self.issuer = line.split()[1]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def provider_or_skip(redirect_uris: list[str]) -> OpenIDProvider:
    why = missing()
    if why is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"the OpenID provider is required in CI: {why}; {HOW_TO_GET_IT}")
        pytest.skip(f"OpenID provider not available: {why}")
    return OpenIDProvider(redirect_uris)


def settings(issuer: str, name: str = "acme", client_id: str = "sable", **extra) -> dict:
    """An `[[discharger.identity_provider]]` table for this provider (its client secret in
    the environment variable the discharger reads)."""
    os.environ[f"SABLE_DISCHARGER_IDP_{name.upper().replace('-', '_')}_CLIENT_SECRET"] = f"{client_id}-secret"
    return {"name": name, "display": f"Sign in with {name.title()} SSO", "issuer": issuer, "client_id": client_id,
            "scopes": ["openid", "email", "profile", "groups"], **extra}


async def sign_in_at_provider(http: aiohttp.ClientSession, url: str, account: str, stop_at: str) -> str:
    """Follow `url` (the provider's authorization URL) through its login and consent forms as
    `account`, up to the first redirect to `stop_at`; that URL (the callback, with its query)."""
    method, data = "GET", None
    for _ in range(12):
        async with http.request(method, url, data=data, allow_redirects=False) as r:
            if r.status in (302, 303):
                url, method, data = urljoin(url, r.headers["Location"]), "GET", None
                if url.startswith(stop_at):
                    return url
                continue
            html = await r.text()
            assert r.status == 200, (r.status, html[:300])
        action = urljoin(url, re.search(r'action="([^"]+)"', html).group(1))  # type: ignore[union-attr]
        prompt = re.search(r'name="prompt" value="(\w+)"', html).group(1)  # type: ignore[union-attr]
        data = {"prompt": prompt}
        if prompt == "login":
            data |= {"login": account, "password": "anything"}
        method, url = "POST", action
    raise AssertionError("the provider never redirected back")


def query_of(url: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(url).query))
