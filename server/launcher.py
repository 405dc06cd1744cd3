"""Running services: listening (with TLS), signals, and a supervisor for `--workers N`."""

from __future__ import annotations

import asyncio
import gc
import os
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

import click
from aiohttp import web

from clients.errors import ConfigError, Unavailable
from server.metrics import MULTIPROC_ENV

WORKER_ENV = "SABLE_WORKER"


class FrontDoor(Protocol):
    """An endpoint answered ahead of the router and middleware: one too hot for them (the
    verifier's forward-auth). `serves(raw_path)` picks its requests; it is routed as well, so
    an app served any other way (a test client) answers the same."""

    def serves(self, raw_path: str) -> bool: ...

    async def __call__(self, request: web.Request) -> web.StreamResponse: ...


FRONT_DOOR = web.AppKey("front_door", FrontDoor)


class Runner(web.AppRunner):
    """An AppRunner that lets the app's front door, if it has one, answer ahead of its router."""

    async def setup(self) -> None:
        await super().setup()
        door = self.app.get(FRONT_DOOR)
        if door is None or self.server is None:
            return
        routed = self.server.request_handler

        async def handle(request: web.BaseRequest) -> web.StreamResponse:
            if door.serves(request.raw_path):
                return await door(request)  # type: ignore[arg-type]  # the app's factory made a web.Request
            return await routed(request)
        self.server.request_handler = handle


def tls_context(cert: str | None, key: str | None) -> ssl.SSLContext | None:
    if not cert and not key:
        return None
    if not (cert and key):
        raise ConfigError("--tls-cert and --tls-key go together")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        ctx.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as e:
        raise ConfigError(f"cannot load TLS certificate or key: {e}") from None
    return ctx


async def serve(sites: list[tuple[web.Application, str, int, ssl.SSLContext | None]],
                ready: Callable[[], Awaitable[None]] | None = None, reuse_port: bool = False) -> None:
    """Start every app, call `ready()`, then run until SIGINT or SIGTERM and stop cleanly."""
    os.umask(0o077)  # databases, WAL files and keys are for the service's user alone
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    runners = []
    try:
        for app, host, port, tls in sites:
            # Idle keep-alive connections (a connected workload) must not hold a stop for 60 s.
            runner = Runner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
            await runner.setup()
            runners.append(runner)
            try:
                await web.TCPSite(runner, host, port, ssl_context=tls, reuse_port=reuse_port or None).start()
            except OSError as e:
                raise Unavailable(f"cannot listen on {host}:{port}: {e.strerror}") from None
        # Everything loaded so far (modules, settings, the apps) lives as long as the process:
        # move it out of the collector's sight, so a full collection walks only what requests
        # make rather than every imported module on each pass.
        gc.freeze()
        if ready is not None:
            await ready()
        await stop.wait()
    finally:
        for runner in reversed(runners):
            await runner.cleanup()


def is_worker() -> bool:
    return WORKER_ENV in os.environ


def supervise(workers: int) -> int:
    """Run `workers` copies of this command on one port; stop them all on SIGINT/SIGTERM, or
    when one exits (so a supervisor such as systemd restarts the whole service). Workers may
    start together: schema migrations take the database's lock."""
    args = [sys.executable, "-m", "cli.main", *sys.argv[1:]]
    # One folder for every worker's metric values, so any worker's /metrics reports them all.
    metrics_dir = os.environ.get(MULTIPROC_ENV) or tempfile.mkdtemp(prefix="sable-metrics-")
    env = {**os.environ, MULTIPROC_ENV: metrics_dir}
    try:
        return _run_workers(args, env, workers)
    finally:
        if MULTIPROC_ENV not in os.environ:
            shutil.rmtree(metrics_dir, ignore_errors=True)


def _run_workers(args: list[str], env: dict, workers: int) -> int:
    children = [subprocess.Popen(args, env={**env, WORKER_ENV: str(n)}) for n in range(workers)]
    stopping: list[bool] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopping.append(True))
    code = 0
    while not stopping:
        exited = [c for c in children if c.poll() is not None]
        if exited:
            code = exited[0].returncode or 1
            click.echo(f"sable: worker {exited[0].pid} exited ({exited[0].returncode}); stopping", err=True)
            break
        time.sleep(0.2)
    for c in children:
        if c.poll() is None:
            c.terminate()
    for c in children:
        c.wait()
    return code


async def announce(name: str, url: str) -> None:
    click.echo(f"sable {name} listening on {url}", err=True)
