"""How long offline CLI commands take from exec to exit (SPEC §9: ≤ 150 ms), each against the
interpreter doing nothing (`python -c pass`) in the same run: median of 15 runs.

    .venv/bin/python -m benchmarks.cli_start
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

SABLE = str(Path(sys.executable).parent / "sable")


def _median_ms(argv: list[str], runs: int = 15, stdin: str | None = None) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(argv, input=stdin, capture_output=True, text=True, check=False)
        times.append((time.perf_counter() - started) * 1000)
    return round(statistics.median(times), 1)


def main() -> dict:
    import compileall

    from authority.minting import build
    from authority.root_keys import RootKeys
    from clients import tokens

    # As an installed wheel has them (pip compiles at install), even where the environment
    # says not to write bytecode (PYTHONDONTWRITEBYTECODE).
    compileall.compile_dir(str(Path(__file__).parents[1] / "clients"), quiet=1)
    token = build(RootKeys(bytes(32)), tokens.SERVICE, "http://a", "ab" * 16, ["org acme"])[0].encode()
    out = {"python -c pass": _median_ms([sys.executable, "-c", "pass"])}
    for name, argv in (("--version", [SABLE, "--version"]), ("--help", [SABLE, "--help"]),
                       ("inspect", [SABLE, "inspect", token]),
                       ("attenuate", [SABLE, "attenuate", token, "--hosts", "worker-7"])):
        out[name] = _median_ms(argv)
    out["target_ms"] = 150
    out["met"] = all(v <= 150 for k, v in out.items() if k.startswith(("--", "inspect", "attenuate")))
    return out


if __name__ == "__main__":
    for k, v in main().items():
        print(f"{k:<16} {v}")
