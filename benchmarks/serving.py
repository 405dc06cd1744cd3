"""HTTP benchmarks with wrk (32 connections, one wrk thread), each against a baseline
started the same way in the same run:

1. `POST /v1/verify` on the authority (with /metrics on) with 1 and 2 workers, against a bare
   aiohttp JSON endpoint with 1 and 2 processes (SO_REUSEPORT). One worker: three alternating
   baseline/authority rounds, the median ratio kept (all three printed).
2. Strip throughput (`POST /v1/service-tokens`), every answer durable (group commit).
3. Verify with 1M tokens and 100k revocations in the database (built in bulk with SQL),
   against the empty database.

    .venv/bin/python -m benchmarks.serving [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import nacl.public
import nacl.utils

from benchmarks.stack import free_port
from clients import macaroon, offline, tokens
from clients.tickets import key_id
from clients.tokens import RawCaveat, Token
from discharger.tickets import unseal_ticket

SABLE = str(Path(sys.executable).parent / "sable")
BARE = Path(__file__).with_name("bare_app.py")


def wait_up(url: str, proc: subprocess.Popen) -> None:
    for _ in range(300):
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=1):
                return
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"{url} exited with {proc.returncode}") from None
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


def post(url: str, body: dict, admin: str | None = None) -> dict:
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {admin}"} if admin else {})}
    req = urllib.request.Request(url, json.dumps(body).encode(), headers)
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def wrk(url: str, body: dict, seconds: float, tmp: Path) -> dict:
    script = tmp / "post.lua"
    script.write_text('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
                      f"wrk.body = {json.dumps(json.dumps(body))}\n")
    out = subprocess.run(["wrk", "-t1", "-c32", f"-d{int(seconds)}s", "--latency", "-s", str(script), url],
                         capture_output=True, text=True, check=True).stdout

    def ms(label):
        m = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        value, unit = float(m.group(1)), m.group(2)
        return round(value * {"us": 0.001, "ms": 1, "s": 1000}[unit], 3)

    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = (int(non2xx.group(1)) if non2xx else 0) + (sum(map(int, sock.groups())) if sock else 0)
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
            "p50_ms": ms("50"), "p99_ms": ms("99"), "errors": errors}


class Authority:
    """`sable authority serve` in its own process(es), trusting a local discharger keypair."""

    def __init__(self, tmp: Path, workers: int = 1, db: Path | str | None = None, settings: str = ""):
        self.private = nacl.public.PrivateKey.generate()
        self.kid = key_id(bytes(self.private.public_key))
        self.admin = tokens.encode(tokens.ADMIN, nacl.utils.random(32))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        pub = base64.urlsafe_b64encode(bytes(self.private.public_key)).decode().rstrip("=")
        config = tmp / f"authority-{self.port}.toml"
        config.write_text(f'[authority]\npublic_url = "http://authority.test"\nrevoke_per_minute = 100000000\n{settings}'
                          f'[[authority.dischargers]]\nlocation = "http://discharger.test"\n'
                          f'public_keys = [{{ kid = "{self.kid}", key = "{pub}" }}]\n')
        env = {**os.environ, "SABLE_ADMIN_TOKEN": self.admin, "SABLE_MASTER_KEY": "55" * 32}
        self.proc = subprocess.Popen(
            [SABLE, "authority", "serve", "--port", str(self.port), "--workers", str(workers), "--config", str(config),
             "--db", str(db or tmp / f"authority-{self.port}.db"), "--log-level", "WARNING"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_up(self.url, self.proc)
        # wrk opens its connections once: every worker must be listening before it starts.
        seen, deadline = set(), time.monotonic() + 30
        while len(seen) < workers and time.monotonic() < deadline:
            with urllib.request.urlopen(self.url + "/v1/info", timeout=5) as r:
                seen.add(json.loads(r.read())["worker"])
        if len(seen) < workers:
            raise RuntimeError(f"only {len(seen)} of {workers} workers came up")

    def discharge(self, pt: str) -> str:
        ticket = [c for c in tokens.parse(pt).caveats if c.third_party][0].cid
        contents = unseal_ticket({self.kid: self.private}, ticket)
        texts = [b"user bench", f"expires {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(time.time() + 300))}".encode()]
        sig = macaroon.initial_signature(contents.caveat_key, ticket)
        for t in texts:
            sig = macaroon.first_party(sig, t)
        dt = Token(tokens.DISCHARGE, "http://discharger.test", ticket, tuple(RawCaveat(t) for t in texts), sig)
        return offline.bind(pt, dt.encode())

    def setup(self) -> tuple[str, str, str]:
        """(permission token, bound discharge, host-bound service token)."""
        try:
            post(self.url + "/v1/orgs", {"name": "acme"}, self.admin)
        except urllib.error.HTTPError as e:
            if e.code != 409:  # the scale fixture already made it
                raise
        pt = post(self.url + "/v1/tokens", {"org": "acme", "caveats": ["apps orders", "actions rw"]}, self.admin)["token"]
        dt = self.discharge(pt)
        st = post(self.url + "/v1/service-tokens", {"tokens": [pt, dt]})["token"]
        return pt, dt, offline.attenuate(st, ["hosts worker-7", "instances i-1"])

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


def stop_group(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=30)


def bare(workers: int) -> tuple[subprocess.Popen, str]:
    port = free_port()
    # Its own process group: the forked extra processes must stop with it (see stop_group).
    proc = subprocess.Popen([sys.executable, str(BARE), str(port), str(workers)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    wait_up(url, proc)
    return proc, url


def build_scale_db(path: Path | str, tokens_n: int = 1_000_000, revoked_n: int = 100_000) -> None:
    """Fill a database through the store API: tokens_n tokens (org acme), revoked_n revoked."""
    from authority.store import TokenRow, open_store

    async def fill() -> None:
        store = await open_store(str(path))
        now = int(time.time())
        sealed = nacl.utils.random(72)
        try:
            batch = 50_000
            for start in range(0, tokens_n, batch):
                await store.insert_tokens(
                    TokenRow(f"{i:032x}", "service", None, "acme", None, "bench", 3, sealed, now,
                             now if i < revoked_n else None)
                    for i in range(start, min(tokens_n, start + batch)))
        finally:
            await store.close()

    asyncio.run(fill())


ROUNDS = 3  # baseline/authority pairs for the 1-worker ratio


def main(seconds: float) -> dict:
    if shutil.which("wrk") is None:
        sys.exit("benchmarks/serving.py needs wrk (apt-get install wrk)")
    tmp = Path(tempfile.mkdtemp(prefix="sable-http-"))
    access = {"org": "acme", "action": "r", "app": "orders", "host": "worker-7", "instance": "i-1"}
    result: dict = {"seconds": seconds, "connections": 32}

    for workers in (1, 2):
        a = Authority(tmp, workers)  # /metrics on, as in production
        try:
            pt, dt, ht = a.setup()
            body = {"tokens": [ht], "access": access}
            assert post(a.url + "/v1/verify", body)["allowed"]
            # The machine's speed drifts within seconds: alternate the baseline and the
            # authority, and keep the round with the median ratio.
            rounds = []
            for _ in range(ROUNDS if workers == 1 else 1):
                proc, url = bare(workers)
                try:
                    b = wrk(url + "/v1/verify", {"tokens": ["x"], "access": access}, seconds, tmp)
                finally:
                    stop_group(proc)
                rounds.append((b, wrk(a.url + "/v1/verify", body, seconds, tmp)))
            rounds.sort(key=lambda r: r[1]["rps"] / r[0]["rps"])
            result[f"bare_{workers}"], result[f"verify_{workers}"] = rounds[len(rounds) // 2]
            if workers == 1:
                result["verify_1_rounds"] = [round(v["rps"] / b["rps"], 2) for b, v in rounds]
                result["strip_1"] = wrk(a.url + "/v1/service-tokens", {"tokens": [pt, dt]}, seconds, tmp)
        finally:
            a.stop()

    scale_db = tmp / "scale.db"
    started = time.monotonic()
    build_scale_db(scale_db)
    result["scale_fixture_seconds"] = round(time.monotonic() - started, 1)
    a = Authority(tmp, 1, db=scale_db)
    try:
        _, _, ht = a.setup()
        result["verify_1_scale"] = wrk(a.url + "/v1/verify", {"tokens": [ht], "access": access}, seconds, tmp)
    finally:
        a.stop()

    r = result
    r["ratios"] = {
        "verify_1_vs_bare_1": round(r["verify_1"]["rps"] / r["bare_1"]["rps"], 2),
        "verify_2_vs_verify_1": round(r["verify_2"]["rps"] / r["verify_1"]["rps"], 2),
        "bare_2_vs_bare_1": round(r["bare_2"]["rps"] / r["bare_1"]["rps"], 2),
        "scale_vs_empty": round(r["verify_1_scale"]["rps"] / r["verify_1"]["rps"], 2),
    }
    r["targets"] = {
        "verify_1_vs_bare_1 >= 0.7": r["ratios"]["verify_1_vs_bare_1"] >= 0.7,
        "verify_1 p99 <= 10 ms and 0 errors": r["verify_1"]["p99_ms"] <= 10 and r["verify_1"]["errors"] == 0,
        "verify_2_vs_verify_1 >= 1.7": r["ratios"]["verify_2_vs_verify_1"] >= 1.7,
        "strip >= 1000/s, 0 errors": r["strip_1"]["rps"] >= 1000 and r["strip_1"]["errors"] == 0,
        "scale within 10%": r["ratios"]["scale_vs_empty"] >= 0.9,
    }
    shutil.rmtree(tmp, ignore_errors=True)
    return r


def table(r: dict) -> str:
    rows = [("bare aiohttp, 1 process", r["bare_1"]), ("/v1/verify, 1 worker", r["verify_1"]),
            ("bare aiohttp, 2 processes", r["bare_2"]), ("/v1/verify, 2 workers", r["verify_2"]),
            ("strip, 1 worker", r["strip_1"]), ("/v1/verify, 1M tokens", r["verify_1_scale"])]
    lines = [f"{'run':<28}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}"]
    lines += [f"{name:<28}{x['rps']:>10.0f}{x['p50_ms']:>9}{x['p99_ms']:>9}{x['errors']:>8}" for name, x in rows]
    lines.append("ratios: " + ", ".join(f"{k} {v}" for k, v in r["ratios"].items())
                 + f" (1-worker rounds: {r['verify_1_rounds']})")
    lines.append("targets: " + ", ".join(f"{k}: {'met' if v else 'MISSED'}" for k, v in r["targets"].items()))
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10)
    out = main(parser.parse_args().seconds)
    print(table(out))
    print(json.dumps(out, indent=2))
