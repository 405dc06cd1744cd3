"""Proof of possession and just-in-time wire tokens (SPEC §9, §14).

- DPoP proof check: `clients.proof_check.check_proof` plus the replay claim, per proof (each with its
  own jti), against a bare PyNaCl Ed25519 verify of the same signature in the same run.
  Target: at most 100 µs per proof.
- JIT: `--clients` simulated clients, each sending 100 checks a second through one caching
  verifier with a `WireToken` refreshed every second, against a real authority. Targets: a
  hit rate of at least 98%, and at most one authority verify per client per second.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.core import paired
from benchmarks.stack import running
from clients import offline, pop, proof_check
from clients.sdk import WireToken
from clients.verifier import Verifier
from server.logs import configure_logging

URL = "https://orders.example/v1/orders"
TOKEN = "sable_st_" + "A" * 300


def proof_checks(n: int = 2000) -> dict:
    import nacl.bindings

    with tempfile.TemporaryDirectory() as tmp:
        pop.keygen(Path(tmp) / "host.key")
        signer = pop.DPoPSigner(Path(tmp) / "host.key")
    now = time.time()
    proofs = [signer.proof("GET", URL, TOKEN, now=now) for _ in range(n)]
    head, body, sig = proofs[0].split(".")
    message = f"{head}.{body}".encode()
    signature = proof_check._unb64url(sig, "signature")
    public = proof_check._unb64url(signer.jwk["x"], "x")
    proof_check.check_proof(proofs[0], htm="GET", htu=URL, token=TOKEN, now=now)  # load joserfc first
    state = {"i": 0, "replay": proof_check.ReplayCache()}

    def check():
        i = state["i"] = (state["i"] + 1) % n
        if i == 0:
            state["replay"] = proof_check.ReplayCache()  # a new round of the same proofs
        proof = proof_check.check_proof(proofs[i], htm="GET", htu=URL, token=TOKEN, now=now)
        state["replay"].claim(proof, now)

    def bare():
        nacl.bindings.crypto_sign_open(signature + message, public)

    ours, floor = paired([check, bare], n - 1, rounds=5)
    return {"check_us": round(ours, 1), "pynacl_verify_us": round(floor, 1), "vs_pynacl": round(ours / floor, 2),
            "target_us_max": 100, "meets_target": ours <= 100}


async def jit(clients: int = 20, seconds: float = 10.0, rate: float = 100.0) -> dict:
    async with running() as stack:
        st = (await stack.service_token())["token"]
        async with Verifier(stack.a_url) as v:
            while v.cursor is None:
                await asyncio.sleep(0.01)

            async def client(i: int) -> None:
                wire = WireToken(offline.attenuate(st, [f"hosts w{i}"]), lifetime=5.0, refresh=1.0)
                access = {"org": "acme", "action": "r", "app": "orders", "host": f"w{i}"}
                start = time.monotonic()
                sent = 0
                while (elapsed := time.monotonic() - start) < seconds:
                    decision = await v.check([wire.current()], access)
                    assert decision.allowed, decision.reason
                    sent += 1
                    await asyncio.sleep(max(0.0, sent / rate - elapsed))

            await asyncio.gather(*(client(i) for i in range(clients)))
            hits, misses = v.stats.hits, v.stats.misses
    checks = hits + misses
    per_client_second = misses / (clients * seconds)
    return {"clients": clients, "seconds": seconds, "checks": checks, "hit_rate": round(hits / checks, 4),
            "authority_verifies": misses, "verifies_per_client_per_second": round(per_client_second, 2),
            "targets": {"hit_rate_min": 0.98, "verifies_per_client_per_second_max": 1.0},
            "meets_targets": hits / checks >= 0.98 and per_client_second <= 1.0}


def main() -> dict:
    return {"dpop": proof_checks(), "jit": asyncio.run(jit())}


if __name__ == "__main__":
    configure_logging("WARNING")
    print(json.dumps(main(), indent=2))
    sys.exit(0)
