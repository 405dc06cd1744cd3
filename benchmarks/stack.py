"""Both real services in this process on loopback ports, with a user and a service token,
for benchmarks. Nothing is mocked: the discharge comes from the real discharger."""

from __future__ import annotations

import contextlib
import socket
import tempfile
from pathlib import Path

import nacl.utils
from aiohttp import web

from authority.app import create_app as authority_app
from authority.config import AuthorityConfig, TrustedDischarger
from clients import offline, tokens
from clients.sdk import AuthorityClient, DischargerClient
from clients.tickets import b64d, b64e
from discharger.app import create_app as discharger_app
from discharger.config import DischargerConfig


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Stack:
    def __init__(self, data_dir: Path, **authority_settings):
        self.dir = data_dir
        self.admin = tokens.encode(tokens.ADMIN, nacl.utils.random(32))
        self.a_port, self.d_port = free_port(), free_port()
        self.a_url, self.d_url = f"http://127.0.0.1:{self.a_port}", f"http://127.0.0.1:{self.d_port}"
        self.authority_settings = authority_settings
        self._runners: list[web.AppRunner] = []

    async def _start(self, app: web.Application, port: int) -> None:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        self._runners.append(runner)

    async def start(self) -> Stack:
        d_config = DischargerConfig(str(self.dir / "discharger.db"), nacl.utils.random(32), self.d_url,
                                    port=self.d_port, admin_token=self.admin)
        await self._start(discharger_app(d_config), self.d_port)
        async with DischargerClient(self.d_url) as d:
            info = await d.info()
        trust = TrustedDischarger(self.d_url, tuple((k["kid"], b64d(k["key"])) for k in info["public_keys"]))
        self.a_config = AuthorityConfig(str(self.dir / "authority.db"), nacl.utils.random(32), self.a_url,
                                        dischargers=(trust,), port=self.a_port, admin_token=self.admin,
                                        **self.authority_settings)
        await self._start(authority_app(self.a_config), self.a_port)
        return self

    async def stop(self) -> None:
        for runner in reversed(self._runners):
            await runner.cleanup()

    async def service_token(self, caveats=("apps orders",)) -> dict:
        """A fresh permission token, stripped through a real login and discharge."""
        async with AuthorityClient(self.a_url, admin_token=self.admin) as a, \
                DischargerClient(self.d_url, admin_token=self.admin) as d:
            with contextlib.suppress(Exception):
                await a.create_org("acme")
            with contextlib.suppress(Exception):
                await d.create_user("bench", "bench password", ["acme"])
            session = (await d.login("bench", "bench password"))["session"]
            pt = (await a.mint("acme", list(caveats)))["token"]
            ticket = [c for c in tokens.parse(pt).caveats if c.third_party][0].cid
            dt = offline.bind(pt, (await d.discharge(session, b64e(ticket)))["discharge"])
            out = await a.strip(pt, dt)
            return {"pt": pt, "dt": dt, **out}

    async def strip_many(self, pt: str, dt: str, n: int) -> list[str]:
        """n service tokens stripped from one permission token and discharge."""
        async with AuthorityClient(self.a_url) as a:
            return [(await a.strip(pt, dt))["token"] for _ in range(n)]


@contextlib.asynccontextmanager
async def running(**authority_settings):
    with tempfile.TemporaryDirectory(prefix="sable-bench-") as tmp:
        stack = await Stack(Path(tmp), **authority_settings).start()
        try:
            yield stack
        finally:
            await stack.stop()
