"""deploy/README.md's PostgreSQL steps, run as written (SPEC §19): its setup SQL through psql
as the superuser, its `sable db` commands with the least-privilege roles' URLs (only the
host's port and the install path differ), then both services on those roles. Without the
schemas (a missing privilege) a service stops with a message naming it, never a traceback."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import aiohttp
import nacl.utils
import pytest

from authority.store import open_store
from authority.store.sqlite import SqliteStore as AuthoritySqlite
from clients import tokens
from tests.support import SABLE, AuthorityProcess, free_port, wait_healthy
from tests.support.fakes import FakeDischarger

pytestmark = pytest.mark.slow  # real processes and a real cluster

README = Path(__file__).parents[2] / "deploy" / "README.md"


def section() -> str:
    text = README.read_text()
    start = text.index("## PostgreSQL\n")
    return text[start:text.index("\n## ", start + 1)]


def setup_sql() -> str:
    blocks = re.findall(r"```sql\n(.*?)```", section(), re.S)
    assert blocks and blocks[0].startswith("-- setup.sql"), "the README's setup SQL moved"
    return blocks[0]


def commands(port: int) -> list[str]:
    """The README's `sable db` lines, joined across backslashes, for this cluster's port."""
    block = re.findall(r"```sh\n(.*?)```", section(), re.S)[0].replace("\\\n", " ")
    lines = [" ".join(line.split()) for line in block.splitlines() if "sable db" in line]
    assert len(lines) == 3, lines
    return [re.sub(r"^(sudo -u \S+ )?\S*sable ", f"{SABLE} ", line).replace("127.0.0.1:5432", f"127.0.0.1:{port}")
            for line in lines]


def psql(cluster, sql: str, database: str = "postgres") -> subprocess.CompletedProcess:
    path = cluster.root / "setup.sql"
    path.write_text(sql)
    os.chmod(path, 0o644)
    return cluster._run("psql", "-X", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", str(cluster.port),
                        "-U", "postgres", "-d", database, "-f", str(path), check=False)


def serve(tmp_path, service: str, db: str, env: dict, *extra: str) -> tuple[subprocess.Popen, str, Path]:
    port = free_port()
    log = tmp_path / f"{service}.log"
    proc = subprocess.Popen([SABLE, service, "serve", "--port", str(port), "--db", db, *extra],
                            env={**os.environ, **env}, stdout=open(log, "w"), stderr=subprocess.STDOUT)
    return proc, f"http://127.0.0.1:{port}", log


async def test_the_readme_postgresql_steps_work_as_written(tmp_path, pg_cluster):
    done = psql(pg_cluster, setup_sql())
    assert done.returncode == 0, done.stderr
    for line in commands(pg_cluster.port):
        r = subprocess.run(line, shell=True, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, (line, r.stdout, r.stderr)
        assert "Traceback" not in r.stderr
        assert "change-me" not in r.stdout + r.stderr  # the URL's password is never printed
    status = r.stdout
    assert "authority: schema version" in status and "up to date" in status, status

    url = f"postgresql://{{}}@127.0.0.1:{pg_cluster.port}/sable"
    a_url = url.format("sable_authority:change-me-authority")
    d_url = url.format("sable_discharger:change-me-discharger")
    admin = tokens.encode(tokens.ADMIN, nacl.utils.random(32))
    env = {"SABLE_ADMIN_TOKEN": admin, "SABLE_MASTER_KEY": "66" * 32}
    d, d_base, d_log = serve(tmp_path, "discharger", d_url, env)
    a = None
    try:
        wait_healthy(d_base, d, d_log)
        a, a_base, a_log = serve(tmp_path, "authority", a_url, env, "--discharger", d_base)
        wait_healthy(a_base, a, a_log)
        headers = {"Authorization": f"Bearer {admin}"}
        async with aiohttp.ClientSession() as http:
            async with http.post(a_base + "/v1/orgs", json={"name": "acme"}, headers=headers) as resp:
                assert resp.status == 201
            async with http.post(d_base + "/v1/users", json={"username": "alice", "password": "correct horse",
                                                             "orgs": ["acme"]}, headers=headers) as resp:
                assert resp.status == 201
            async with http.post(a_base + "/v1/tokens", json={"org": "acme"}, headers=headers) as resp:
                assert resp.status == 201
    finally:
        for p in (a, d):
            if p is not None:
                p.terminate()
                p.wait(timeout=15)

    # Each role reaches its own schema only, and nothing was made in public.
    for role, other in (("sable_authority", "discharger.users"), ("sable_discharger", "authority.tokens")):
        denied = psql(pg_cluster, f"SET ROLE {role}; SELECT count(*) FROM {other};", "sable")
        assert denied.returncode != 0 and "permission denied" in denied.stderr
    assert pg_cluster.psql("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'", "sable") == "0"

    # `sable db status` with one role reads its own schema and names the one it may not read.
    r = subprocess.run([SABLE, "db", "status", "--db", a_url], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "Traceback" not in r.stderr, (r.stdout, r.stderr)
    version = AuthoritySqlite.schema_version()
    assert f"authority: schema version {version}, this build {version}: up to date" in r.stdout
    assert "discharger: database postgresql://sable_authority:***@" in r.stdout
    assert "may not use schema discharger" in r.stdout and "change-me" not in r.stdout


def test_a_missing_privilege_is_a_message_naming_it(tmp_path, pg_cluster):
    """The README before its fix: roles and a database, no schemas. The least-privilege role may
    not create one; the service says so and how to fix it, and exits."""
    sql = "CREATE ROLE lp_authority LOGIN; CREATE DATABASE lp; REVOKE ALL ON DATABASE lp FROM PUBLIC;" \
          " GRANT CONNECT ON DATABASE lp TO lp_authority;"
    assert psql(pg_cluster, sql).returncode == 0
    db = f"postgresql://lp_authority@127.0.0.1:{pg_cluster.port}/lp"
    proc, _, log = serve(tmp_path, "authority", db, {"SABLE_MASTER_KEY": "66" * 32})
    assert proc.wait(timeout=30) != 0
    text = log.read_text()
    assert "schema authority does not exist and role lp_authority may not create it" in text, text
    assert "CREATE SCHEMA authority AUTHORIZATION lp_authority" in text
    assert "Traceback" not in text

    r = subprocess.run([SABLE, "db", "status", "--db", db], capture_output=True, text=True, timeout=60)
    assert "Traceback" not in r.stderr, r.stderr
    assert "authority: schema version 0" in r.stdout, (r.stdout, r.stderr)



async def test_a_logical_backup_restores_into_an_empty_database(tmp_path, pg_cluster):
    """deploy/README.md's pg_dump / pg_restore lines: a token minted and one revoked before the
    backup verify and stay revoked on the restored database."""
    src = pg_cluster.new_database()
    d = FakeDischarger()
    admin = tokens.encode(tokens.ADMIN, nacl.utils.random(32))
    a = AuthorityProcess(tmp_path, src, d, admin)
    try:
        async with aiohttp.ClientSession() as http:
            headers = {"Authorization": f"Bearer {admin}"}
            await http.post(a.url + "/v1/orgs", json={"name": "acme"}, headers=headers)
            minted = []
            for _ in range(2):
                async with http.post(a.url + "/v1/tokens", json={"org": "acme"}, headers=headers) as r:
                    minted.append((await r.json())["token"])
            async with http.post(a.url + "/v1/revoke", json={"tokens": [minted[1]]}) as r:
                assert r.status == 200
    finally:
        a.stop()
    dump = pg_cluster.root / "authority.dump"
    dst = pg_cluster.new_database()
    for cmd in (["pg_dump", "--format=custom", "--schema=authority", f"--file={dump}", src],
                ["pg_restore", f"--dbname={dst}", str(dump)]):
        done = pg_cluster._run(*cmd, check=False)
        assert done.returncode == 0, done.stderr
    b = AuthorityProcess(tmp_path, dst, d, admin, name="restored")
    try:
        async with aiohttp.ClientSession() as http:
            for token, expected in ((minted[0], 200), (minted[1], 403)):
                async with http.post(b.url + "/v1/verify", json={"tokens": [token, d.discharge(token)],
                                                                 "access": {"org": "acme", "action": "r"}}) as r:
                    assert r.status == expected
    finally:
        b.stop()
    store = await open_store(dst, migrate=False)
    try:
        assert await store.stored_version() == store.schema_version()
    finally:
        await store.close()
