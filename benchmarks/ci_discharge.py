"""Discharges for a CI's ID token (SPEC §9, §16: ≥ 500/s on one worker), against the baseline
a deploy job would otherwise use: a discharge for a person's session, measured the same way
in the same run.

`sable discharger serve` (one worker, SQLite) in its own process; 32 concurrent clients in
this one. Each ID-token discharge verifies an RS256 signature (a GitHub-shaped token from a
test issuer on loopback), matches a trust policy and claims the token's `jti` in the database
(a durable write), so every request carries its own pre-signed token. The session discharge
reads the session and the user and writes an audit row.

    .venv/bin/python -m benchmarks.ci_discharge [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import aiohttp
import nacl.utils

from benchmarks.serving import SABLE, post, wait_up
from benchmarks.stack import free_port
from clients import tickets, tokens
from clients.tickets import b64d, b64e
from tests.support.ci_issuer import Issuer, github_claims

CLIENTS = 32


async def _load(url: str, bodies, headers: dict, seconds: float) -> dict:
    """Send `bodies` (an iterator) with CLIENTS at a time for `seconds`: rate and latency."""
    latencies: list[float] = []
    errors = 0
    statuses: dict[int, int] = {}
    deadline = time.monotonic() + seconds
    async with aiohttp.ClientSession(headers=headers) as http:
        async def client() -> None:
            nonlocal errors
            while time.monotonic() < deadline:
                body = next(bodies, None)
                if body is None:
                    return
                started = time.perf_counter()
                async with http.post(url, json=body) as resp:
                    answer = await resp.read()
                    if resp.status != 201:
                        errors += 1
                        statuses[resp.status] = statuses.get(resp.status, 0) + 1
                        if len(statuses) == 1 and statuses[resp.status] == 1:
                            print(f"first refusal: {resp.status} {answer[:300]!r}", flush=True)
                latencies.append(time.perf_counter() - started)
        began = time.monotonic()
        await asyncio.gather(*(client() for _ in range(CLIENTS)))
        took = time.monotonic() - began
    latencies.sort()
    return {"rps": round(len(latencies) / took, 1), "p50_ms": round(latencies[len(latencies) // 2] * 1000, 2),
            "p99_ms": round(latencies[int(len(latencies) * 0.99)] * 1000, 2), "errors": errors,
            "error_statuses": statuses,
            "requests": len(latencies)}


def main(seconds: float = 10) -> dict:
    issuer = Issuer()
    issuer.start()
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        admin = tokens.encode(tokens.ADMIN, nacl.utils.random(32))
        env = {**os.environ, "SABLE_ADMIN_TOKEN": admin, "SABLE_MASTER_KEY": "66" * 32}
        proc = subprocess.Popen([SABLE, "discharger", "serve", "--port", str(port), "--db", str(Path(tmp) / "d.db"),
                                 "--log-level", "WARNING"], env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            wait_up(url, proc)
            post(url + "/v1/users", {"username": "alice", "password": "correct horse battery", "orgs": ["acme"]}, admin)
            session = post(url + "/v1/sessions", {"username": "alice", "password": "correct horse battery"})["session"]
            post(url + "/v1/principals", {"org": "acme", "name": "deploy"}, admin)
            post(url + "/v1/principals/ci:deploy/policies",
                 {"issuer": issuer.url, "claims": {"repository_id": "812345", "environment": "production"}}, admin)
            with urllib.request.urlopen(url + "/v1/info") as r:
                key = b64d(json.loads(r.read())["public_keys"][0]["key"])
            for_ci = b64e(tickets.seal(key, bytes(32), "acme", 300, principal="ci:deploy"))
            for_person = b64e(tickets.seal(key, bytes(32), "acme", 300))
            # Pre-signed: one token per request (each jti is taken once), made before the clock starts.
            wanted = int(seconds * 1500)
            signed = [issuer.sign(github_claims(), audience=url) for _ in range(wanted)]
            people = asyncio.run(_load(url + "/v1/discharges", iter(lambda: {"ticket": for_person}, None),
                                       {"Authorization": f"Bearer {session}"}, seconds))
            ci = asyncio.run(_load(url + "/v1/discharges", ({"ticket": for_ci, "id_token": t} for t in signed),
                                   {}, seconds))
        finally:
            proc.terminate()
            proc.wait(timeout=30)
            issuer.stop()
    return {"session_discharge": people, "id_token_discharge": ci,
            "ratio": round(ci["rps"] / people["rps"], 2), "ran_out_of_tokens": ci["requests"] >= wanted,
            "target_rps": 500}


def table(r: dict) -> str:
    rows = [("discharge for a session (baseline)", r["session_discharge"]),
            ("discharge for an ID token (RS256, jti claimed)", r["id_token_discharge"])]
    lines = [f"{'':50} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}"]
    for name, m in rows:
        lines.append(f"{name:50} {m['rps']:>8} {m['p50_ms']:>8} {m['p99_ms']:>8} {m['errors']:>7}")
    verdict = "meets" if r["id_token_discharge"]["rps"] >= r["target_rps"] else "MISSES"
    lines.append(f"ID-token/session ratio {r['ratio']}; {verdict} SPEC §9's {r['target_rps']}/s on one worker")
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10)
    result = main(parser.parse_args().seconds)
    print(json.dumps(result, indent=2))
    print(table(result))
