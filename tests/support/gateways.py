"""Real gateways for the tests (SPEC §17): Debian's nginx (`nginx-light`, with auth_request)
and Caddy, each started as a plain process with its config under a temporary folder, on
loopback. The configs are `examples/gateways/`' files as written; only addresses change."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer

from server.launcher import Runner
from tests.support import free_port

EXAMPLES = Path(__file__).parents[2] / "examples" / "gateways"
HOW_TO_GET_IT = "apt-get install -y nginx-light caddy  (or run `make test` as root on Debian/Ubuntu)"
EXAMPLE_UPSTREAM, EXAMPLE_VERIFIER = "127.0.0.1:8080", "127.0.0.1:8702"


class ServedApp(TestServer):
    """An app on loopback as `sable ... serve` runs it: through `server.launcher.Runner`, so
    its front door (the verifier's forward-auth) answers ahead of the router."""

    async def _make_runner(self, **kwargs):
        return Runner(self.app, **kwargs)


def binary(name: str) -> str | None:
    return shutil.which(name) or (f"/usr/sbin/{name}" if Path(f"/usr/sbin/{name}").exists() else None)


def require(name: str) -> str:
    exe = binary(name)
    if exe is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{name} is required in CI and is not installed: {HOW_TO_GET_IT}")
        pytest.skip(f"{name} is not installed")
    return exe


def _wait_port(port: int, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the gateway exited: {log.read_text()}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.02)
    raise RuntimeError(f"the gateway did not listen: {log.read_text()}")


class Gateway:
    name = ""

    def __init__(self, root: Path, upstream: str, verifier: str):
        self.root = root
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.upstream, self.verifier = upstream, verifier
        self.proc: subprocess.Popen | None = None
        self.log = root / f"{self.name}.log"

    def command(self) -> list[str]:
        raise NotImplementedError

    def start(self) -> Gateway:
        self.proc = subprocess.Popen(self.command(), cwd=self.root, stdout=open(self.log, "a"), stderr=subprocess.STDOUT,
                                     env={**os.environ, "XDG_CONFIG_HOME": str(self.root / "cfg"),
                                          "XDG_DATA_HOME": str(self.root / "data")})
        _wait_port(self.port, self.proc, self.log)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Nginx(Gateway):
    """`examples/gateways/nginx.conf`'s server block in a minimal main config."""

    name = "nginx"

    def command(self) -> list[str]:
        block = (EXAMPLES / "nginx.conf").read_text()
        block = block.replace("listen 80;", f"listen 127.0.0.1:{self.port};")
        block = block.replace(EXAMPLE_UPSTREAM, self.upstream).replace(EXAMPLE_VERIFIER, self.verifier)
        (self.root / "tmp").mkdir(exist_ok=True)
        (self.root / "nginx.conf").write_text(
            "daemon off; worker_processes 1; pid nginx.pid; error_log stderr notice;\n"
            "events { worker_connections 256; }\n"
            "http {\n  access_log off;\n"
            "  client_body_temp_path tmp/body; proxy_temp_path tmp/proxy; fastcgi_temp_path tmp/fastcgi;\n"
            "  uwsgi_temp_path tmp/uwsgi; scgi_temp_path tmp/scgi;\n"
            f"{block}\n}}\n")
        return [require("nginx"), "-p", str(self.root), "-c", str(self.root / "nginx.conf"), "-e", "stderr"]


class Caddy(Gateway):
    """`examples/gateways/Caddyfile`'s site block, served over http on loopback."""

    name = "caddy"

    def command(self) -> list[str]:
        site = (EXAMPLES / "Caddyfile").read_text()
        site = site.replace("api.example.com {", f"http://api.example.com:{self.port} {{\n\tbind 127.0.0.1", 1)
        site = site.replace(EXAMPLE_UPSTREAM, self.upstream).replace(EXAMPLE_VERIFIER, self.verifier)
        (self.root / "Caddyfile").write_text(
            "{\n\tadmin off\n\tauto_https off\n"
            f"\tstorage file_system {self.root / 'data'}\n}}\n{site}")
        return [require("caddy"), "run", "--config", str(self.root / "Caddyfile"), "--adapter", "caddyfile"]
