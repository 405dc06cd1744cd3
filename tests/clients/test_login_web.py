"""`sable login --web` (SPEC §11): the real CLI as a subprocess prints the URL and code and
polls; a signed-in browser session (the test client's cookie jar) approves or denies."""

from __future__ import annotations

import asyncio
import json
import os
import re

import aiohttp
import pytest

from discharger.app import create_app
from discharger.config import DischargerConfig
from tests.discharger.test_device import csrf_of
from tests.support import SABLE

pytestmark = pytest.mark.slow  # a real `sable` subprocess; the CLI polls every 5 s


@pytest.fixture
async def discharger_url(aiohttp_server, tmp_path, admin_token, unused_tcp_port_factory):
    port = unused_tcp_port_factory()
    config = DischargerConfig(db_path=str(tmp_path / "d.db"), master_key=bytes(32), admin_token=admin_token,
                              public_url=f"http://127.0.0.1:{port}")
    await aiohttp_server(create_app(config), port=port)
    url = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as http:
        async with http.post(url + "/v1/users", json={"username": "alice", "password": "correct horse",
                                                      "orgs": ["acme"]},
                             headers={"Authorization": f"Bearer {admin_token}"}) as r:
            assert r.status == 201
    return url


async def browser_decides(url: str, user_code: str, action: str) -> None:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        async with http.get(url + "/login") as r:
            csrf = csrf_of(await r.text())
        async with http.post(url + "/login", data={"csrf": csrf, "username": "alice", "password": "correct horse",
                                                   "next": f"/device?user_code={user_code}"}) as r:
            page = await r.text()
            assert "Only approve a code you started yourself" in page
        shown = re.search(r'name="shown" value="([^"]*)"', page).group(1)  # the client the page showed
        async with http.post(url + "/device", data={"csrf": csrf_of(page), "user_code": user_code,
                                                    "action": action, "shown": shown}) as r:
            assert r.status == 200


async def run_login(discharger_url: str, tmp_path, action: str):
    env = {**os.environ, "SABLE_DISCHARGER_URL": discharger_url, "XDG_CONFIG_HOME": str(tmp_path)}
    env.pop("DISPLAY", None)
    proc = await asyncio.create_subprocess_exec(SABLE, "login", "--web", "--json", env=env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    shown = b""
    while b"enter the code" not in shown:
        shown += await asyncio.wait_for(proc.stderr.readline(), 10)
    code = re.search(rb"enter the code ([A-Z]{4}-[A-Z]{4})", shown).group(1).decode()
    assert f"{discharger_url}/device".encode() in shown
    await browser_decides(discharger_url, code, action)
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    return proc.returncode, out.decode(), (shown + err).decode()


async def test_login_web_approved(discharger_url, tmp_path):
    code, out, err = await run_login(discharger_url, tmp_path, "approve")
    assert code == 0, err
    assert "Waiting for the approval in the browser (the code expires in 10 min; Ctrl-C to give up)" in err
    assert json.loads(out)["username"] == "alice"
    saved = json.loads((tmp_path / "sable" / "session.json").read_text())
    assert saved["session"].startswith("sable_ss_") and saved["username"] == "alice"
    assert os.stat(tmp_path / "sable" / "session.json").st_mode & 0o077 == 0


async def test_login_web_denied(discharger_url, tmp_path):
    code, out, err = await run_login(discharger_url, tmp_path, "deny")
    assert code == 1 and "denied" in err and "Traceback" not in err
    assert not (tmp_path / "sable" / "session.json").exists()


def test_password_stdin_needs_a_username(tmp_path):
    import subprocess
    r = subprocess.run([SABLE, "login", "--password-stdin"], input="x\n", capture_output=True, text=True,
                       env={**os.environ, "XDG_CONFIG_HOME": str(tmp_path)}, timeout=30)
    assert r.returncode == 2 and "--username" in r.stderr
