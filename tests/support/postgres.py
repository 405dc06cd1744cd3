"""A throwaway PostgreSQL cluster for tests, started from Debian's binaries (no service
manager, no network beyond loopback). See shared/RECIPES.md.

`Cluster.start()` runs `initdb` and `pg_ctl` (through `runuser -u postgres` when root, since
both refuse to run as root) in a fresh temporary directory; `new_database()` hands out an
empty database per test. The defaults keep durability on: crash tests need them.
"""

from __future__ import annotations

import glob
import itertools
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from tests.support import free_port

PASSWORD_ROLE, PASSWORD = "sable_pw", "s3cret-pw-42"
HOW_TO_GET_IT = "apt-get install -y postgresql  (or run `make test` as root on Debian/Ubuntu)"


def bin_dir() -> Path | None:
    """The newest installed server's binaries (Debian keeps them off PATH)."""
    env = os.environ.get("SABLE_PG_BIN")
    if env:
        return Path(env)
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(Path(p).parts[-3]))
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("pg_ctl")
    return Path(on_path).parent if on_path else None




class Cluster:
    def __init__(self, bindir: Path):
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="sable-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "log"
        self.port = free_port()
        self._as_postgres = os.geteuid() == 0
        self._names = itertools.count(1)

    @property
    def admin_dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def dsn(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if self._as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=check)

    def start(self) -> Cluster:
        if self._as_postgres:
            shutil.chown(self.root, "postgres")
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync")
        # One role must give a password, so tests can get it wrong; everyone else is trusted.
        hba = self.data / "pg_hba.conf"
        hba.write_text(f"host all {PASSWORD_ROLE} 127.0.0.1/32 scram-sha-256\n" + hba.read_text())
        self.pg_ctl_start()
        self.psql(f"CREATE ROLE {PASSWORD_ROLE} LOGIN PASSWORD '{PASSWORD}'")
        return self

    def pg_ctl_start(self) -> None:
        opts = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root} -c max_connections=300"
        # Crash recovery after `-m immediate` took over 60 s once on a loaded 2-core machine.
        r = self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "180", "-o", opts, "start",
                      check=False, timeout=200)
        if r.returncode != 0:
            raise RuntimeError(f"PostgreSQL did not start: {r.stderr}\n{self.log_text()}")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop", check=False)

    def restart(self, mode: str = "immediate") -> None:
        self.stop(mode)
        self.pg_ctl_start()

    def log_text(self) -> str:
        try:
            return self.log.read_text()[-4000:]
        except OSError:
            return ""

    def psql(self, sql: str, database: str = "postgres") -> str:
        r = self._run("psql", "-X", "-q", "-A", "-t", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
                      "-d", database, "-c", sql)
        return r.stdout.strip()

    def new_database(self) -> str:
        """An empty database's DSN, new for each call."""
        name = f"t{os.getpid()}_{next(self._names)}"
        self.psql(f"CREATE DATABASE {name}")
        return self.dsn(name)

    def destroy(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


class Standby(Cluster):
    """A synchronous hot standby of `primary`, made with pg_basebackup and streaming from it:
    the primary waits for it to flush every commit (`synchronous_standby_names`)."""

    NAME = "sable_standby"

    def __init__(self, primary: Cluster):
        super().__init__(primary.bindir)
        self.primary = primary

    def start(self) -> Standby:
        if self._as_postgres:
            shutil.chown(self.root, "postgres")
        self.primary.psql(f"ALTER SYSTEM SET synchronous_standby_names = '{self.NAME}'")
        self.primary.psql("SELECT pg_reload_conf()")
        self._run("pg_basebackup", "-h", "127.0.0.1", "-p", str(self.primary.port), "-U", "postgres",
                  "-D", str(self.data), "-R", "-X", "stream", "--no-sync")
        with open(self.data / "postgresql.auto.conf", "a") as conf:
            conf.write(f"primary_conninfo = 'host=127.0.0.1 port={self.primary.port} user=postgres "
                       f"application_name={self.NAME}'\nsynchronous_standby_names = ''\n")
        self.pg_ctl_start()
        deadline = time.monotonic() + 30
        while self.primary.psql(f"SELECT sync_state FROM pg_stat_replication WHERE application_name = '{self.NAME}'") \
                != "sync":
            if time.monotonic() > deadline:
                raise RuntimeError(f"the standby never became synchronous: {self.log_text()}")
            time.sleep(0.1)
        return self

    def promote(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-w", "promote")


def start_cluster() -> Cluster | None:
    """A running throwaway cluster, or None when no PostgreSQL server is installed."""
    bindir = bin_dir()
    if bindir is None or not (bindir / "initdb").exists():
        return None
    started = time.monotonic()
    cluster = Cluster(bindir).start()
    cluster.started_in = time.monotonic() - started  # type: ignore[attr-defined]
    return cluster
