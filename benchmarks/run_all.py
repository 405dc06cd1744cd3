"""`make bench`: every benchmark, a table each, and one JSON file with all the figures."""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
import time
from pathlib import Path

from benchmarks import ci_discharge, cli_start, core, leaks, pop, postgres, serving, verifier, verifier_process
from server.logs import configure_logging


def main() -> None:
    configure_logging("WARNING")
    out: dict = {"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    print("== core verify (µs per verify; ratios against the same run's baselines)")
    out["core"] = core.main()
    print(core.table(out["core"]), flush=True)
    print("\n== offline CLI start (ms, median of 15)")
    out["cli_start"] = cli_start.main()
    print(json.dumps(out["cli_start"], indent=2), flush=True)
    print("\n== caching verifier")
    out["verifier"] = asyncio.run(verifier.main())
    print(json.dumps(out["verifier"], indent=2), flush=True)
    print("\n== DPoP proofs and just-in-time wire tokens")
    out["pop"] = pop.main()
    print(json.dumps(out["pop"], indent=2), flush=True)
    print("\n== discharges for a CI's ID token (32 clients, one worker)")
    out["ci_discharge"] = ci_discharge.main(10)
    print(ci_discharge.table(out["ci_discharge"]), flush=True)
    print("\n== leaks and webhooks (SQLite, one worker)")
    out["leaks"] = leaks.main()
    print(leaks.table(out["leaks"]), flush=True)
    print("\n== HTTP (wrk -t1 -c32)")
    if shutil.which("wrk"):
        out["http"] = serving.main(10)
        print(serving.table(out["http"]))
        print("\n== the verifier process and nginx (wrk -t1 -c32)")
        if shutil.which("nginx") or Path("/usr/sbin/nginx").exists():
            out["verifier_process"] = verifier_process.main(10)
            print(verifier_process.table(out["verifier_process"]), flush=True)
        else:
            print("skipped: nginx is not installed (apt-get install nginx-light)")
        print("\n== PostgreSQL and replicas (wrk -t1 -c32)")
        out["postgres"] = postgres.main(10)
        print(postgres.table(out["postgres"]))
    else:
        print("skipped: wrk is not installed (apt-get install wrk)")
    path = Path(sys.argv[1] if len(sys.argv) > 1 else "benchmarks/results.json")
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
