"""Leaks and webhooks (SPEC §9, §18), against `sable authority serve` on SQLite:

1. Webhook latency: tokens minted at 20 a second for 10 s, each `token.created` timed from the
   mint's answer to its arrival at a live receiver on loopback (p50, p99; SPEC §9: p99 ≤ 2 s).
   Baseline: the same receiver's answer to a direct POST of the same size (what the network
   and the receiver alone cost).
2. 100,000 undelivered events: written into the outbox while the authority is stopped, then
   the authority runs for 30 s against a receiver that is down, claiming and failing them in
   batches. Its resident memory is sampled every 5 s (SPEC §9: flat). Baseline: the same
   authority's memory with an empty outbox.
3. A GitHub secret-scanning report of 1,000 genuine service tokens, signed as GitHub signs
   (SPEC §9: answered in ≤ 2 s). Baseline: a report of 1,000 strings that are not tokens.

    .venv/bin/python -m benchmarks.leaks
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import sqlite3
import statistics
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import aiohttp
from aiohttp import web
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from benchmarks.serving import Authority, post
from benchmarks.stack import free_port

PENDING = 100_000


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class Receiver:
    """Records when each event arrives (no signature check: the tests do that)."""

    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}

    async def start(self) -> tuple[web.AppRunner, str]:
        async def hook(request: web.Request) -> web.Response:
            event = json.loads(await request.read())
            self.arrived[event["data"].get("token_id") or request.headers["webhook-id"]] = time.monotonic()
            return web.Response(status=204)
        app = web.Application()
        app.router.add_post("/hook", hook)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        return runner, f"http://127.0.0.1:{port}/hook"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 1)


async def latency(tmp: Path) -> dict:
    receiver = Receiver()
    runner, url = await receiver.start()
    a = Authority(tmp, settings="webhook_allow_private = true\n")
    try:
        await asyncio.to_thread(post, a.url + "/v1/orgs", {"name": "acme"}, a.admin)
        await asyncio.to_thread(post, a.url + "/v1/webhooks", {"org": "acme", "url": url, "events": ["token.created"]},
                                a.admin)
        acked: dict[str, float] = {}
        async with aiohttp.ClientSession() as http:
            baseline = []
            for _ in range(50):  # the receiver alone, with a body of the same size
                started = time.monotonic()
                async with http.post(url, data=json.dumps({"type": "x", "data": {"token_id": "0" * 32}})) as r:
                    await r.read()
                baseline.append(time.monotonic() - started)
            for _ in range(200):
                started = time.monotonic()
                async with http.post(a.url + "/v1/tokens", json={"org": "acme"},
                                     headers={"Authorization": f"Bearer {a.admin}"}) as r:
                    acked[(await r.json())["id"]] = time.monotonic()
                await asyncio.sleep(max(0.0, 0.05 - (time.monotonic() - started)))
        deadline = time.monotonic() + 30
        while len(set(acked) & set(receiver.arrived)) < len(acked) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        waits = [receiver.arrived[i] - t for i, t in acked.items() if i in receiver.arrived]
        return {"events": len(acked), "delivered": len(waits), "p50_ms": percentile(waits, 0.5),
                "p99_ms": percentile(waits, 0.99), "receiver_alone_p50_ms": percentile(baseline, 0.5),
                "target_p99_ms": 2000}
    finally:
        a.stop()
        await runner.cleanup()


def memory(tmp: Path) -> dict:
    db = tmp / "pending.db"
    a = Authority(tmp, db=db, settings="webhook_allow_private = true\n")
    post(a.url + "/v1/orgs", {"name": "acme"}, a.admin)
    down = f"http://127.0.0.1:{free_port()}/hook"  # nobody listens: every delivery fails at once
    post(a.url + "/v1/webhooks", {"org": "acme", "url": down, "events": ["token.created"]}, a.admin)
    post(a.url + "/v1/tokens", {"org": "acme"}, a.admin)
    time.sleep(1)
    empty = rss_kib(a.proc.pid)
    a.stop()
    with sqlite3.connect(db) as c:  # 100k undelivered events, written while the authority is stopped
        endpoint, audit_seq = c.execute("SELECT endpoint_id, audit_seq FROM webhook_outbox").fetchone() or \
            (c.execute("SELECT id FROM webhooks").fetchone()[0],
             c.execute("SELECT max(seq) FROM audit WHERE event = 'mint'").fetchone()[0])
        now = int(time.time())
        c.executemany("INSERT INTO webhook_outbox (endpoint_id, audit_seq, type, due_at) VALUES (?, ?, ?, ?)",
                      [(endpoint, audit_seq, "token.created", now)] * PENDING)
    a = Authority(tmp, db=db, settings="webhook_allow_private = true\n")
    try:
        samples = []
        for _ in range(7):
            samples.append(rss_kib(a.proc.pid))
            time.sleep(5)
        with sqlite3.connect(db) as c:
            attempted = c.execute("SELECT count(*) FROM webhook_outbox WHERE attempts > 0").fetchone()[0]
    finally:
        a.stop()
    return {"pending": PENDING, "rss_empty_outbox_kib": empty, "rss_samples_kib": samples,
            "growth_first_to_last_kib": samples[-1] - samples[0], "attempted_in_30s": attempted}


def report(tmp: Path) -> dict:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    kid = hashlib.sha256(pem).hexdigest()

    async def serve_keys() -> web.AppRunner:
        async def keys(request: web.Request) -> web.Response:
            return web.json_response({"public_keys": [{"key_identifier": kid, "key": pem.decode(), "is_current": True}]})
        app = web.Application()
        app.router.add_get("/keys", keys)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", keys_port).start()
        return runner

    keys_port = free_port()
    loop = asyncio.new_event_loop()
    loop.run_until_complete(serve_keys())
    threading.Thread(target=loop.run_forever, daemon=True).start()  # the keys, served beside the blocking calls
    a = Authority(tmp, settings=f'secret_scanning_keys_url = "http://127.0.0.1:{keys_port}/keys"\n')
    try:
        pt, _, _ = a.setup()
        found = [post(a.url + "/v1/service-tokens", {"tokens": [pt, a.discharge(pt)]})["token"] for _ in range(1000)]

        def send(strings: list[str]) -> tuple[float, list]:
            body = json.dumps([{"token": t, "type": "sable", "url": "https://github.com/o/r", "source": "content"}
                               for t in strings]).encode()
            signature = base64.b64encode(key.sign(body, ec.ECDSA(hashes.SHA256()))).decode()
            req = urllib.request.Request(a.url + "/v1/secret-scanning/github", data=body, method="POST", headers={
                "Github-Public-Key-Identifier": kid, "Github-Public-Key-Signature": signature,
                "Content-Type": "application/json"})
            started = time.monotonic()
            with urllib.request.urlopen(req, timeout=60) as r:
                answer = json.loads(r.read())
            return time.monotonic() - started, answer
        send(["warm up the key fetch"])
        junk_s, _ = send([f"not-a-token-{i}" for i in range(1000)])
        genuine_s, answer = send(found)
        labels = statistics.mode(a["label"] for a in answer)
    finally:
        a.stop()
        loop.call_soon_threadsafe(loop.stop)
    return {"tokens": len(found), "seconds": round(genuine_s, 3), "junk_seconds": round(junk_s, 3),
            "ratio_to_junk": round(genuine_s / junk_s, 1), "label": labels, "target_seconds": 2.0}


def main() -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="sable-leaks-"))
    out = {"webhook_latency": asyncio.run(latency(tmp))}
    out["pending_memory"] = memory(tmp)
    out["report"] = report(tmp)
    return out


def table(r: dict) -> str:
    w, m, g = r["webhook_latency"], r["pending_memory"], r["report"]
    return "\n".join([
        f"webhook event -> receiver: p50 {w['p50_ms']} ms, p99 {w['p99_ms']} ms ({w['delivered']}/{w['events']} "
        f"delivered; the receiver alone answers in {w['receiver_alone_p50_ms']} ms; SPEC §9 p99 <= 2000 ms)",
        f"{m['pending']} undelivered events: RSS every 5 s {m['rss_samples_kib']} KiB (empty outbox "
        f"{m['rss_empty_outbox_kib']} KiB; growth {m['growth_first_to_last_kib']} KiB; {m['attempted_in_30s']} "
        "attempted in 30 s)",
        f"report of {g['tokens']} genuine tokens: {g['seconds']} s (1,000 junk strings: {g['junk_seconds']} s; "
        f"labels {g['label']}; SPEC §9 <= 2 s)"])


if __name__ == "__main__":
    result = main()
    print(json.dumps(result, indent=2))
    print(table(result))
