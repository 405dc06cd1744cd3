"""PgBouncer from Debian's package in `pool_mode = transaction` (the default pooler of most
managed PostgreSQL offerings), as a plain process in front of the throwaway cluster. See
shared/RECIPES-INTEGRATIONS.md §4.

Its databases are the cluster's, by name: `bouncer.dsn(name)` is the cluster's `dsn(name)`
through the pooler. `stop()` and `start()` give an outage that the database itself never sees.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from tests.support import free_port

HOW_TO_GET_IT = "apt-get install -y pgbouncer  (or run `make test` as root on Debian/Ubuntu)"


def binary() -> str | None:
    return shutil.which("pgbouncer") or (str(Path("/usr/sbin/pgbouncer")) if Path("/usr/sbin/pgbouncer").exists()
                                         else None)


class Bouncer:
    def __init__(self, exe: str, pg_port: int, pool_size: int = 5):
        self.exe = exe
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="sable-pgb-"))
        self.pid_file = self.root / "pgbouncer.pid"
        self.log = self.root / "pgbouncer.log"
        (self.root / "userlist.txt").write_text('"postgres" ""\n')
        (self.root / "pgbouncer.ini").write_text(
            f"[databases]\n* = host=127.0.0.1 port={pg_port}\n"
            f"[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {self.port}\nunix_socket_dir =\n"
            f"auth_type = trust\nauth_file = {self.root / 'userlist.txt'}\nadmin_users = postgres\n"
            f"pool_mode = transaction\ndefault_pool_size = {pool_size}\nmax_client_conn = 400\n"
            f"server_reset_query =\nserver_idle_timeout = 5\nlogfile = {self.log}\npidfile = {self.pid_file}\n")
        self._as_postgres = os.geteuid() == 0  # PgBouncer refuses to run as root
        if self._as_postgres:
            shutil.chown(self.root, "postgres")
            for f in self.root.iterdir():
                shutil.chown(f, "postgres")
        self.proc: subprocess.Popen | None = None

    def dsn(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> Bouncer:
        cmd = [self.exe, str(self.root / "pgbouncer.ini")]
        as_user = {"user": "postgres", "group": "postgres", "extra_groups": []} if self._as_postgres else {}
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, **as_user)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"PgBouncer did not start: {self.log_text()}") from None
                time.sleep(0.05)

    def stop(self) -> None:
        """Gone at once, with every client connection (an outage as clients see it)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
        self.pid_file.unlink(missing_ok=True)

    def log_text(self) -> str:
        try:
            return self.log.read_text()[-3000:]
        except OSError:
            return ""

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
