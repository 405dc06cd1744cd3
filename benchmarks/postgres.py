"""PostgreSQL benchmarks (SPEC §9, §10), each against a baseline measured in the same run:

1. Warm `POST /v1/verify` (1 worker, wrk -t1 -c32) on PostgreSQL against the same on SQLite,
   run alternately.
2. Strip throughput on PostgreSQL, every answer after its durable COMMIT.
3. A revocation through replica A, enforced at replica B: latency from A's answer to B's first
   denial (B polled every millisecond), over 200 revocations.
4. Verify with 1M tokens and 100k revocations in the PostgreSQL database, against the empty
   PostgreSQL database.

Needs PostgreSQL's server binaries (Debian: apt-get install postgresql); it starts its own
throwaway cluster with durable defaults.

    .venv/bin/python -m benchmarks.postgres [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from benchmarks.serving import Authority, build_scale_db, post, wrk
from clients import offline

ACCESS = {"org": "acme", "action": "r", "app": "orders", "host": "worker-7", "instance": "i-1"}


async def revocation_latency(a: Authority, b: Authority, n: int) -> list[float]:
    """Seconds from A acknowledging a revocation to B's first denial, for n fresh tokens."""
    pt, dt, _ = a.setup()
    out = []
    async with aiohttp.ClientSession() as http:
        async def call(url: str, path: str, body: dict) -> tuple[int, dict]:
            async with http.post(url + path, json=body) as r:
                return r.status, await r.json()

        for _ in range(n):
            status, st = await call(a.url, "/v1/service-tokens", {"tokens": [pt, dt]})
            assert status == 201, st
            ht = offline.attenuate(st["token"], ["hosts worker-7", "instances i-1"])
            verify = {"tokens": [ht], "access": ACCESS}
            assert (await call(b.url, "/v1/verify", verify))[0] == 200  # B holds it in memory
            status, _ = await call(a.url, "/v1/revoke", {"tokens": [st["token"]]})
            assert status == 200
            acked = time.perf_counter()
            while (await call(b.url, "/v1/verify", verify))[0] != 403:
                if time.perf_counter() - acked > 5:
                    raise RuntimeError("replica B never enforced a revocation made through A")
                await asyncio.sleep(0.001)
            out.append(time.perf_counter() - acked)
    return out


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def main(seconds: float, revocations: int = 200, scale_tokens: int = 1_000_000) -> dict:
    from tests.support.postgres import HOW_TO_GET_IT, start_cluster

    if shutil.which("wrk") is None:
        sys.exit("benchmarks/postgres.py needs wrk (apt-get install wrk)")
    cluster = start_cluster()
    if cluster is None:
        sys.exit(f"benchmarks/postgres.py needs PostgreSQL: {HOW_TO_GET_IT}")
    tmp = Path(tempfile.mkdtemp(prefix="sable-pg-bench-"))
    result: dict = {"seconds": seconds, "connections": 32}
    try:
        # 1 and 2: warm verify, SQLite and PostgreSQL alternately (2 rounds each); strip on PostgreSQL.
        for rnd in (1, 2):
            for name in ("sqlite", "postgresql"):
                a = Authority(tmp, 1, db=cluster.new_database() if name == "postgresql" else None)
                try:
                    pt, dt, ht = a.setup()
                    body = {"tokens": [ht], "access": ACCESS}
                    assert post(a.url + "/v1/verify", body)["allowed"]
                    result[f"verify_{name}_{rnd}"] = wrk(a.url + "/v1/verify", body, seconds, tmp)
                    if name == "postgresql" and rnd == 1:
                        result["strip_postgresql"] = wrk(a.url + "/v1/service-tokens", {"tokens": [pt, dt]}, seconds, tmp)
                finally:
                    a.stop()

        # 3: replica A -> replica B.
        db = cluster.new_database()
        a = Authority(tmp, 1, db=db)
        b = Authority(tmp, 1, db=db)
        try:
            lat = asyncio.run(revocation_latency(a, b, revocations))
        finally:
            a.stop()
            b.stop()
        result["revocation_a_to_b_ms"] = {
            "n": len(lat), "p50": round(statistics.median(lat) * 1000, 2),
            "p99": round(pct(lat, 99) * 1000, 2), "max": round(max(lat) * 1000, 2)}

        # 4: 1M tokens and 100k revocations on PostgreSQL, against the empty database above.
        scale_db = cluster.new_database()
        started = time.monotonic()
        build_scale_db(scale_db, tokens_n=scale_tokens, revoked_n=scale_tokens // 10)
        result["scale_fixture_seconds"] = round(time.monotonic() - started, 1)
        for name, url in (("empty", cluster.new_database()), ("scale", scale_db)):
            a = Authority(tmp, 1, db=url)
            try:
                _, _, ht = a.setup()
                result[f"verify_postgresql_{name}"] = wrk(a.url + "/v1/verify", {"tokens": [ht], "access": ACCESS},
                                                          seconds, tmp)
            finally:
                a.stop()
    finally:
        cluster.destroy()
        shutil.rmtree(tmp, ignore_errors=True)

    r = result
    rps = {name: statistics.mean(r[f"verify_{name}_{i}"]["rps"] for i in (1, 2)) for name in ("sqlite", "postgresql")}
    r["ratios"] = {
        "verify_postgresql_vs_sqlite": round(rps["postgresql"] / rps["sqlite"], 2),
        "scale_vs_empty_postgresql": round(r["verify_postgresql_scale"]["rps"] / r["verify_postgresql_empty"]["rps"], 2),
    }
    r["targets"] = {
        "warm verify on PostgreSQL within 10% of SQLite": r["ratios"]["verify_postgresql_vs_sqlite"] >= 0.9,
        "strip on PostgreSQL >= 1000/s, 0 errors": r["strip_postgresql"]["rps"] >= 1000
        and r["strip_postgresql"]["errors"] == 0,
        "revocation A -> B p99 <= 50 ms": r["revocation_a_to_b_ms"]["p99"] <= 50,
        "1M tokens on PostgreSQL within 10% of empty": r["ratios"]["scale_vs_empty_postgresql"] >= 0.9,
    }
    return r


def table(r: dict) -> str:
    rows = [(f"/v1/verify, SQLite ({i})", r[f"verify_sqlite_{i}"]) for i in (1, 2)]
    rows += [(f"/v1/verify, PostgreSQL ({i})", r[f"verify_postgresql_{i}"]) for i in (1, 2)]
    rows += [("strip, PostgreSQL", r["strip_postgresql"]), ("/v1/verify, PG empty", r["verify_postgresql_empty"]),
             ("/v1/verify, PG 1M tokens", r["verify_postgresql_scale"])]
    lines = [f"{'run':<30}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}"]
    lines += [f"{name:<30}{x['rps']:>10.0f}{x['p50_ms']:>9}{x['p99_ms']:>9}{x['errors']:>8}" for name, x in rows]
    lat = r["revocation_a_to_b_ms"]
    lines.append(f"revocation A -> B over {lat['n']}: p50 {lat['p50']} ms, p99 {lat['p99']} ms, max {lat['max']} ms")
    lines.append("ratios: " + ", ".join(f"{k} {v}" for k, v in r["ratios"].items()))
    lines.append("targets: " + ", ".join(f"{k}: {'met' if v else 'MISSED'}" for k, v in r["targets"].items()))
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--revocations", type=int, default=200)
    parser.add_argument("--scale-tokens", type=int, default=1_000_000)
    args = parser.parse_args()
    out = main(args.seconds, args.revocations, args.scale_tokens)
    print(table(out))
    print(json.dumps(out, indent=2))
