"""A tiny workload protected by Sable: every request needs a token allowing this host.

    SABLE_AUTHORITY_URL=http://127.0.0.1:8700 SABLE_ORG=acme SABLE_APP=orders \\
        python examples/workload/app.py --port 8080

GET needs action `r`, anything else `w`. The host is this machine's hostname, so a token
attenuated with `--hosts $(hostname)` works here and nowhere else. With SABLE_PUBLIC_URL set
(the URL clients use to reach this service), tokens bound to a key (`sable attenuate
--bind-key`) are accepted with a DPoP proof (SPEC §14).
"""

from __future__ import annotations

import argparse
import os
import socket

from aiohttp import web

from clients.middleware import DECISION, sable_middleware
from clients.verifier import Verifier


def access_for(request: web.Request) -> dict:
    return {
        "org": os.environ.get("SABLE_ORG", "acme"),
        "app": os.environ.get("SABLE_APP", "orders"),
        "action": "r" if request.method in ("GET", "HEAD") else "w",
        "host": os.environ.get("SABLE_HOST") or socket.gethostname(),
    }


async def orders(request: web.Request) -> web.Response:
    decision = request[DECISION]
    return web.json_response({"orders": [], "token": decision.id, "user": decision.user})


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok", "pid": os.getpid()})  # deploy.sh checks it is this process


def create_app(verifier: Verifier, public_url: str | None = None) -> web.Application:
    public_url = public_url or os.environ.get("SABLE_PUBLIC_URL")
    app = web.Application(middlewares=[sable_middleware(verifier, access_for, public_url=public_url)])
    app.router.add_get("/orders", orders)
    app.router.add_post("/orders", orders)
    app.router.add_get("/healthz", healthz)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args()

    async def build() -> web.Application:
        verifier = Verifier(os.environ.get("SABLE_AUTHORITY_URL", "http://127.0.0.1:8700"))
        await verifier.start()
        app = create_app(verifier)

        async def stop(app):
            await verifier.close()
        app.on_cleanup.append(stop)
        return app

    web.run_app(build(), host=args.host, port=args.port)


if __name__ == "__main__":
    main()
