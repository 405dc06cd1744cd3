"""Every line a service writes is a JSON object (SPEC §8, §13): its own structlog events and
the lines libraries log through the standard library (an OTLP exporter's retries, say)."""

from __future__ import annotations

import json
import subprocess
import sys

PROGRAM = """
import logging, structlog
from server.logs import configure_logging
configure_logging("INFO")
logging.getLogger("opentelemetry.exporter.otlp").warning("Transient error %s, retrying", "refused")
try:
    1 / 0
except ZeroDivisionError:
    logging.getLogger("somelib").exception("failed")
logging.getLogger("aiosqlite").warning("kept: a warning")
logging.getLogger("aiosqlite").info("dropped: a query with parameters")
structlog.get_logger("sable").info("mint", token_id="ab" * 16)
"""


def test_library_lines_are_json_too():
    r = subprocess.run([sys.executable, "-c", PROGRAM], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    lines = [json.loads(line) for line in r.stdout.splitlines()]  # every line parses
    assert [(x["event"], x["level"]) for x in lines] == [
        ("Transient error refused, retrying", "warning"), ("failed", "error"), ("kept: a warning", "warning"),
        ("mint", "info")]
    assert lines[0]["logger"] == "opentelemetry.exporter.otlp" and "ZeroDivisionError" in lines[1]["exception"]
    assert all("timestamp" in x for x in lines)
