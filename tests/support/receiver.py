"""A webhook receiver for the tests (SPEC §18) that checks every delivery with the
`standardwebhooks` package from PyPI, not with Sable's own code. It can answer 200, fail with
500, hang past a timeout, or redirect (to a path that records whether it was followed)."""

from __future__ import annotations

import asyncio

from aiohttp import web
from standardwebhooks import Webhook


class Receiver:
    def __init__(self) -> None:
        self.secret: str | None = None
        self.mode = "ok"  # ok, fail, hang, redirect
        self.fail_times = 0  # with mode "ok": fail this many first
        self.received: list[dict] = []  # verified deliveries: {"id", "timestamp", "event"}
        self.unverified = 0
        self.attempts = 0
        self.followed = 0  # requests to the redirect target

    def app(self) -> web.Application:
        async def hook(request: web.Request) -> web.Response:
            self.attempts += 1
            body = await request.read()
            if self.mode == "hang":
                await asyncio.sleep(30)
            if self.mode == "redirect":
                raise web.HTTPFound("/followed")
            if self.mode == "fail" or self.fail_times > 0:
                self.fail_times = max(0, self.fail_times - 1)
                return web.Response(status=500)
            try:
                event = Webhook(self.secret).verify(body, dict(request.headers))
            except Exception:
                self.unverified += 1
                return web.Response(status=400)
            self.received.append({"id": request.headers["webhook-id"], "timestamp": request.headers["webhook-timestamp"],
                                  "event": event, "raw": body})
            return web.Response(status=204)

        async def followed(request: web.Request) -> web.Response:
            self.followed += 1
            return web.Response(status=200)
        app = web.Application()
        app.router.add_post("/hook", hook)
        app.router.add_route("*", "/followed", followed)
        return app

    def of_type(self, kind: str) -> list[dict]:
        return [r for r in self.received if r["event"]["type"] == kind]
