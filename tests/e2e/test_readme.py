"""The README walkthrough works when pasted as written."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).parents[2] / "README.md"


pytestmark = pytest.mark.slow  # real `sable` subprocesses


def walkthrough() -> str:
    text = README.read_text()
    m = re.search(r"<!-- walkthrough:[^>]*-->\n```sh\n(.*?)```", text, re.S)
    assert m, "README has no walkthrough block"
    return m.group(1)


def test_readme_walkthrough(dev_stack):
    proc, dev, tmp = dev_stack
    (tmp / ".venv").mkdir()
    os.symlink(Path(sys.executable).parent, tmp / ".venv" / "bin")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SABLE_")}
    env["XDG_CONFIG_HOME"] = str(tmp / "config")
    r = subprocess.run(["bash", "-c", walkthrough()], cwd=tmp, env=env, capture_output=True, text=True, timeout=120)
    out = r.stdout + r.stderr
    assert "logged in as alice" in out
    assert out.count("allowed:") == 1, out
    assert "denied: caveat 'hosts worker-7' does not allow host 'worker-8'" in out
    assert "denied: token is revoked" in out
    assert "Traceback" not in out
