"""Bounded mixed load against both services, each in its own process on loopback.

Traffic: verify 90%, strip 5%, revoke 3%, discharge 2%, from `--concurrency` clients for
`--seconds`. Reports throughput, p50/p99 per operation, the error count, and each
service's RSS at start, after warm-up (a tenth of the run, 10 to 60 s), each minute and at
the end. Pass: 0 errors and RSS growth after warm-up of at most 10%.

    .venv/bin/python -m benchmarks.load --seconds 60 [--backend postgresql]

With `--backend postgresql` both services use a throwaway PostgreSQL cluster of their own
(needs PostgreSQL's server binaries, as the tests do).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import nacl.utils

from benchmarks.stack import free_port
from clients import offline, tokens
from clients.tickets import b64e

SABLE = str(Path(sys.executable).parent / "sable")
MIX = [("verify", 0.90), ("strip", 0.05), ("revoke", 0.03), ("discharge", 0.02)]


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def wait_up(http: aiohttp.ClientSession, url: str) -> None:
    for _ in range(300):
        try:
            async with http.get(url + "/healthz") as r:
                if r.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


async def run(seconds: float, concurrency: int, warmup: float, db: dict[str, str] | None = None) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="sable-load-"))
    db_args = {name: ["--db", url] for name, url in (db or {}).items()}
    admin = tokens.encode(tokens.ADMIN, nacl.utils.random(32))
    a_port, d_port = free_port(), free_port()
    a_url, d_url = f"http://127.0.0.1:{a_port}", f"http://127.0.0.1:{d_port}"
    (tmp / "sable.toml").write_text(f'[authority]\nrevoke_per_minute = 100000000\ndischarger = "{d_url}"\n')
    env = {**os.environ, "SABLE_ADMIN_TOKEN": admin,
           "SABLE_MASTER_KEY": base64.urlsafe_b64encode(nacl.utils.random(32)).decode().rstrip("=")}
    procs = {
        "discharger": subprocess.Popen([SABLE, "discharger", "serve", "--port", str(d_port), "--data-dir", str(tmp),
                                        "--log-level", "WARNING", *db_args.get("discharger", [])], env=env),
        "authority": subprocess.Popen([SABLE, "authority", "serve", "--port", str(a_port), "--data-dir", str(tmp),
                                       "--config", str(tmp / "sable.toml"), "--log-level", "WARNING",
                                       *db_args.get("authority", [])], env=env),
    }
    adm = {"Authorization": f"Bearer {admin}"}
    try:
        conn = aiohttp.TCPConnector(limit=concurrency + 4)
        async with aiohttp.ClientSession(connector=conn) as http:
            await wait_up(http, d_url)
            await wait_up(http, a_url)

            async def post(url, body, headers=None):
                async with http.post(url, json=body, headers=headers or {}) as r:
                    return r.status, await r.json()

            await post(a_url + "/v1/orgs", {"name": "acme"}, adm)
            await post(d_url + "/v1/users", {"username": "load", "password": "load password", "orgs": ["acme"]}, adm)
            session = (await post(d_url + "/v1/sessions", {"username": "load", "password": "load password"}))[1]["session"]
            sess = {"Authorization": f"Bearer {session}"}
            pt = (await post(a_url + "/v1/tokens", {"org": "acme", "caveats": ["apps orders"]}, adm))[1]["token"]
            ticket = b64e([c for c in tokens.parse(pt).caveats if c.third_party][0].cid)
            dt = offline.bind(pt, (await post(d_url + "/v1/discharges", {"ticket": ticket}, sess))[1]["discharge"])
            st = (await post(a_url + "/v1/service-tokens", {"tokens": [pt, dt]}))[1]["token"]
            doomed = (await post(a_url + "/v1/service-tokens", {"tokens": [pt, dt]}))[1]["token"]
            hosts = [offline.attenuate(st, [f"hosts w{i}"]) for i in range(16)]

            fresh = {"dt": dt}
            counter = iter(range(10**9))
            lat: dict[str, list[float]] = {op: [] for op, _ in MIX}
            errors: dict[str, int] = {}
            expected = {"verify": 200, "strip": 201, "revoke": 200, "discharge": 201}

            async def one(op: str, rng: random.Random) -> None:
                if op == "verify":
                    i = rng.randrange(len(hosts))
                    args = (a_url + "/v1/verify", {"tokens": [hosts[i]],
                                                   "access": {"org": "acme", "action": "r", "app": "orders", "host": f"w{i}"}})
                elif op == "strip":  # with the newest discharge, as a real client keeps one fresh
                    args = (a_url + "/v1/service-tokens", {"tokens": [pt, fresh["dt"]]})
                elif op == "revoke":
                    args = (a_url + "/v1/revoke", {"tokens": [offline.attenuate(doomed, [f"instances i{next(counter)}"])]})
                else:
                    args = (d_url + "/v1/discharges", {"ticket": ticket}, sess)
                t = time.perf_counter()
                try:
                    status, body = await post(*args)
                except (TimeoutError, aiohttp.ClientError) as e:
                    status, body = type(e).__name__, None
                if op == "discharge" and status == 201:  # discharges live 300 s: strips use the newest
                    fresh["dt"] = offline.bind(pt, body["discharge"])
                lat[op].append(time.perf_counter() - t)
                if status != expected[op]:
                    errors[f"{op}:{status}"] = errors.get(f"{op}:{status}", 0) + 1

            ops, weights = zip(*MIX)
            rss = {"start": {n: rss_mib(p.pid) for n, p in procs.items()}}
            series: list[dict] = []
            start = time.monotonic()
            deadline = start + seconds

            async def client(n: int) -> None:
                rng = random.Random(n)
                while time.monotonic() < deadline:
                    await one(rng.choices(ops, weights)[0], rng)

            async def sampler() -> None:
                await asyncio.sleep(warmup)
                rss["after_warmup"] = {n: rss_mib(p.pid) for n, p in procs.items()}
                # Then one sample a minute: a leak climbs steadily, a settling heap levels off.
                while deadline - time.monotonic() > 60:
                    await asyncio.sleep(60)
                    series.append({"t": round(time.monotonic() - start), **{n: rss_mib(p.pid) for n, p in procs.items()}})

            sample = asyncio.create_task(sampler())
            await asyncio.gather(*(client(n) for n in range(concurrency)))
            await sample
            elapsed = time.monotonic() - start
            rss["end"] = {n: rss_mib(p.pid) for n, p in procs.items()}
            async with http.get(a_url + "/metrics") as r:  # how long the authority's writes took in the database
                commits = {line.split()[0]: float(line.split()[1]) for line in (await r.text()).splitlines()
                           if line.startswith(("sable_db_commit_seconds_sum", "sable_db_commit_seconds_count"))}
    finally:
        for p in procs.values():
            p.terminate()
        for p in procs.values():
            p.wait(timeout=10)

    def pct(xs, p):
        return round(statistics.quantiles(xs, n=100)[p - 1] * 1000, 2) if len(xs) > 1 else None

    total = sum(len(v) for v in lat.values())
    growth = {n: round((rss["end"][n] / rss["after_warmup"][n] - 1) * 100, 1) for n in procs}
    result = {
        "seconds": round(elapsed, 1), "concurrency": concurrency, "requests": total,
        "throughput_rps": round(total / elapsed, 1), "errors": sum(errors.values()), "error_kinds": errors,
        "ops": {op: {"count": len(v), "p50_ms": pct(v, 50), "p99_ms": pct(v, 99)} for op, v in lat.items()},
        "rss_mib": {k: {n: round(x, 1) for n, x in v.items()} for k, v in rss.items()},
        "rss_growth_after_warmup_pct": growth,
        "rss_mib_each_minute": series,
        "authority_db_writes": {"count": int(commits.get("sable_db_commit_seconds_count", 0)),
                                "mean_ms": round(commits.get("sable_db_commit_seconds_sum", 0) * 1000
                                                 / max(commits.get("sable_db_commit_seconds_count", 0), 1), 2)},
    }
    result["pass"] = result["errors"] == 0 and all(g <= 10 for g in growth.values())
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description="Bounded mixed load against both Sable services.")
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--concurrency", type=int, default=32)
    # Warm-up: a tenth of the run, at least 10 s and at most 60 s. Caches, connection pools and
    # the allocators' free lists fill for the first minute or so of a long run.
    parser.add_argument("--warmup", type=float, default=None, help="seconds before the RSS baseline")
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    args = parser.parse_args()
    warmup = args.warmup if args.warmup is not None else min(60.0, max(10.0, args.seconds / 10))
    warmup = min(warmup, args.seconds / 2)
    if args.backend == "sqlite":
        out = asyncio.run(run(args.seconds, args.concurrency, warmup))
    else:
        from tests.support.postgres import HOW_TO_GET_IT, start_cluster

        cluster = start_cluster()
        if cluster is None:
            sys.exit(f"--backend postgresql needs PostgreSQL: {HOW_TO_GET_IT}")
        try:
            db = {"authority": cluster.new_database(), "discharger": cluster.new_database()}
            out = asyncio.run(run(args.seconds, args.concurrency, warmup, db))
        finally:
            cluster.destroy()
    out["backend"] = args.backend
    print(json.dumps(out, indent=2))
    sys.exit(0 if out["pass"] else 1)


if __name__ == "__main__":
    main()
