"""The HTTP baseline: a bare aiohttp JSON endpoint that reads the body and answers, with no
verification; a bare forward-auth endpoint that reads the gateway's headers and answers 200
with the identity headers; and a small upstream for gateways (any other GET). Run as
`python bare_app.py PORT [PROCESSES]` (several share the port)."""

import os
import sys

from aiohttp import web


async def verify(request: web.Request) -> web.Response:
    await request.json()
    return web.json_response({"allowed": True, "id": "0" * 32, "kind": "service", "org": "acme", "user": None,
                              "caveats": []})


async def forward_auth(request: web.Request) -> web.Response:
    h = request.headers
    _ = (h["X-Original-Method"], h["X-Original-Host"], h["X-Original-URI"], h["Authorization"])
    return web.Response(headers={"Sable-Token-Id": "0" * 32, "Sable-User": "-", "Sable-Org": "acme"})


async def upstream(request: web.Request) -> web.Response:
    return web.json_response({"path": request.path})


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def run(port: int, reuse: bool) -> None:
    app = web.Application()
    app.router.add_post("/v1/verify", verify)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/v1/forward-auth", forward_auth)
    app.router.add_get("/{tail:.*}", upstream)
    web.run_app(app, host="127.0.0.1", port=port, reuse_port=reuse or None, access_log=None, print=None)


if __name__ == "__main__":
    port, processes = int(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 1
    for _ in range(processes - 1):
        if os.fork() == 0:
            break
    run(port, processes > 1)
